"""``features-v1``: the offline default encoder, 128 hand-made musical features at 10 Hz.

No model, no weights, no GPU: a short-time Fourier transform and a few classic descriptors
(librosa), pooled onto the shared 10 Hz frame grid of :mod:`embed.base`. It is what the demo
and the CPU tests train on; it is *not* Jukebox and its name says so.

Computation (mono float32 at 22,050 Hz, not normalised, so loudness stays informative):

* STFT: 2,048-point Hann window, hop 441 samples (20 ms, 50 Hz), centred; power ``S``.
* Each 100 ms frame ``j`` averages the five 20 ms STFT frames ``5j .. 5j+4`` (the ones centred
  inside it); a trailing STFT frame centred exactly on the window's end joins the last frame.
* Time-domain values (RMS, zero crossings) use exactly the samples of the frame.

Layout of the 128 numbers per frame (fixed scaling so every feature sits roughly in [-2, 2]):

====== ===================== ===========================================================
index  feature               scaling
====== ===================== ===========================================================
0-95   log-mel, 96 bands     power in dB (ref 1.0, floor -100 dB), ``(dB - 10) / 40``
96-107 chroma (STFT), 12     per-frame max = 1 (librosa, tuning fixed at A440), C .. B
108-113 tonnetz, 6           librosa tonnetz of the chroma, in [-1, 1]
114    onset strength, mean  librosa onset envelope of the log-mel, ``/ 10``
115    onset strength, max   same, maximum over the frame, ``/ 10``
116    RMS level             dBFS of the frame's samples (floor -100), ``/ 50``
117    zero-crossing rate    crossings per sample, in [0, 1]
118    spectral centroid     divided by Nyquist, in [0, 1]
119    spectral roll-off 85% divided by Nyquist, in [0, 1]
120    spectral flatness     in [0, 1]
121-127 spectral contrast, 7 dB (librosa, 6 bands + residual), ``/ 40``
====== ===================== ===========================================================
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Sequence

import numpy as np

from embed.base import FRAME_RATE_HZ, Encoder, EncoderInfo, check_windows, n_frames

NAME = "features-v1"
SAMPLE_RATE_HZ = 22050
N_FFT = 2048
HOP = 441                         # 20 ms at 22,050 Hz
SUB_PER_FRAME = 5                 # 5 x 20 ms = one 100 ms frame
FRAME_SAMPLES = HOP * SUB_PER_FRAME
N_MELS = 96
DIM = 128

#: (name, start, stop) of each feature group in a frame vector.
LAYOUT: tuple[tuple[str, int, int], ...] = (
    ("log_mel", 0, 96),
    ("chroma", 96, 108),
    ("tonnetz", 108, 114),
    ("onset_mean", 114, 115),
    ("onset_max", 115, 116),
    ("rms_dbfs", 116, 117),
    ("zero_crossing_rate", 117, 118),
    ("spectral_centroid", 118, 119),
    ("spectral_rolloff", 119, 120),
    ("spectral_flatness", 120, 121),
    ("spectral_contrast", 121, 128),
)

INFO = EncoderInfo(NAME, SAMPLE_RATE_HZ, FRAME_RATE_HZ, DIM)


def _pool(sub: np.ndarray, frames: int, how: str = "mean") -> np.ndarray:
    """``(k, n_sub)`` 50 Hz features -> ``(frames, k)`` at 10 Hz (sub-frame i -> i // 5)."""
    n_sub = sub.shape[1]
    group = np.minimum(np.arange(n_sub) // SUB_PER_FRAME, frames - 1)      # (n_sub,)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])         # first of each group
    if how == "max":
        pooled = np.maximum.reduceat(sub, starts, axis=1)                   # (k, frames)
    else:
        counts = np.diff(np.r_[starts, n_sub])                              # (frames,)
        pooled = np.add.reduceat(sub, starts, axis=1) / counts              # (k, frames)
    return pooled.T                                                         # (frames, k)


def _time_domain(audio: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """RMS dBFS and zero-crossing rate of exactly the samples of each 100 ms frame."""
    padded = np.zeros(frames * FRAME_SAMPLES, dtype=np.float32)
    padded[: audio.size] = audio[: frames * FRAME_SAMPLES]
    blocks = padded.reshape(frames, FRAME_SAMPLES)                          # (frames, 2205)
    lengths = np.full(frames, FRAME_SAMPLES, dtype=np.float64)
    lengths[-1] = audio.size - (frames - 1) * FRAME_SAMPLES                 # partial last frame
    power = (blocks.astype(np.float64) ** 2).sum(axis=1) / lengths
    rms_db = 10.0 * np.log10(np.maximum(power, 1e-10))                      # (frames,)
    signs = np.signbit(blocks)
    crossings = (signs[:, 1:] != signs[:, :-1]).sum(axis=1)
    zcr = crossings / np.maximum(lengths - 1, 1)                            # (frames,)
    return rms_db, zcr


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS)  # (96, 1025)


def features_v1(audio: np.ndarray) -> np.ndarray:
    """One mono window at 22,050 Hz -> ``(ceil(10 * seconds), 128)`` float32."""
    return _features_and_onset(audio)[0]


def _features_and_onset(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``features-v1`` of a window and its 50 Hz onset envelope ``(n_sub,)``."""
    import librosa

    frames = n_frames(audio.size, SAMPLE_RATE_HZ, FRAME_RATE_HZ)
    with warnings.catch_warnings():
        # Windows shorter than the FFT are zero-padded by design (a 50 ms clip has a frame).
        warnings.filterwarnings("ignore", message="n_fft=.* is too large")
        spec = librosa.stft(audio, n_fft=N_FFT, hop_length=HOP, window="hann", center=True)
    mag = np.abs(spec)                                                      # (1025, n_sub)
    power = mag ** 2
    mel = _mel_basis() @ power                                               # (96, n_sub)
    mel_db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)    # (96, n_sub)
    chroma = librosa.feature.chroma_stft(S=power, sr=SAMPLE_RATE_HZ, tuning=0.0)  # (12, n_sub)
    tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=SAMPLE_RATE_HZ)    # (6, n_sub)
    onset = librosa.onset.onset_strength(S=mel_db, sr=SAMPLE_RATE_HZ, hop_length=HOP)[None]
    centroid = librosa.feature.spectral_centroid(S=mag, sr=SAMPLE_RATE_HZ)  # (1, n_sub)
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=SAMPLE_RATE_HZ, roll_percent=0.85)
    flatness = librosa.feature.spectral_flatness(S=mag)                    # (1, n_sub)
    contrast = librosa.feature.spectral_contrast(S=mag, sr=SAMPLE_RATE_HZ)  # (7, n_sub)
    nyquist = SAMPLE_RATE_HZ / 2
    rms_db, zcr = _time_domain(audio, frames)

    out = np.empty((frames, DIM), dtype=np.float32)
    out[:, 0:96] = (_pool(mel_db, frames) - 10.0) / 40.0
    out[:, 96:108] = _pool(chroma, frames)
    out[:, 108:114] = _pool(np.nan_to_num(tonnetz), frames)
    out[:, 114:115] = _pool(onset, frames) / 10.0
    out[:, 115:116] = _pool(onset, frames, "max") / 10.0
    out[:, 116] = rms_db / 50.0
    out[:, 117] = zcr
    out[:, 118:119] = _pool(centroid, frames) / nyquist
    out[:, 119:120] = _pool(rolloff, frames) / nyquist
    out[:, 120:121] = _pool(flatness, frames)
    out[:, 121:128] = _pool(contrast, frames) / 40.0
    return out, onset[0]


class FeaturesEncoder(Encoder):
    """A features function behind the :class:`embed.base.Encoder` interface (CPU, no state):
    ``features-v1`` by default, ``FeaturesEncoder(INFO_V2, features_v2)`` for v2."""

    def __init__(self, info: EncoderInfo = INFO,
                 features: Callable[[np.ndarray], np.ndarray] = features_v1) -> None:
        self._info = info
        self._features = features

    @property
    def info(self) -> EncoderInfo:
        return self._info

    def __call__(self, windows: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self._features(w) for w in check_windows(windows, self._info.name)]


# --------------------------------------------------------------------------- features-v2
#
# ``features-v2`` = the 128 numbers of ``features-v1`` + a 32-bin local tempogram (index
# 128-159). At 10 Hz a frame's onset values cannot show a beat period once frames are pooled,
# so v2 carries the periodicity itself: the autocorrelation tempogram of the 50 Hz onset
# envelope (librosa.feature.tempogram, an 8 s window centred on each 20 ms frame, normalised
# so lag 0 = 1), read at 32 log-spaced tempi from 30 to 300 BPM (lag = 3000 / BPM sub-frames,
# linear interpolation between lags) and mean-pooled onto the 10 Hz grid like the rest.

NAME_V2 = "features-v2"
TEMPO_BINS = 32
TEMPO_MIN_BPM, TEMPO_MAX_BPM = 30.0, 300.0
TEMPOGRAM_WINDOW = 400                     # sub-frames of 20 ms: 8 s
DIM_V2 = DIM + TEMPO_BINS
LAYOUT_V2: tuple[tuple[str, int, int], ...] = LAYOUT + (("tempogram", DIM, DIM_V2),)
INFO_V2 = EncoderInfo(NAME_V2, SAMPLE_RATE_HZ, FRAME_RATE_HZ, DIM_V2)


def tempo_bins_bpm() -> np.ndarray:
    """The tempi (BPM) of the 32 tempogram bins, log-spaced from 30 to 300."""
    return np.geomspace(TEMPO_MIN_BPM, TEMPO_MAX_BPM, TEMPO_BINS)


def tempogram_bins(onset: np.ndarray, frames: int) -> np.ndarray:
    """50 Hz onset envelope ``(n_sub,)`` -> ``(frames, 32)`` tempogram at the bins' tempi."""
    import librosa

    sub_rate = SAMPLE_RATE_HZ / HOP                                          # 50 Hz
    tg = librosa.feature.tempogram(onset_envelope=onset, sr=SAMPLE_RATE_HZ, hop_length=HOP,
                                   win_length=TEMPOGRAM_WINDOW)              # (400, n_sub)
    lags = 60.0 * sub_rate / tempo_bins_bpm()                                # (32,) sub-frames
    lo = np.floor(lags).astype(int)
    frac = (lags - lo)[:, None]
    at = tg[lo] * (1.0 - frac) + tg[np.minimum(lo + 1, tg.shape[0] - 1)] * frac  # (32, n_sub)
    return _pool(np.nan_to_num(at), frames)                                  # (frames, 32)


def features_v2(audio: np.ndarray) -> np.ndarray:
    """One mono window at 22,050 Hz -> ``(ceil(10 * seconds), 160)`` float32."""
    v1, onset = _features_and_onset(audio)
    frames = v1.shape[0]
    out = np.empty((frames, DIM_V2), dtype=np.float32)
    out[:, :DIM] = v1
    out[:, DIM:] = tempogram_bins(onset, frames)
    return out
