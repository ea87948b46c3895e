"""Shared fixtures: real recordings (skip when absent), a small synthesized song."""

from __future__ import annotations

from pathlib import Path

import pytest

# The object-store emulator fixtures (gcs, s3, object_store; servers start only when asked for).
pytest_plugins = ["tests.object_stores"]

REPO = Path(__file__).resolve().parents[1]
REAL_AUDIO = REPO.parent / "shared" / "data" / "real-audio"


@pytest.fixture(scope="session")
def real_audio_dir() -> Path:
    """``../shared/data/real-audio`` (six CC-licensed recordings); tests skip without it."""
    if not REAL_AUDIO.is_dir() or not any(REAL_AUDIO.glob("*.ogg")):
        pytest.skip(f"real recordings not found at {REAL_AUDIO}")
    return REAL_AUDIO


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
