"""``--runner DataflowRunner --dry_run``: each stage builds its real Dataflow job offline, prints
its transform count and pipeline-proto size, and writes nothing. The ingest job's graph does
not grow with the data: 1,000 and 100,000 FMA-shaped rows build jobs of the same size (the
tasks travel in a task plan the workers read, not inside the graph)."""

from __future__ import annotations

import glob
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.scale_data import write_fma_shaped
from tests.shards_testdata import make_clips, write_set

pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")

CPU_IMAGE = "us-docker.pkg.dev/llark-test-project/llark/beam:test"
GPU_IMAGE = "us-docker.pkg.dev/llark-test-project/llark/embed-gpu:test"
#: Offline Dataflow options: a valid-looking project, explicit gs:// temp and staging
#: locations (never contacted in a dry run), no credentials, the SDK from the container.
DATAFLOW = ["--runner", "DataflowRunner", "--dry_run", "--project", "llark-test-project",
            "--region", "us-central1", "--temp_location", "gs://llark-test/tmp",
            "--staging_location", "gs://llark-test/staging", "--no_auth",
            "--sdk_location", "container", "--sdk_container_image", CPU_IMAGE]
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


def _without_image(args: list[str]) -> list[str]:
    i = args.index("--sdk_container_image")
    return args[:i] + args[i + 2:]


def test_dataflow_without_an_image_is_refused(tmp_path: Path, capsys) -> None:
    """Beam's default image has no llark: a CPU stage and (above all) a GPU stage without an
    image are refused before anything is built, naming the Dockerfile to build."""
    from pipelines import embed, ingest

    data = write_fma_shaped(tmp_path / "fma", 3)
    assert ingest.run(["--dataset", "fma", "--data-dir", str(data), "--output",
                       str(tmp_path / "o"), *_without_image(DATAFLOW)]) == 1
    err = capsys.readouterr().err
    assert "[ingest] DataflowRunner without a worker image" in err
    assert "docker/Dockerfile.beam" in err and DRY.search(err) is None
    clips = make_clips(tmp_path / "audio", 1, seconds=1.0)
    clip_dir = write_set(tmp_path / "clips", "clip", [c.to_row() for c in clips])
    gpu = ["--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1",
           "--machine_type", "g2-standard-8"]
    assert embed.run(["--input", str(clip_dir), "--output", str(tmp_path / "e"),
                      *_without_image(DATAFLOW), *gpu]) == 1
    err = capsys.readouterr().err
    assert "GPU stage (accelerator type:nvidia-l4;count:1) needs the GPU worker image" in err
    assert "docker/Dockerfile.embed-gpu" in err and DRY.search(err) is None
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


def test_embed_dry_run_prints_its_gpu_workers(tmp_path: Path, capsys) -> None:
    from pipelines import embed

    clips = make_clips(tmp_path / "audio", 1, seconds=1.0)
    clip_dir = write_set(tmp_path / "clips", "clip", [c.to_row() for c in clips])
    flags = [*_without_image(DATAFLOW), "--sdk_container_image", GPU_IMAGE,
             "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1",
             "--machine_type", "g2-standard-8", "--disk_size_gb", "120",
             "--experiments=no_use_multiple_sdk_containers"]
    assert embed.run(["--input", str(clip_dir), "--output", str(tmp_path / "e"),
                      "--model-copies", "1", *flags]) == 0
    err = capsys.readouterr().err
    _dry(err, "embed")
    assert (f"[embed] workers: image {GPU_IMAGE}; machine type g2-standard-8; accelerator "
            "type:nvidia-l4;count:1; disk 120 GB; model copies 1 per VM; experiments "
            "no_use_multiple_sdk_containers") in err
    # a CPU stage: its image, Dataflow's defaults, no shared model
    assert embed.run(["--input", str(clip_dir), "--output", str(tmp_path / "e2"),
                      *DATAFLOW]) == 0
    err = capsys.readouterr().err
    assert (f"[embed] workers: image {CPU_IMAGE}; machine type Dataflow default; accelerator "
            "none; disk Dataflow default; model copies not shared; experiments none") in err


REPO = Path(__file__).resolve().parents[1]
RUN_DATAFLOW = ["run", "--runner", "DataflowRunner", "--dry_run", "--project", "p",
                "--region", "us-central1", "--temp-location", "gs://b/tmp", "--no-demo",
                "--datasets", "fma", "--encoder", "jukebox", "--checkpoint-dir", "gs://b/w",
                "--sdk-container-image", CPU_IMAGE]


def _llark(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from pipelines.cli import main; "
                           "sys.exit(main())", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_llark_run_dry_run_on_dataflow_shows_each_stage_workers(tmp_path: Path) -> None:
    """``llark run --runner DataflowRunner --dry_run``: per Beam stage its image, machine type,
    accelerator and model copies (the GPU image, machine and one model per VM for a jukebox
    embed; the CPU image elsewhere); a GPU stage without its image is refused."""
    work = ["--work-dir", str(tmp_path / "w"), "--data-dir", str(tmp_path / "d")]
    refused = _llark([*RUN_DATAFLOW, *work], tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "[embed] DataflowRunner without a worker image" in refused.stderr
    assert "gpu_container_image" in refused.stderr and "would run" not in refused.stdout
    proc = _llark([*RUN_DATAFLOW, *work, "--gpu-container-image", GPU_IMAGE,
                   "--gpu-disk-size-gb", "150"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    workers = {}
    for i, line in enumerate(lines):
        m = re.match(r"\[\d+/\d+\] (\w+): would run: llark ", line)
        if m and i + 1 < len(lines) and lines[i + 1].strip().startswith("workers: "):
            workers[m.group(1)] = lines[i + 1].strip()[len("workers: "):]
    assert set(workers) == {"ingest_fma", "annotate", "instruct", "embed", "shards"}
    assert workers["embed"] == (
        f"image {GPU_IMAGE}; machine type g2-standard-8; accelerator "
        "type:nvidia-l4;count:1;install-nvidia-driver; disk 150 GB; model copies 1 per VM; "
        "experiments no_use_multiple_sdk_containers")
    for name in ("ingest_fma", "annotate", "instruct", "shards"):
        assert workers[name] == (f"image {CPU_IMAGE}; machine type Dataflow default; "
                                 "accelerator none; disk Dataflow default; model copies not "
                                 "shared; experiments none"), name
    embed_line = next(ln for ln in lines if "embed: would run" in ln)
    assert embed_line.endswith("--encoder jukebox --checkpoint-dir gs://b/w --model-copies 1")
