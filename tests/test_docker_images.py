"""The two worker images build from the repository and import what their stages run: the CPU
image (docker/Dockerfile.beam: every stage, features embed) and the GPU image
(docker/Dockerfile.embed-gpu: embed --encoder jukebox). Skipped, with the reason, where no
Docker daemon answers (``docker info``)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def docker_unavailable() -> str:
    """Why Docker cannot build here ("" when it can)."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        return f"docker info failed: {lines[-1] if lines else f'exit {proc.returncode}'}"
    return ""


IMAGES = {"beam": ("docker/Dockerfile.beam", "import pipelines.embed, embed.features, "
                   "pipelines.annotate, pipelines.shards, torch; "
                   "assert torch.version.cuda is None; print('ok')"),
          "embed-gpu": ("docker/Dockerfile.embed-gpu", "import pipelines.embed, embed.jukebox, "
                        "jukebox_infer, torch; assert torch.version.cuda; print('ok')")}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_worker_image_builds_and_imports_its_stage(name):
    reason = docker_unavailable()
    if reason:
        pytest.skip(f"cannot build Docker images here: {reason}")
    dockerfile, check = IMAGES[name]
    tag = f"llark-test-{name}:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(["docker", "build", "-f", dockerfile, "-t", tag, "."], cwd=REPO,
                           capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        run = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", tag, "-c",
                              check], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=300)
