"""Every ``llark`` subcommand parses strictly: an abbreviated flag, a stray positional, a
single-dash word or an unknown ``--flag`` is refused with a message naming it (exit 2), while
Beam's real pipeline options still pass to the Beam stages.

Before: argparse took ``--out`` for ``--output`` and ``--clip-sec 5`` for ``--clip-seconds``,
and the Beam stages handed stray words to Beam, which dropped them with a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from llark.config import doc
from pipelines.cli import main

BEAM_STAGES = {
    "ingest": ["--dataset", "folder", "--data-dir", "data", "--output", "clips"],
    "annotate": ["--input", "clips", "--output", "ann"],
    "instruct": ["--input", "ann", "--output", "ins", "--llm", "template"],
    "embed": ["--input", "clips", "--output", "emb"],
    "shards": ["--clips", "c", "--annotations", "a", "--instructions", "i", "--embeddings", "e",
               "--output", "s"],
}

#: (command, argv, the word the error must name). Each abbreviation is a unique prefix of a
#: real flag, so a parser that allows abbreviations takes it.
ABBREVIATIONS = [
    ("ingest", ["--dataset", "folder", "--data-dir", "data", "--out", "clips"], "--out"),
    ("ingest", ["--dataset", "folder", "--data-dir", "data", "--output", "clips",
                "--clip-sec", "5"], "--clip-sec"),
    ("annotate", ["--input", "clips", "--out", "ann"], "--out"),
    ("instruct", ["--input", "ann", "--output", "ins", "--fam", "mir"], "--fam"),
    ("embed", ["--input", "clips", "--output", "emb", "--enc", "features"], "--enc"),
    ("shards", BEAM_STAGES["shards"] + ["--max-err", "x"], "--max-err"),
    ("demo-data", ["--output", "o", "--sca", "huge"], "--sca"),
    ("analyze", ["--back", "nope", "a.wav"], "--back"),
    ("inspect", ["--sch", "nowhere"], "--sch"),
    ("train", ["--shards", "s", "--output", "o", "--stop", "x"], "--stop"),
    ("infer", ["--checkpoint", "c", "--shards", "s", "--lim", "x"], "--lim"),
    ("eval", ["--predictions", "p", "--output", "o", "--no-met"], "--no-met"),
    ("benchmark", ["--name", "gtzan", "--data-dir", "d", "--checkpoint", "c", "--lim", "x"],
     "--lim"),
    ("run", ["--dry", "--work-dir", "w"], "--dry"),
]


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], bad: str) -> str:
    """``llark argv`` exits 2 at parse time with an error naming ``bad`` (as a whole word)."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert re.search(r"(?<![\w-])" + re.escape(bad) + r"(?![\w-])", err.split("error:", 1)[-1]), err
    return err


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Relative paths in the cases land in a temporary folder (nothing may run, but if it
    does it writes nowhere that matters)."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name,argv,bad", ABBREVIATIONS, ids=[f"{c[0]}{c[2]}" for c in
                                                             ABBREVIATIONS])
def test_abbreviated_flags_are_refused(capsys, name, argv, bad):
    _refused(capsys, [name, *argv], bad)


@pytest.mark.parametrize("name", sorted(BEAM_STAGES))
def test_beam_stages_refuse_a_stray_positional(capsys, name):
    err = _refused(capsys, [name, *BEAM_STAGES[name], "stray-word"], "'stray-word'")
    assert "positional" in err


@pytest.mark.parametrize("name", sorted(BEAM_STAGES))
def test_beam_stages_refuse_single_dash_words(capsys, name):
    err = _refused(capsys, [name, *BEAM_STAGES[name], "-runner", "DirectRunner"], "'-runner'")
    assert "single-dash" in err


@pytest.mark.parametrize("name", sorted(BEAM_STAGES))
def test_beam_stages_refuse_unknown_flags(capsys, name):
    _refused(capsys, [name, *BEAM_STAGES[name], "--no-such-flag", "1"], "--no-such-flag")


@pytest.mark.parametrize("name,argv", [
    ("demo-data", ["--output", "o"]),
    ("eval", ["--predictions", "p", "--output", "o"]),
    ("infer", ["--checkpoint", "c", "--shards", "s"]),
    ("benchmark", ["--name", "gtzan", "--data-dir", "d", "--checkpoint", "c"]),
])
def test_other_commands_refuse_stray_and_single_dash_words(capsys, name, argv):
    _refused(capsys, [name, *argv, "stray-word"], "stray-word")
    _refused(capsys, [name, *argv, "-x"], "-x")
    _refused(capsys, [name, *argv, "--no-such-flag"], "--no-such-flag")


def test_a_bad_override_of_llark_run_is_refused(capsys):
    """``llark run`` takes ``key=value`` positionals (RunConfig overrides), nothing else."""
    assert main(["run", "--dry-run", "stray-word"]) == 1
    assert "'stray-word' is not of the form key=value" in capsys.readouterr().err


@dataclass(frozen=True)
class _Cfg:
    input: str = doc("in", default="")
    clip_seconds: float = doc("window length", default=23.777)


def test_real_beam_options_still_pass():
    from pipelines.stage import parse_stage_args

    beam = ["--runner", "DirectRunner", "--direct_num_workers", "2",
            "--direct_running_mode=multi_processing", "--temp_location=/tmp/llark-t",
            "--experiments", "a", "--experiment=b", "--machine_type", "n1-standard-4",
            "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1",
            "--job_name", "llark-x", "--no_auth"]
    cfg, args = parse_stage_args(_Cfg, ["--input", "x", *beam, "--clip-seconds", "5"], "t", "t")
    assert cfg.input == "x" and cfg.clip_seconds == 5.0
    assert args.beam_args == beam


def test_a_bad_beam_value_is_named(capsys):
    from pipelines.stage import parse_stage_args

    with pytest.raises(SystemExit):
        parse_stage_args(_Cfg, ["--direct_num_workers", "two"], "t", "t")
    assert "--direct_num_workers" in capsys.readouterr().err


def test_beam_parsing_uses_no_private_beam_class():
    """Beam's option parser comes through ``get_all_options``' public hook, not an import of
    ``apache_beam``'s private ``_BeamArgumentParser``."""
    import inspect

    import pipelines.stage as stage

    assert "_BeamArgumentParser" not in inspect.getsource(stage)
