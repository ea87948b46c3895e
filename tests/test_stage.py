"""The stage transaction: commit + index, rerun does nothing, interrupted runs are redone
cleanly, dead letters and skips are counted, the error-rate threshold fails a run; counts from
the pipeline's counters, unaccounted inputs fail the commit; flags fail loudly."""

from __future__ import annotations

import json

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from llark.errors import AudioNotFoundError, LlarkError
from pipelines import schema as s
from pipelines.stage import (
    DEAD_PREFIX,
    SKIP_PREFIX,
    SKIP_TAG,
    TallyCounts,
    clean_incomplete,
    parse_stage_args,
    run_stage,
    skipped_json,
    tally,
    with_dead_letters,
    write_records,
)

FAST = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]


class ToyFn(beam.DoFn):
    """0..n: 3 is missing audio, 4 raises a bug, 5 is skipped, the rest become clips."""

    def process(self, x: int):
        if x == 3:
            raise AudioNotFoundError(f"audio file not found: /data/{x}.wav")
        if x == 4:
            raise KeyError("boom")
        if x == 5:
            yield beam.pvalue.TaggedOutput(SKIP_TAG, skipped_json("toy", f"folder:{x}", "tail_too_short"))
            return
        yield s.Clip(id=s.clip_id("folder", str(x), 0, 1), dataset="folder", source_id=str(x),
                     split="train", audio_uri=f"/data/{x}.wav", start_s=0, end_s=1,
                     sample_rate_hz=44100)


class ToyBuild:
    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0

    def __call__(self, p, staging):
        self.calls += 1
        good = with_dead_letters(p | beam.Create(list(range(self.n))), "Toy", ToyFn(), "toy", staging)
        write_records(good, s.CLIP_SCHEMA, staging)
        return {"inputs": self.n}


def test_commit_counts_everything_and_rerun_does_nothing(tmp_path):
    out = tmp_path / "out"
    build = ToyBuild(8)
    result = run_stage("toy", "clip", str(out), None, FAST, build)
    idx = s.verify_shards(out)
    assert idx == result.index
    assert idx.total_rows == 5
    assert idx.dead_letters == {"AudioNotFoundError": 1, "KeyError": 1}
    assert idx.skipped == {"tail_too_short": 1}
    # every input accounted for
    assert idx.total_rows + sum(idx.dead_letters.values()) + sum(idx.skipped.values()) == 8
    lines = (out / "_dead_letter" / "toy" / "part-00000.jsonl").read_text().splitlines()
    letters = {d.error_type: d for d in map(s.DeadLetter.from_json, lines)}
    assert letters["AudioNotFoundError"].message == "audio file not found: /data/3.wav"
    assert "unexpected" in letters["KeyError"].message
    assert not (out / "_staging").exists()
    ids = {r["id"] for p in out.glob("part-*.parquet") for r in pq.read_table(p).to_pylist()}
    assert ids == {s.clip_id("folder", str(i), 0, 1) for i in (0, 1, 2, 6, 7)}

    again = run_stage("toy", "clip", str(out), None, FAST, build)
    assert again.skipped_run and build.calls == 1


def test_interrupted_run_is_cleaned_and_redone(tmp_path):
    out = tmp_path / "out"
    run_stage("toy", "clip", str(out), None, FAST, ToyBuild(8))
    # simulate a crash: index gone, a stray part and staging files remain
    (out / s.INDEX_FILE).unlink()
    (out / "part-00099.parquet").write_bytes(b"partial")
    (out / "_staging" / "abc" / "data").mkdir(parents=True)
    (out / "_staging" / "abc" / "data" / "part-0.parquet").write_bytes(b"partial")
    result = run_stage("toy", "clip", str(out), None, FAST, ToyBuild(8))
    assert not result.skipped_run
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [e.path for e in result.index.shards]
    rows = [r["id"] for p in out.glob("part-*.parquet") for r in pq.read_table(p).to_pylist()]
    assert len(rows) == len(set(rows)) == 5
    assert not (out / "_staging").exists()
    assert clean_incomplete(str(tmp_path / "never")) == 0


def test_error_rate_threshold_fails_the_run_and_leaves_it_incomplete(tmp_path):
    with pytest.raises(LlarkError, match="2 of 5 inputs failed"):
        run_stage("toy", "clip", str(tmp_path / "o"), None, FAST, ToyBuild(5), max_error_rate=0.3)
    # dead letters stay readable, but the set is not complete: a rerun redoes it
    assert not (tmp_path / "o" / s.INDEX_FILE).exists()
    assert (tmp_path / "o" / "_index.rejected.json").exists()
    assert (tmp_path / "o" / "_dead_letter" / "toy" / "part-00000.jsonl").exists()
    build = ToyBuild(5)
    result = run_stage("toy", "clip", str(tmp_path / "o"), None, FAST, build)
    assert build.calls == 1 and not result.skipped_run
    assert not (tmp_path / "o" / "_index.rejected.json").exists()


def test_stage_args_pass_beam_flags_and_refuse_typos():
    from dataclasses import dataclass
    from llark.config import doc

    @dataclass(frozen=True)
    class C:
        input: str = doc("in", default="")

    cfg, args = parse_stage_args(C, ["--input", "x", "--runner", "DataflowRunner",
                                     "--direct_num_workers=2", "--force"], "t", "t")
    assert cfg.input == "x" and args.force
    assert args.beam_args == ["--runner", "DataflowRunner", "--direct_num_workers=2"]
    with pytest.raises(SystemExit):
        parse_stage_args(C, ["--inptu", "x"], "t", "t")


def test_resolved_config_is_written_into_the_index(tmp_path):
    from dataclasses import dataclass
    from llark.config import doc

    @dataclass(frozen=True)
    class C:
        clip_seconds: float = doc("s", default=10.0)
        api_key: str = doc("secret", default="sk-secret")

    run_stage("toy", "clip", str(tmp_path / "o"), C(), FAST, ToyBuild(2))
    cfg = json.loads((tmp_path / "o" / s.INDEX_FILE).read_text())["config"]
    assert cfg == {"clip_seconds": 10.0, "api_key": "<redacted>"}


class CountingToyFn(ToyFn):
    """ToyFn that counts what it writes (as the stages do with ``tally``)."""

    def process(self, x: int):
        for out in super().process(x):
            if isinstance(out, s.Clip):
                tally("written")
                tally(f"by_parity/{'even' if x % 2 == 0 else 'odd'}")
            yield out


class ToyCounts(TallyCounts):
    def __init__(self, n: int, lose: int) -> None:
        self.n, self.lose = n, lose

    def __call__(self, tallies):
        written = tallies.get("written")
        ended = written + tallies.total(DEAD_PREFIX) + tallies.total(SKIP_PREFIX)
        return {"inputs": self.n, "written": written, "by_parity": tallies.group("by_parity/"),
                "unaccounted": self.n + self.lose - ended}


class TallyBuild:
    def __init__(self, n: int, lose: int = 0) -> None:
        self.n, self.lose = n, lose

    def __call__(self, p, staging):
        good = with_dead_letters(p | beam.Create(list(range(self.n))), "Toy", CountingToyFn(),
                                 "toy", staging)
        write_records(good, s.CLIP_SCHEMA, staging)
        return ToyCounts(self.n, self.lose)


def test_counts_come_from_the_pipeline_counters(tmp_path):
    result = run_stage("toy", "clip", str(tmp_path / "o"), None, FAST, TallyBuild(8))
    idx = result.index
    assert idx.counts == {"inputs": 8, "written": 5, "by_parity": {"even": 3, "odd": 2},
                          "unaccounted": 0}
    assert idx.dead_letters == {"AudioNotFoundError": 1, "KeyError": 1}
    assert idx.skipped == {"tail_too_short": 1}


def test_unaccounted_inputs_fail_the_commit(tmp_path):
    from pipelines.stage import UnaccountedError

    with pytest.raises(UnaccountedError, match="2 input"):
        run_stage("toy", "clip", str(tmp_path / "o"), None, FAST, TallyBuild(8, lose=2))
    assert not (tmp_path / "o" / s.INDEX_FILE).exists()
    assert json.loads((tmp_path / "o" / "_index.rejected.json").read_text())["counts"][
        "unaccounted"] == 2


def test_unknown_flags_name_the_nearest_real_one(capsys):
    from dataclasses import dataclass
    from llark.config import doc

    @dataclass(frozen=True)
    class C:
        clip_seconds: float = doc("window length", default=23.777)

    for argv, nearest in ((["--clip_seconds", "5"], "--clip-seconds"),
                          (["--direct_num_worker", "2"], "--direct_num_workers"),
                          (["--temp-location", "gs://b/t"], "--temp_location")):
        with pytest.raises(SystemExit):
            parse_stage_args(C, argv, "t", "t")
        err = capsys.readouterr().err
        assert f"{argv[0]} (did you mean {nearest}?)" in err, err
    # Beam's own flags pass, with a bare --dry_run made explicit
    _cfg, args = parse_stage_args(C, ["--runner", "DataflowRunner", "--dry_run", "--project", "p",
                                      "--temp_location", "gs://b/t", "--experiments=x"], "t", "t")
    assert args.beam_args == ["--runner", "DataflowRunner", "--dry_run=True", "--project", "p",
                              "--temp_location", "gs://b/t", "--experiments=x"]


def test_help_shows_every_default(capsys):
    from pipelines.ingest import IngestConfig

    with pytest.raises(SystemExit):
        parse_stage_args(IngestConfig, ["--help"], "llark ingest", "t")
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 23.777)" in out and "(default: 44100)" in out
    assert "(default: {ytid}.{ext})" in out and "(default: 0.5)" in out
