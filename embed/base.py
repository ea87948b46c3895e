"""The encoder interface every audio encoder implements, and the frame grid they share.

An encoder turns windows of mono audio (float32 at its own input sample rate) into frames at a
fixed frame rate: ``encoder([w0, w1, ...]) -> [(n0, dim), (n1, dim), ...]``, float32, one array
per window, in order. The call is batched: callers hand over as many windows as they like and
the encoder groups them for its device.

Frame grid (shared by every encoder, so embeddings of the same window line up whatever made
them): frame ``j`` covers ``[j / rate, (j + 1) / rate)`` seconds of the window and a window of
``n`` samples at ``sr`` has ``ceil(n * rate / sr)`` frames, the last one possibly partial. Every
sample of a window belongs to exactly one frame, so no audio goes unencoded.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from llark.errors import EncoderError
from llark.windows import DEFAULT_CLIP_SECONDS

#: Frames per second of every encoder in this package (the paper pools Jukebox to 10 Hz).
FRAME_RATE_HZ = 10.0


@dataclass(frozen=True)
class EncoderInfo:
    """What a caller needs to know about an encoder before (or without) loading it."""

    name: str                 # stored with every embedding, e.g. "features-v1"
    sample_rate_hz: int       # the rate input windows must have
    frame_rate_hz: float      # frames per second of the output
    dim: int                  # numbers per frame


def n_frames(n_samples: int, sample_rate_hz: int, frame_rate_hz: float = FRAME_RATE_HZ) -> int:
    """Frames a window of ``n_samples`` has on the frame grid (``ceil``; at least 1)."""
    if n_samples <= 0:
        raise EncoderError(f"a window needs at least one sample, got {n_samples}")
    exact = n_samples * frame_rate_hz / sample_rate_hz
    # Guard against float noise: 23.777 s * 10 Hz must not become 238.00000001 -> 239.
    return max(1, math.ceil(exact - 1e-9))


def expected_frames(duration_s: float, frame_rate_hz: float = FRAME_RATE_HZ) -> int:
    """Frames of a window of ``duration_s`` seconds (for checks on stored embeddings)."""
    return max(1, math.ceil(duration_s * frame_rate_hz - 1e-6))


#: Frames of a default clip (``llark.windows.DEFAULT_CLIP_SECONDS``, 23.777 s): 238.
DEFAULT_CLIP_FRAMES: int = expected_frames(DEFAULT_CLIP_SECONDS)


def check_windows(windows: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """Validate a batch: 1-D, non-empty, finite; returns contiguous float32 views."""
    out = []
    for i, w in enumerate(windows):
        a = np.asarray(w)
        if a.ndim != 1:
            raise EncoderError(f"{what}: window {i} must be mono 1-D audio, got shape {a.shape}")
        if a.size == 0:
            raise EncoderError(f"{what}: window {i} holds no samples")
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise EncoderError(f"{what}: window {i} has {bad} NaN/inf samples of {a.size}")
        out.append(a)
    return out


class Encoder(ABC):
    """An audio encoder: windows of mono audio in, ``(frames, dim)`` float32 arrays out."""

    @property
    @abstractmethod
    def info(self) -> EncoderInfo:
        """Name, input sample rate, frame rate and dimension."""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sample_rate_hz(self) -> int:
        return self.info.sample_rate_hz

    @property
    def frame_rate_hz(self) -> float:
        return self.info.frame_rate_hz

    @property
    def dim(self) -> int:
        return self.info.dim

    @abstractmethod
    def __call__(self, windows: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Encode a batch of mono windows at :attr:`sample_rate_hz`.

        Returns one float32 ``(n_frames(len(w), sample_rate_hz), dim)`` array per window, in
        order. Raises :class:`llark.errors.EncoderError` for unusable input.
        """

    def frames_for(self, n_samples: int) -> int:
        return n_frames(n_samples, self.sample_rate_hz, self.frame_rate_hz)
