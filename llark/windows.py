"""Clip windows: how a track is cut into the clips that are annotated, embedded and heard.

The default window is the Jukebox context (1,048,576 samples at 44.1 kHz ≈ 23.777 s) rounded
down to the millisecond, so the paper's encoder sees every sample of every clip in one pass.

Tail rule: a track is cut into consecutive windows of ``clip_seconds`` from 0. The last, shorter
piece becomes a clip of its own when it is at least ``min_clip_seconds`` long and is dropped
(counted as ``tail_too_short``) otherwise. A track shorter than ``min_clip_seconds`` yields no
clip at all and is reported as too short. Window bounds are whole milliseconds, which is what
clip IDs carry, so a window recomputed from an ID is exactly the same window.
"""

from __future__ import annotations

import math

JUKEBOX_SAMPLE_RATE_HZ = 44100
JUKEBOX_CONTEXT_SAMPLES = 1_048_576
#: Jukebox's context in seconds, floored to the millisecond (23.777 s).
DEFAULT_CLIP_SECONDS = math.floor(JUKEBOX_CONTEXT_SAMPLES / JUKEBOX_SAMPLE_RATE_HZ * 1000) / 1000
DEFAULT_MIN_CLIP_SECONDS = 5.0


def clip_windows(duration_s: float, clip_seconds: float = DEFAULT_CLIP_SECONDS,
                 min_clip_seconds: float = DEFAULT_MIN_CLIP_SECONDS,
                 offset_s: float = 0.0) -> tuple[list[tuple[float, float]], int]:
    """Windows ``[(start_s, end_s), ...]`` covering ``offset_s .. offset_s + duration_s``.

    Returns the windows and the number of dropped tails (0 or 1). Bounds are whole ms.
    """
    if clip_seconds <= 0 or min_clip_seconds <= 0 or min_clip_seconds > clip_seconds:
        raise ValueError(f"need 0 < min_clip_seconds ({min_clip_seconds}) <= clip_seconds "
                         f"({clip_seconds})")
    step_ms = int(round(clip_seconds * 1000))
    min_ms = int(round(min_clip_seconds * 1000))
    begin_ms = int(round(offset_s * 1000))
    end_ms = begin_ms + int(math.floor(duration_s * 1000 + 1e-6))
    windows: list[tuple[float, float]] = []
    dropped = 0
    start = begin_ms
    while start < end_ms:
        stop = min(start + step_ms, end_ms)
        if stop - start >= min_ms:
            windows.append((start / 1000, stop / 1000))
        else:
            dropped += 1
        start = stop
    return windows, dropped
