"""The trainer's reader on a bucket: a shard set on ``gs://``/``s3://`` opens and streams like a
local one, row group by row group through range requests (the proxy's log shows no
whole-object download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("google.cloud.storage")

from llark import storage  # noqa: E402
from llark.errors import ShardError  # noqa: E402
from model.data import ShardStream, StreamConfig, make_loader, open_shard_set  # noqa: E402
from model.modeling import tiny_tokenizer  # noqa: E402
from pipelines.schema import INDEX_FILE  # noqa: E402
from tests.object_stores import RecordingProxy  # noqa: E402
from tests.shard_factory import make_shard_set  # noqa: E402


def _ids(shard_set, tok) -> list[str]:
    stream = ShardStream(shard_set, tok, StreamConfig(loop=False, shuffle_buffer=1, num_workers=0))
    return [c for batch in make_loader(stream, batch_size=4, pad_id=tok.pad_token_id)
            for c in batch.clip_ids]


def test_remote_shard_set_streams_with_range_reads(object_store, emulator_log_dir, gcs_server,
                                                   s3_server, monkeypatch, tmp_path):
    local = tmp_path / "shards"
    # ~120 KB per shard: larger than the 64 KB a Parquet reader fetches for the footer
    make_shard_set(local, n_rows=24, n_frames=40, dim=128, rows_per_shard=12, row_group_size=3)
    tok = tiny_tokenizer()
    server = gcs_server if object_store.scheme == "gs" else s3_server
    proxy = RecordingProxy(server.port, emulator_log_dir)
    try:
        remote = object_store.url("shards")
        if object_store.scheme == "gs":
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
            storage.upload_tree(local, remote, last=(INDEX_FILE,))
        else:
            storage.upload_tree(local, remote, last=(INDEX_FILE,))
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        proxy.clear()
        shard_set = open_shard_set(remote)
        assert shard_set.paths[0] == f"{remote}/part-00000.parquet"
        assert shard_set.row_groups == ((3, 3, 3, 3), (3, 3, 3, 3))
        assert _ids(shard_set, tok) == _ids(open_shard_set(local), tok)
        for part in ("part-00000.parquet", "part-00001.parquet"):
            key = f"{remote}/{part}".split("/", 3)[3]
            reads = proxy.reads(key)
            assert reads and all(r.range.startswith("bytes=") for r in reads), reads
            size = (local / part).stat().st_size
            # no single request fetched the whole file (range reads of footer + row groups)
            assert max(r.body_bytes for r in reads) < size, (size, reads)
    finally:
        proxy.close()


def test_remote_shard_set_without_index_is_refused(object_store):
    storage.write_bytes(object_store.url("half", "part-00000.parquet"), b"PAR1")
    with pytest.raises(ShardError, match="no _index.json"):
        open_shard_set(object_store.url("half"))


@pytest.mark.slow
def test_train_resume_infer_eval_with_every_path_on_the_bucket(object_store, tmp_path,
                                                               monkeypatch):
    """llark train → (resume) → infer → eval with shards, run folder, checkpoint, predictions
    and scores all on the bucket; nothing half-visible: a checkpoint's state file is its last
    object, and inference loads the latest complete checkpoint."""
    from model.evaluate import run as eval_run
    from model.infer import run as infer_run
    from model.train import run as train_run

    monkeypatch.setenv("LLARK_CACHE_DIR", str(tmp_path / "cache"))
    local = tmp_path / "s"
    make_shard_set(local, n_rows=6, n_frames=4, dim=128, encoder="features-v1",
                   splits=("train", "test"))
    shards, run = object_store.url("s"), object_store.url("run")
    storage.upload_tree(local, shards, last=(INDEX_FILE,))
    common = ["tiny_hidden_size=32", "trackers=", "splits=", "save_every=2"]
    assert train_run(["--shards", shards, "--output", run, "max_steps=2", *common]) == 0
    assert train_run(["--shards", shards, "--output", run, "max_steps=4", *common]) == 0
    states = storage.list_files(run, "*trainer_state.json")
    assert [storage.relative(p, run) for p in states] == [
        "checkpoints/checkpoint-00000002/trainer_state.json",
        "checkpoints/checkpoint-00000004/trainer_state.json"]
    metrics_lines = storage.read_text(storage.join(run, "metrics.jsonl")).splitlines()
    assert [json.loads(line)["step"] for line in metrics_lines][-1] == 4   # resumed, not redone
    predictions = object_store.url("infer", "predictions.jsonl")
    assert infer_run(["--checkpoint", run, "--shards", shards, "--split", "test",
                      "--max-new-tokens", "4", "--output", predictions]) == 0
    lines = storage.read_text(predictions).splitlines()
    assert len(lines) == 3 * 4                   # 3 test clips x key, tempo, genre, instruments
    # the latest checkpoint was fetched (without its optimizer state)
    cached = sorted(p.name for p in (tmp_path / "cache" / "remote").iterdir())
    assert len(cached) == 1 and cached[0].startswith("checkpoint-00000004-")
    assert not list((tmp_path / "cache").rglob("optimizer.safetensors"))
    assert eval_run(["--predictions", predictions, "--output", object_store.url("eval"),
                     "--no-meteor"]) == 0
    scores = json.loads(storage.read_text(object_store.url("eval", "metrics.json")))
    assert scores["n_predictions"] == 12


@pytest.mark.slow
def test_killed_bucket_run_keeps_each_checkpoint_and_resumes(s3, tmp_path):
    """A machine that dies mid-run (SIGKILL: no cleanup runs) has already put every complete
    checkpoint on the bucket, only the last ``keep_last`` of them, and a rerun resumes from the
    newest one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from model.storage import remote_checkpoints
    from model.train import run as train_run

    local = tmp_path / "s"
    make_shard_set(local, n_rows=6, n_frames=4, dim=128, encoder="features-v1")
    shards, run = s3.url("s"), s3.url("run")
    storage.upload_tree(local, shards, last=(INDEX_FILE,))
    common = ["tiny_hidden_size=32", "trackers=", "splits=", "save_every=1", "keep_last=2"]
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "train", "--shards", shards,
                             "--output", run, "max_steps=100000", *common], cwd=repo,
                            env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(remote_checkpoints(run)) >= 2 and \
                    int(remote_checkpoints(run)[-1].rsplit("-", 1)[1]) >= 3:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the trainer exited on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    complete = remote_checkpoints(run)
    steps = [int(u.rsplit("-", 1)[1]) for u in complete]
    assert steps[-1] >= 3, steps
    # the newest upload comes before the old one's deletion: keep_last, or one more mid-prune
    assert 2 <= len(steps) <= 3 and steps == sorted(steps), steps
    newest = steps[-1]
    # the rerun resumes from the newest complete checkpoint (not from scratch) and prunes
    assert train_run(["--shards", shards, "--output", run, f"max_steps={newest + 2}",
                      *common]) == 0
    after = [int(u.rsplit("-", 1)[1]) for u in remote_checkpoints(run)]
    assert after == [newest + 1, newest + 2], after
    # nothing of older checkpoints is left, not even the files a kill mid-prune leaves behind
    folders = {storage.relative(f, run).split("/")[1]
               for f in storage.list_files(run, "checkpoints/*")}
    assert folders == {f"checkpoint-{s:08d}" for s in after}, folders
    logged = [json.loads(x)["step"] for x in
              storage.read_text(storage.join(run, "metrics.jsonl")).splitlines()]
    assert logged[-1] == newest + 2 and len(logged) == len(set(logged)), logged  # not redone
