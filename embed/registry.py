"""Encoders by name: what the ``--encoder`` flag of ``llark embed`` accepts.

=====================  =======================================================================
name                   what it is
=====================  =======================================================================
``features``           ``features-v1``: 128 musical features at 10 Hz, CPU, no weights (default)
``features-v2``        ``features-v1`` + a 32-bin local tempogram (160-d at 10 Hz), CPU, no
                       weights: the beat period survives pooling frames in time
``jukebox``            Jukebox-5B layer 36, 4800-d at 10 Hz; weights from ``--checkpoint-dir``
                       or ``$LLARK_JUKEBOX_DIR``; needs a CUDA GPU unless ``device="cpu"``
``jukebox-tiny-random`` the Jukebox architecture at toy size with random weights: exercises the
                       real code path (tests, smoke runs); its embeddings mean nothing
=====================  =======================================================================

:func:`encoder_info` answers name, sample rate, frame rate and dimension without loading
anything (the Beam driver and the audio-loading step use it); :func:`build_encoder` loads.
"""

from __future__ import annotations

import os

from embed.base import Encoder, EncoderInfo
from llark.errors import ConfigError, EncoderError

ENCODERS = ("features", "features-v2", "jukebox", "jukebox-tiny-random")
DEVICES = ("auto", "cpu", "cuda")


def _check(name: str) -> None:
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")


def encoder_info(name: str) -> EncoderInfo:
    """Name stored with the embeddings, input sample rate, frame rate, dimension."""
    _check(name)
    if name == "features":
        from embed.features import INFO

        return INFO
    if name == "features-v2":
        from embed.features import INFO_V2

        return INFO_V2
    from embed.base import FRAME_RATE_HZ
    from embed.jukebox import SAMPLE_RATE_HZ, JukeboxConfig

    cfg = JukeboxConfig() if name == "jukebox" else JukeboxConfig.tiny()
    return EncoderInfo(cfg.name, SAMPLE_RATE_HZ, FRAME_RATE_HZ, cfg.width)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(name: str, device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {DEVICES}, got {device!r}")
    if name in ("features", "features-v2"):
        return "cpu"
    has_cuda = cuda_available()
    if device == "cuda" and not has_cuda:
        raise EncoderError(f"encoder {name!r}: device cuda requested but no CUDA GPU is visible "
                           "(check the NVIDIA driver and that torch is a CUDA build)")
    if device == "auto":
        if has_cuda:
            return "cuda"
        if name == "jukebox":
            raise EncoderError(
                "encoder 'jukebox' needs a CUDA GPU and none is visible: run embed on GPU "
                "workers (see docs/embed.md), use --encoder features on CPU, or pass "
                "--device cpu to force a (very slow: minutes per clip) CPU run")
        return "cpu"
    return device


def build_encoder(name: str, checkpoint_dir: str | os.PathLike | None = None,
                  device: str = "auto", batch_pieces: int | None = None,
                  dtype: str | None = None) -> Encoder:
    """Load encoder ``name`` on ``device`` (``auto``: CUDA when visible).

    ``checkpoint_dir`` (or ``$LLARK_JUKEBOX_DIR``) is where ``jukebox`` finds its weights;
    ``batch_pieces`` and ``dtype`` tune the Jukebox forward pass (ignored by ``features``).
    """
    _check(name)
    dev = resolve_device(name, device)
    if name == "features":
        from embed.features import FeaturesEncoder

        return FeaturesEncoder()
    if name == "features-v2":
        from embed.features import INFO_V2, FeaturesEncoder, features_v2

        return FeaturesEncoder(INFO_V2, features_v2)
    from dataclasses import replace

    from embed.jukebox import JukeboxConfig, JukeboxEncoder

    cfg = JukeboxConfig() if name == "jukebox" else JukeboxConfig.tiny()
    if batch_pieces is not None:
        cfg = replace(cfg, batch_pieces=batch_pieces)
    if dtype is not None:
        cfg = replace(cfg, dtype=dtype)
    if name == "jukebox":
        return JukeboxEncoder.from_checkpoint(checkpoint_dir, cfg, dev)
    return JukeboxEncoder.random(cfg, dev)
