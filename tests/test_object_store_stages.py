"""Stages on buckets: a stage killed mid-way on ``s3://`` and rerun leaves no duplicate and
nothing half-visible; the whole ``llark run`` (demo-data → … → report) and ``llark inspect`` with
every path on ``gs://``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from llark import storage
from llark.demo.synth import random_song_spec, render_song
from llark.errors import ShardError
from llark.windows import clip_windows
from pipelines import schema as s

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("google.cloud.storage")


def _rows(folder: str) -> list[dict]:
    return [r for part in storage.list_files(folder, "part-*.parquet", recursive=False)
            for r in pq.ParquetFile(storage.open_input(part)).read().to_pylist()]


@pytest.mark.slow
def test_killed_ingest_on_s3_reruns_without_duplicates(s3, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    tone = render_song(random_song_spec(np.random.default_rng(0), 30.0), 22050).audio
    for i in range(12):
        sf.write(data / f"track_{i:02d}.wav", np.roll(tone, i * 1000), 22050)
    storage.upload_tree(data, s3.url("data"))
    out = s3.url("clips")
    cmd = [sys.executable, "-m", "pipelines.cli", "ingest", "--dataset", "folder",
           "--data-dir", s3.url("data"), "--output", out, "--direct_num_workers", "1",
           *s3.beam_args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # kill the whole process group as soon as a worker has written a staged record file
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if [u for u in storage.list_files(storage.join(out, "_staging")) if "/data/" in u]:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not storage.is_file(storage.join(out, s.INDEX_FILE)), "killed too late"
    # nothing half-visible: without its index the set is refused by every reader
    with pytest.raises(ShardError, match="no _index.json"):
        s.read_index(out)
    inspect = subprocess.run([sys.executable, "-m", "pipelines.cli", "inspect", out], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert inspect.returncode != 0, inspect.stdout
    assert ("no shard sets" in inspect.stderr  # only _staging/ was written: no set to show
            or "incomplete" in inspect.stdout), (inspect.stdout, inspect.stderr)

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    index = s.verify_shards(out)
    ids = [r["id"] for r in _rows(out)]
    assert len(ids) == len(set(ids)) == index.total_rows
    # 30 s at 23.777 s windows: a full clip and a 6.2 s tail (kept: over 5 s) per track
    assert set(ids) == {s.clip_id("folder", f"track_{i:02d}.wav", a, b)
                        for i in range(12) for a, b in clip_windows(30.0)[0]}
    assert len(ids) == 24
    assert storage.list_files(storage.join(out, "_staging")) == []
    parts = storage.list_files(out, "part-*.parquet", recursive=False)
    assert [storage.name(p) for p in parts] == [e.path for e in index.shards]


@pytest.mark.slow
def test_llark_run_and_inspect_with_every_path_on_gcs(gcs, tmp_path):
    """The whole graph on the tiny demo corpus, kept small for a loaded machine: one dataset
    (FMA: it has train and test clips), the madmom annotator alone (the cheapest backend),
    4 training steps."""
    work = gcs.url("run")
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--work-dir", work,
           "--data-dir", gcs.url("run", "data"), "--demo-scale", "tiny",
           "--datasets", "fma", "--workers", "1", "--annotate-backend", "madmom",
           "--train-overrides", "max_steps=4", "--infer-limit", "2"]
    env = {**os.environ, "LLARK_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    assert not (tmp_path / "gs:").exists(), "a local ./gs: folder was made"
    for stage in ("clips/fma", "annotations", "instructions", "embeddings",
                  "shards"):
        assert storage.is_file(storage.join(work, stage, s.INDEX_FILE)), stage
    for stage in ("data", "train", "infer", "eval", "report"):
        assert storage.is_file(storage.join(work, stage, "_llark_done.json")), stage
    assert storage.list_files(storage.join(work, "train"), "*trainer_state.json")
    metrics = json.loads(storage.read_text(storage.join(work, "eval", "metrics.json")))
    assert metrics["n_predictions"] > 0
    assert "<h1>llark report</h1>" in storage.read_text(storage.join(work, "report",
                                                                     "report.html"))
    assert storage.is_file(storage.join(work, "_logs", "train.log"))
    # a rerun finds every stage complete on the bucket
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env=env)
    assert again.returncode == 0 and "done in" not in again.stdout, again.stdout
    assert again.stdout.count("complete, skipped") == 10, again.stdout
    inspect = subprocess.run([sys.executable, "-m", "pipelines.cli", "inspect", work],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    assert "== shards" in inspect.stdout and "0 incomplete" in inspect.stdout
