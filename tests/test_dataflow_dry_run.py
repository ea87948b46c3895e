"""``--runner DataflowRunner --dry_run``: each stage builds its real Dataflow job offline, prints
its transform count and pipeline-proto size, and writes nothing. The ingest job's graph does
not grow with the data: 1,000 and 100,000 FMA-shaped rows build jobs of the same size (the
tasks travel in a task plan the workers read, not inside the graph)."""

from __future__ import annotations

import glob
import re
import tempfile
from pathlib import Path

import pytest

from tests.scale_data import write_fma_shaped
from tests.shards_testdata import make_clips, write_set

pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")

#: Offline Dataflow options: a valid-looking project, explicit gs:// temp and staging
#: locations (never contacted in a dry run), no credentials, the SDK from the container.
DATAFLOW = ["--runner", "DataflowRunner", "--dry_run", "--project", "llark-test-project",
            "--region", "us-central1", "--temp_location", "gs://llark-test/tmp",
            "--staging_location", "gs://llark-test/staging", "--no_auth",
            "--sdk_location", "container"]
DRY = re.compile(r"\[(\w+)\] dry run \(DataflowRunner\): (\d+) transforms, pipeline proto "
                 r"(\d+) bytes; job not submitted")


def _dry(err: str, stage: str) -> tuple[int, int]:
    m = DRY.search(err)
    assert m is not None and m.group(1) == stage, err[-2000:]
    return int(m.group(2)), int(m.group(3))


def _leftover_plans() -> set[str]:
    return set(glob.glob(str(Path(tempfile.gettempdir()) / "llark-*-dry-run-*")))


@pytest.mark.slow
def test_ingest_job_size_does_not_grow_with_the_data(tmp_path: Path, capsys) -> None:
    from pipelines.ingest import run

    before = _leftover_plans()
    sizes = {}
    for n in (1_000, 100_000):
        data = write_fma_shaped(tmp_path / f"fma{n}", n, seed=n)
        out = tmp_path / f"clips{n}"
        assert run(["--dataset", "fma", "--data-dir", str(data), "--output", str(out),
                    *DATAFLOW]) == 0
        err = capsys.readouterr().err
        assert f"fma: {n} inputs" in err
        sizes[n] = _dry(err, "ingest")
        assert not out.exists()                    # nothing written
    assert _leftover_plans() == before             # the temporary plan is gone
    (t1, b1), (t2, b2) = sizes[1_000], sizes[100_000]
    assert t1 == t2 > 5
    # 100x the rows, the same job: it differs only by the (temporary) paths it names
    assert abs(b2 - b1) < 0.002 * b1, sizes
    assert b1 < 200_000, sizes


def test_every_other_beam_stage_builds_its_dataflow_job_offline(tmp_path: Path, capsys) -> None:
    from pipelines import annotate, embed, instruct, shards

    clips = make_clips(tmp_path / "audio", 2, seconds=1.0)
    clip_dir = write_set(tmp_path / "clips", "clip", [c.to_row() for c in clips])
    dummy = {"annotated_clip": tmp_path / "ann", "instruction": tmp_path / "ins",
             "embedding": tmp_path / "emb"}
    for record, folder in dummy.items():
        write_set(folder, record, [])
    runs = {
        "annotate": (annotate.run, ["--input", str(clip_dir)]),
        "embed": (embed.run, ["--input", str(clip_dir)]),
        "instruct": (instruct.run, ["--input", str(dummy["annotated_clip"]), "--llm", "template"]),
        "shards": (shards.run, ["--clips", str(clip_dir), "--annotations", str(dummy["annotated_clip"]),
                                "--instructions", str(dummy["instruction"]),
                                "--embeddings", str(dummy["embedding"])]),
    }
    for stage, (run, args) in runs.items():
        out = tmp_path / f"out-{stage}"
        assert run([*args, "--output", str(out), *DATAFLOW]) == 0, stage
        transforms, size = _dry(capsys.readouterr().err, stage)
        assert transforms > 5 and 1_000 < size < 500_000
        assert not out.exists()


def test_dry_run_needs_the_dataflow_runner(tmp_path: Path, capsys) -> None:
    from pipelines.ingest import run

    data = write_fma_shaped(tmp_path / "fma", 3)
    assert run(["--dataset", "fma", "--data-dir", str(data), "--output", str(tmp_path / "o"),
                "--dry_run"]) == 1
    assert "needs --runner DataflowRunner" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_task_plan_round_trips_every_kind_and_is_split_into_files(tmp_path: Path) -> None:
    from pipelines.datasets.common import BadRow, SkippedFile, TrackTask
    from pipelines.plan import parse_plan_line, plan_line, write_plan

    task = TrackTask(id="fma:000002", dataset="fma", source_id="000002", split="train",
                     audio_uri="/d/000/000002.mp3", alt_audio_uris=("/d/a.wav",),
                     tags=("a", "b"), genres=("Rock",), title="Ünïcode \"quoted\"\nline",
                     expected_duration_s=30.0)
    bad = BadRow(id="fma:tracks.csv#L9", dataset="fma", error_type="MetadataError",
                 message="bad row", row="tracks.csv line 9")
    skip = SkippedFile(id="fma:x.txt", dataset="fma", reason="not_audio:.txt", uri="/d/x.txt")
    for item in (task, bad, skip):
        line = plan_line(item)
        assert "\n" not in line and parse_plan_line(line) == item
    plan = write_plan([task, bad, skip, task, task], str(tmp_path), per_file=2)
    assert (plan.inputs, plan.bad_rows, plan.skipped_files, plan.files) == (4, 1, 1, 3)
    lines = [ln for f in sorted((tmp_path / "plan").glob("tasks-*.jsonl"))
             for ln in f.read_text().splitlines()]
    assert [parse_plan_line(ln) for ln in lines] == [task, bad, skip, task, task]
