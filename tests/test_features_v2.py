"""features-v2: features-v1 plus a local tempogram whose peak sits at the beat period."""

from __future__ import annotations

import numpy as np
import pytest

from embed.features import (DIM, DIM_V2, INFO_V2, LAYOUT_V2, SAMPLE_RATE_HZ, features_v1,
                            features_v2, tempo_bins_bpm)
from embed.registry import build_encoder, encoder_info


def clicks(bpm: float, seconds: float = 12.0) -> np.ndarray:
    """A click track: a 10 ms 1 kHz burst on every beat."""
    audio = np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.float32)
    burst = np.sin(2 * np.pi * 1000 * np.arange(int(0.01 * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ)
    period = 60.0 / bpm
    for t in np.arange(0.0, seconds - 0.02, period):
        i = int(t * SAMPLE_RATE_HZ)
        audio[i:i + burst.size] += 0.5 * burst.astype(np.float32)
    return audio


def test_v2_extends_v1_and_is_registered() -> None:
    audio = clicks(100.0, 3.0)
    v1, v2 = features_v1(audio), features_v2(audio)
    assert v2.shape == (30, DIM_V2) == (30, 160) and v2.dtype == np.float32
    np.testing.assert_array_equal(v2[:, :DIM], v1)
    assert LAYOUT_V2[-1] == ("tempogram", 128, 160)
    assert encoder_info("features-v2") == INFO_V2
    enc = build_encoder("features-v2")
    assert enc.info.name == "features-v2" and enc([audio])[0].shape == (30, 160)
    bins = tempo_bins_bpm()
    assert bins[0] == pytest.approx(30.0) and bins[-1] == pytest.approx(300.0)


@pytest.mark.parametrize("bpm", [75.0, 120.0, 150.0])
def test_tempogram_peaks_at_the_beat(bpm: float) -> None:
    """An impulse train of period P autocorrelates at P, 2P, 3P...: among the tempi above
    0.75 x BPM the strongest bin is the one nearest the true tempo."""
    tg = features_v2(clicks(bpm))[:, DIM:].mean(axis=0)                  # (32,)
    bins = tempo_bins_bpm()
    fast = bins > 0.75 * bpm
    best = bins[fast][np.argmax(tg[fast])]
    nearest = bins[np.argmin(np.abs(np.log(bins / bpm)))]
    assert best == nearest, (bpm, best, nearest)
