"""The embed stage on GPU workers: one encoder copy per machine shared by all its SDK processes
(RunInference's ``large_model`` / ``model_copies``), and remote weights copied once per machine
under a lock, whatever the number of processes asking at once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import embed as E

REPO = Path(__file__).resolve().parents[1]


class LoadRecordingHandler(E.EmbedModelHandler):
    """The real handler and encoder; each ``load_model`` appends its process id to a file."""

    def __init__(self, cfg: E.EmbedConfig, loads_file: str) -> None:
        super().__init__(cfg)
        self._loads_file = loads_file

    def load_model(self):
        with open(self._loads_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        return super().load_model()


def encoded_line(result) -> str:
    """``clip_id pid sum`` of one inference result, from the worker process that got it."""
    e = E.to_encoded(result)
    return f"{e.clip_id} {os.getpid()} {float(np.asarray(e.frames).sum()):.6f}"


def _windows(n: int) -> list[E.AudioWindow]:
    rng = np.random.default_rng(7)
    return [E.AudioWindow(E.WindowMeta(f"folder:t{i}:0-1000", "folder", f"/a/t{i}.wav", 22050),
                          rng.standard_normal(22050).astype(np.float32) * 0.1)
            for i in range(n)]


def test_model_copies_config_reaches_the_model_handler():
    one = E.EmbedModelHandler(E.EmbedConfig(input="i", output="o", model_copies=1))
    assert one.share_model_across_processes() and one.model_copies() == 1
    two = E.EmbedModelHandler(E.EmbedConfig(input="i", output="o", model_copies=2))
    assert two.share_model_across_processes() and two.model_copies() == 2
    default = E.EmbedModelHandler(E.EmbedConfig(input="i", output="o"))
    assert not default.share_model_across_processes()
    with pytest.raises(Exception, match="model-copies must be >= 0"):
        E.EmbedConfig(input="i", output="o", model_copies=-1)


@pytest.mark.slow
def test_one_model_copy_serves_every_worker_process(tmp_path):
    """Two DirectRunner worker processes, model_copies=1: the encoder is loaded once, in one
    process, and both processes' windows are encoded (the same values as a direct call)."""
    loads = tmp_path / "loads.txt"
    loads.write_text("")
    windows = _windows(12)
    cfg = E.EmbedConfig(input="i", output="o", encoder="features", batch_size=1, model_copies=1)
    got = tmp_path / "got"
    options = PipelineOptions(["--runner", "DirectRunner", "--direct_running_mode",
                               "multi_processing", "--direct_num_workers", "2"])
    with beam.Pipeline(options=options) as p:
        results = (p | beam.Create(windows) | beam.Reshuffle()
                   | RunInference(LoadRecordingHandler(cfg, str(loads))))
        results | beam.Map(encoded_line) | beam.io.WriteToText(str(got))
    lines = [ln.split() for f in tmp_path.glob("got*") for ln in f.read_text().splitlines()]
    assert sorted(ln[0] for ln in lines) == sorted(w.meta.clip_id for w in windows)
    worker_pids = {ln[1] for ln in lines}
    assert len(worker_pids) == 2, "both worker processes should have had windows"
    load_pids = loads.read_text().split()
    assert len(load_pids) == 1, load_pids          # one copy for the machine, not one each
    from embed.features import features_v1

    for clip_id, _pid, total in lines:
        w = next(w for w in windows if w.meta.clip_id == clip_id)
        assert float(total) == pytest.approx(float(features_v1(w.audio).sum()), rel=1e-3,
                                             abs=1e-3)


CHILD = textwrap.dedent("""
    import os, sys, time
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    from pipelines.embed import localize_checkpoint
    FileSystems.set_options(PipelineOptions(sys.argv[3:]))   # as a worker has them
    go = sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.005)
    print(localize_checkpoint(sys.argv[1]))
""")


@pytest.mark.slow
def test_weights_are_fetched_once_per_machine_by_concurrent_processes(s3, s3_server, tmp_path):
    """Four processes localize the same s3:// weights at the same moment: each file is
    downloaded once (bytes counted at a recording proxy in front of the S3 emulator), all four
    get the same complete files, and no partial file is left."""
    import boto3

    from embed.jukebox import PRIOR_FILE, VQVAE_FILE
    from tests.object_stores import RecordingProxy

    rng = np.random.default_rng(3)
    blobs = {VQVAE_FILE: rng.bytes(6 << 20), PRIOR_FILE: rng.bytes(9 << 20)}
    prefix = f"{s3.prefix}/weights"
    client = boto3.client("s3", endpoint_url=s3.endpoint)
    for name, data in blobs.items():
        client.put_object(Bucket=s3.bucket, Key=f"{prefix}/{name}", Body=data)
    env = dict(os.environ)
    proxy = RecordingProxy(s3_server.port, tmp_path)
    try:
        env.update(AWS_ENDPOINT_URL=proxy.endpoint, TMPDIR=str(tmp_path / "vm-tmp"))
        (tmp_path / "vm-tmp").mkdir()
        beam_args = [a.replace(s3.endpoint, proxy.endpoint) for a in s3.beam_args]
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, s3.url("weights"),
                                   str(go), *beam_args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        time.sleep(8)                      # every child has imported Beam and is waiting
        go.write_text("")
        outs = [p.communicate(timeout=240) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
        folders = {o[0].strip() for o in outs}
        assert len(folders) == 1
        local = Path(folders.pop())
        for name, data in blobs.items():
            assert hashlib.sha256((local / name).read_bytes()).digest() == \
                hashlib.sha256(data).digest()
            served = sum(r.body_bytes for r in proxy.reads(f"{prefix}/{name}"))
            assert served == len(data), (name, served, len(data))   # once, not once each
        assert not [p.name for p in local.iterdir() if p.name.endswith(".part")]
    finally:
        proxy.close()
