"""Issue 19.1: the commit reads the index the workers wrote, not the data.

One toy stage of 40 inputs (23 clips, 8 dead letters with long messages, 9 skips under two
reasons) is run for real on the DirectRunner. What the tests show:

* the commit never opens a data file or the dead letters: the files are replaced by random
  bytes of the same size after the job and before the commit, and the commit still succeeds,
  with the checksums of the bytes the writers wrote (hashed here, before the swap);
* dead letters are counted on the workers, and the index keeps a bounded sample per type;
* a launcher killed (SIGKILL, a real process) after the job and before the commit loses
  nothing: with the inputs deleted, the rerun commits the finished staging instead of redoing;
* skipped names survive the commit in ``_skipped/{stage}/`` and ``llark inspect`` shows them by
  reason, at most ``--skipped-names`` a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from llark.errors import AudioNotFoundError
from pipelines import schema as s
from pipelines.inspect import run as inspect_run
from pipelines.stage import SAMPLE_SIZE, SAMPLE_TEXT, SKIP_TAG, run_stage, skipped_json, \
    with_dead_letters, write_records

FAST = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
REPO = Path(__file__).resolve().parents[1]
N = 40
PADDING = "the decoder said something long; " * 40       # ~1,300 characters


def dead_ids() -> list[str]:
    return [f"folder:{x:03d}" for x in range(N) if x % 5 == 1]


def txt_ids() -> list[str]:
    return [f"folder:notes/{x:03d}.txt" for x in range(N) if x % 5 == 2]


ORPHAN = "folder:orphan.wav"


def clip_inputs() -> list[int]:
    return [x for x in range(N) if x % 5 not in (1, 2) and x != 3]


class ToyFn(beam.DoFn):
    """An input ``{"id", "audio_uri", "x"}`` → a clip, a dead letter (x % 5 == 1), a
    ``not_audio:.txt`` skip (x % 5 == 2) or the one ``audio_without_metadata`` skip (x == 3)."""

    def process(self, row: dict):
        x = row["x"]
        if x % 5 == 1:
            raise AudioNotFoundError(f"audio file not found: {row['audio_uri']}; {PADDING}")
        if x % 5 == 2:
            yield beam.pvalue.TaggedOutput(
                SKIP_TAG, skipped_json("toy", f"folder:notes/{x:03d}.txt", "not_audio:.txt"))
            return
        if x == 3:
            yield beam.pvalue.TaggedOutput(
                SKIP_TAG, skipped_json("toy", ORPHAN, "audio_without_metadata"))
            return
        yield s.Clip(id=s.clip_id("folder", str(x), 0, 1), dataset="folder", source_id=str(x),
                     split="train", audio_uri=row["audio_uri"], start_s=0, end_s=1,
                     sample_rate_hz=44100)


class FileBuild:
    """Reads its inputs from a JSON file when the pipeline is built (so a rerun that had to
    redo the job would fail once the file is gone); counts its calls."""

    def __init__(self, inputs: str) -> None:
        self.inputs = inputs
        self.calls = 0

    def __call__(self, p, staging):
        self.calls += 1
        rows = json.loads(Path(self.inputs).read_text())
        good = with_dead_letters(p | beam.Create(rows), "Toy", ToyFn(), "toy", staging)
        write_records(good, s.CLIP_SCHEMA, staging)
        return {"inputs": len(rows)}


def write_inputs(path: Path) -> str:
    rows = [{"id": f"folder:{x:03d}", "audio_uri": f"/data/{x:03d}.wav", "x": x}
            for x in range(N)]
    path.write_text(json.dumps(rows))
    return str(path)


class SwapForNoise:
    """After the job: hash each staged data file and dead-letter file as written, then replace
    it by random bytes of the same size (a commit that read them would see the noise)."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}         # sha256 → size, of the data files as written
        self.dead_lines: list[str] = []
        self.dead_bytes = 0

    def __call__(self, staging: str) -> None:
        for path in sorted(Path(staging).rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(staging).parts
            if rel[0] == "data" or (rel[0] == "dead" and path.suffix == ".jsonl"):
                raw = path.read_bytes()
                if rel[0] == "data":
                    self.data[hashlib.sha256(raw).hexdigest()] = len(raw)
                else:
                    self.dead_lines += [x for x in raw.decode().splitlines() if x.strip()]
                    self.dead_bytes += len(raw)
                path.write_bytes(os.urandom(len(raw)))


@pytest.fixture(scope="module")
def swapped(tmp_path_factory):
    """The toy stage, run once with its data files and dead letters swapped for noise."""
    tmp = tmp_path_factory.mktemp("swapped")
    out = tmp / "out"
    swap = SwapForNoise()
    result = run_stage("toy", "clip", str(out), None, FAST, FileBuild(write_inputs(tmp / "in")),
                       after_job=swap)
    return out, result, swap


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The toy stage, run once as it is."""
    tmp = tmp_path_factory.mktemp("plain")
    out = tmp / "out"
    return out, run_stage("toy", "clip", str(out), None, FAST,
                          FileBuild(write_inputs(tmp / "in")))


def test_commit_does_not_open_the_data_files(swapped):
    out, result, swap = swapped
    idx = result.index
    assert (out / s.INDEX_FILE).exists() and not (out / "_staging").exists()
    assert idx.total_rows == len(clip_inputs()) == sum(e.rows for e in idx.shards)
    # the checksums and sizes of what the writers wrote, not of the noise now in the files
    assert {e.sha256: e.bytes for e in idx.shards} == swap.data
    for e in idx.shards:
        on_disk = (out / e.path).read_bytes()
        assert len(on_disk) == e.bytes and hashlib.sha256(on_disk).hexdigest() != e.sha256
    with pytest.raises(s.ShardError):
        s.verify_shards(out)


def test_dead_letters_are_counted_on_the_workers_with_a_bounded_sample(swapped):
    out, result, swap = swapped
    idx = result.index
    assert idx.dead_letters == {"AudioNotFoundError": len(dead_ids())}
    # the commit did not read them: what it moved into place is the noise
    moved = (out / s.DEAD_LETTER_DIR / "toy" / "part-00000.jsonl").read_bytes()
    assert len(moved) == swap.dead_bytes and moved != "\n".join(swap.dead_lines).encode()
    assert sorted(json.loads(x)["id"] for x in swap.dead_lines) == dead_ids()
    sample = idx.dead_letter_samples["AudioNotFoundError"]
    assert SAMPLE_SIZE < len(dead_ids())
    assert [d["id"] for d in sample] == dead_ids()[:SAMPLE_SIZE]       # the smallest, in order
    for d in sample:
        assert d["error_type"] == "AudioNotFoundError" and d["stage"] == "toy"
        assert d["message"].startswith(f"audio file not found: /data/{d['id'][-3:]}.wav; ")
        assert len(d["message"]) <= SAMPLE_TEXT + 1 < len(PADDING)
    assert idx.skipped_samples == {"audio_without_metadata": [ORPHAN],
                                   "not_audio:.txt": txt_ids()[:SAMPLE_SIZE]}
    # the sample travels in _index.json itself
    on_disk = s.ShardIndex.from_json((out / s.INDEX_FILE).read_text())
    assert on_disk.dead_letter_samples == idx.dead_letter_samples


def test_skipped_names_survive_the_commit_and_inspect_shows_them_by_reason(plain, capsys):
    out, result = plain
    assert result.index.skipped == {"audio_without_metadata": 1, "not_audio:.txt": len(txt_ids())}
    manifest = out / s.SKIPPED_DIR / "toy" / "part-00000.jsonl"
    notes = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert sorted(n["id"] for n in notes) == sorted(txt_ids() + [ORPHAN])
    assert {n["id"]: n["reason"] for n in notes}[ORPHAN] == "audio_without_metadata"

    inspect_run([str(out), "--skipped-names", "3"])
    text = capsys.readouterr().out
    shown = ", ".join(txt_ids()[:3])
    assert (f"skipped (not_audio:.txt): {len(txt_ids())}  e.g. {shown} "
            f"(+{len(txt_ids()) - 3} more in _skipped/toy/)") in text
    assert f"skipped (audio_without_metadata): 1  e.g. {ORPHAN} (all in _skipped/toy/)" in text
    assert txt_ids()[3] not in text                      # bounded: the fourth is not shown
    inspect_run([str(out), "--skipped-names", "0"])
    assert "e.g. folder:notes" not in capsys.readouterr().out


class KillSelf:
    """The launcher dies (SIGKILL: no cleanup, no ``finally``) after the job, before the
    commit."""

    def __call__(self, staging: str) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def run_and_die(out: str, inputs: str) -> None:
    """What the killed child process runs (``python -c``)."""
    run_stage("toy", "clip", out, None, FAST, FileBuild(inputs), after_job=KillSelf())


def test_a_launcher_killed_after_the_job_loses_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    inputs = write_inputs(tmp_path / "in")
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from tests.test_commit_index import run_and_die; "
         "run_and_die(sys.argv[1], sys.argv[2])", str(out), inputs],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert not (out / s.INDEX_FILE).exists()
    assert len(list((out / "_staging").glob("*/_finished.json"))) == 1
    # the job cannot be redone: its inputs are gone
    os.unlink(inputs)
    build = FileBuild(inputs)
    result = run_stage("toy", "clip", str(out), None, FAST, build)
    assert build.calls == 0 and not result.skipped_run
    assert "committing it instead of redoing it" in capsys.readouterr().err
    idx = s.verify_shards(out)                       # real files, checksums as indexed
    assert idx == result.index
    assert idx.dead_letters == {"AudioNotFoundError": len(dead_ids())}
    assert idx.skipped == {"audio_without_metadata": 1, "not_audio:.txt": len(txt_ids())}
    ids = sorted(r["id"] for p in out.glob("part-*.parquet") for r in pq.read_table(p).to_pylist())
    assert ids == sorted(s.clip_id("folder", str(x), 0, 1) for x in clip_inputs())
    assert not (out / "_staging").exists()
    assert run_stage("toy", "clip", str(out), None, FAST, build).skipped_run
    assert build.calls == 0


def test_a_finished_job_of_another_config_is_redone_not_committed(tmp_path, capsys):
    from dataclasses import dataclass

    from llark.config import doc

    @dataclass(frozen=True)
    class C:
        clip_seconds: float = doc("s", default=10.0)

    out = tmp_path / "out"
    inputs = write_inputs(tmp_path / "in")
    with pytest.raises(KeyboardInterrupt):
        run_stage("toy", "clip", str(out), C(), FAST, FileBuild(inputs), after_job=Interrupt())
    build = FileBuild(inputs)
    result = run_stage("toy", "clip", str(out), C(clip_seconds=5.0), FAST, build)
    assert build.calls == 1 and result.index.config == {"clip_seconds": 5.0}
    assert "ran with another config; redoing it" in capsys.readouterr().err
    assert not (out / "_staging").exists()


class Interrupt:
    """Ctrl-C in the launcher after the job, before the commit."""

    def __call__(self, staging: str) -> None:
        raise KeyboardInterrupt
