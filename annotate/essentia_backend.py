"""essentia (standard mode): tempo and beats, key with its strength, chords from HPCP.

One :class:`EssentiaAnnotator` is built per process (the algorithm objects are configured
once) and called per clip window. The window is resampled once to 44.1 kHz float32 (what
``RhythmExtractor2013`` requires) and every analysis reads that array:

* tempo/beats: ``RhythmExtractor2013`` (method from :attr:`EssentiaConfig.rhythm_method`;
  ``multifeature`` gives a confidence, ``degara`` is cheaper but always reports 0). essentia
  has no bar model here: beats carry ``beat_number=0`` and the meter is 0 (unknown).
* key: ``KeyExtractor`` with the chosen profile (docs/annotate.md); its ``strength`` (the
  profile correlation) is kept. ``KeyExtractor`` with each of :data:`FUSION_KEY_PROFILES` also
  runs (the chosen profile's answer is taken from there when it is one of them, not computed
  twice); those answers are evidence for the fitted key fusion (:mod:`annotate.fusion`).
  (``Key`` on the chord HPCP's mean was tried first: it leans to the subdominant on music with
  drums, 0.31-0.46 MIREX on synthesized songs: a smoke-test figure, not re-measured.)
* chords: one HPCP pass (frame 4096, hop 2048) feeds ``ChordsDetection`` (sliding window) or
  ``ChordsDetectionBeats`` (one chord per beat interval, reusing the beats above); frames
  quieter than the silence floor are ``N``. The mean HPCP (C..B) is kept for the key fusion.
* onsets: ``OnsetRate`` (HFC and complex-domain detection functions): the note onsets, which
  the fitted tempo fusion counts per beat to choose between a tempo and its octaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate.fusion import KEY_PROFILE_FEATURES
from annotate.labels import essentia_key, harte
from annotate.types import BackendAnalysis, Beat, ChordSegment, KeyEstimate, TempoEstimate
from llark.audio import resample
from llark.config import doc
from llark.errors import AnalysisError, ConfigError

SAMPLE_RATE_HZ = 44100
HPCP_FRAME = 4096
HPCP_HOP = 2048
MIN_SECONDS = 1.0
#: RhythmExtractor2013's multifeature confidence lies in [0, 5.32] (essentia's documentation).
MULTIFEATURE_MAX_CONFIDENCE = 5.32
KEY_PROFILES = ("diatonic", "krumhansl", "temperley", "weichai", "tonictriad", "temperley2005",
                "thpcp", "shaath", "gomez", "noland", "faraldo", "pentatonic", "edmm", "edma",
                "bgate", "braw")

#: Profiles the fitted key fusion reads (defined once, in annotate/fusion.py).
FUSION_KEY_PROFILES = KEY_PROFILE_FEATURES


@dataclass(frozen=True)
class EssentiaConfig:
    """Options of the essentia backend."""

    rhythm_method: str = doc("RhythmExtractor2013 method: 'multifeature' or 'degara'",
                             default="multifeature")
    key_profile: str = doc("KeyExtractor profileType (chosen by benchmarks/annotate_accuracy.py)",
                           default="shaath")
    chord_method: str = doc("'frames' (ChordsDetection, sliding window) or 'beats' "
                            "(ChordsDetectionBeats on the detected beats)", default="frames")
    chord_window_s: float = doc("ChordsDetection window length in seconds", default=2.0)
    frame_silence_dbfs: float = doc("HPCP frames quieter than this are labelled N", default=-60.0)
    fusion_key_profiles: tuple[str, ...] = doc(
        "key profiles also run (``KeyExtractor`` each) as evidence for the fitted key "
        "fusion", default=FUSION_KEY_PROFILES)

    def __post_init__(self) -> None:
        if self.rhythm_method not in ("multifeature", "degara"):
            raise ConfigError(f"rhythm_method must be 'multifeature' or 'degara', got "
                              f"{self.rhythm_method!r}")
        if self.key_profile not in KEY_PROFILES:
            raise ConfigError(f"key_profile {self.key_profile!r} is not one of {KEY_PROFILES}")
        bad = [p for p in self.fusion_key_profiles if p not in KEY_PROFILES]
        if bad:
            raise ConfigError(f"fusion_key_profiles {bad} are not among {KEY_PROFILES}")
        if self.chord_method not in ("frames", "beats"):
            raise ConfigError(f"chord_method must be 'frames' or 'beats', got "
                              f"{self.chord_method!r}")
        if not 0.1 <= self.chord_window_s <= 10.0:
            raise ConfigError(f"chord_window_s must be within 0.1..10, got {self.chord_window_s}")


def _segments(labels: list[str], times: np.ndarray, end_s: float) -> tuple[ChordSegment, ...]:
    """Consecutive equal labels at ``times`` (start of each) → chord segments up to ``end_s``."""
    out: list[ChordSegment] = []
    for i, label in enumerate(labels):
        start = float(times[i])
        stop = float(times[i + 1]) if i + 1 < len(labels) else end_s
        stop = min(stop, end_s)
        if stop <= start:
            continue
        if out and out[-1].label == label:
            out[-1] = ChordSegment(out[-1].start_s, round(stop, 3), label)
        else:
            out.append(ChordSegment(round(start, 3), round(stop, 3), label))
    return tuple(out)


class EssentiaAnnotator:
    """``annotator(audio, sr) -> BackendAnalysis`` with essentia's algorithms built once."""

    name = "essentia"

    def __init__(self, config: EssentiaConfig | None = None) -> None:
        self.config = cfg = config or EssentiaConfig()
        import essentia
        import essentia.standard as es

        essentia.log.infoActive = False
        essentia.log.warningActive = False
        self._es = es
        self._rhythm = es.RhythmExtractor2013(method=cfg.rhythm_method)
        # the key's own KeyExtractor, unless a fusion profile already runs it
        self._key = (None if cfg.key_profile in cfg.fusion_key_profiles else
                     es.KeyExtractor(profileType=cfg.key_profile, sampleRate=SAMPLE_RATE_HZ))
        self._window = es.Windowing(type="blackmanharris62", size=HPCP_FRAME)
        self._spectrum = es.Spectrum(size=HPCP_FRAME)
        self._peaks = es.SpectralPeaks(orderBy="magnitude", magnitudeThreshold=1e-5,
                                       minFrequency=20, maxFrequency=3500, maxPeaks=60,
                                       sampleRate=SAMPLE_RATE_HZ)
        self._hpcp = es.HPCP(size=12, referenceFrequency=440, harmonics=8, bandPreset=True,
                             minFrequency=20, maxFrequency=3500, weightType="cosine",
                             nonLinear=False, windowSize=1.0, sampleRate=SAMPLE_RATE_HZ)
        self._chords = es.ChordsDetection(hopSize=HPCP_HOP, sampleRate=SAMPLE_RATE_HZ,
                                          windowSize=cfg.chord_window_s)
        self._chords_beats = es.ChordsDetectionBeats(hopSize=HPCP_HOP, sampleRate=SAMPLE_RATE_HZ)
        self._profile_keys = {p: es.KeyExtractor(profileType=p, sampleRate=SAMPLE_RATE_HZ)
                              for p in cfg.fusion_key_profiles}
        self._onset_rate = es.OnsetRate()

    def hpcp(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HPCP frames ``(n, 12)`` in essentia's A-based order and frame RMS in dBFS ``(n,)``."""
        frames, levels = [], []
        for frame in self._es.FrameGenerator(x, frameSize=HPCP_FRAME, hopSize=HPCP_HOP,
                                             startFromZero=True):
            freqs, mags = self._peaks(self._spectrum(self._window(frame)))
            frames.append(self._hpcp(freqs, mags))
            rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
            levels.append(20.0 * np.log10(max(rms, 1e-12)))
        if not frames:
            return np.zeros((0, 12), np.float32), np.zeros(0)
        return np.asarray(frames, dtype=np.float32), np.asarray(levels)

    def profile_keys(self, x: np.ndarray) -> list[tuple[str, str, float]]:
        """``(profile, key, strength)`` of ``KeyExtractor`` with each fusion profile on the
        44.1 kHz float32 window ``x``."""
        out = []
        for prof, algo in self._profile_keys.items():
            k, sc, st = algo(x)
            out.append((prof, essentia_key(k, sc), float(st)))
        return out

    def onsets(self, x: np.ndarray) -> tuple[float, ...]:
        """Onset times (s) in the 44.1 kHz float32 window ``x``."""
        self._onset_rate.reset()          # OnsetRate keeps state between calls otherwise
        times, _rate = self._onset_rate(x)
        duration = len(x) / SAMPLE_RATE_HZ
        return tuple(round(float(t), 4) for t in np.asarray(times) if 0.0 <= t < duration)

    def __call__(self, audio: np.ndarray, sr: int) -> BackendAnalysis:
        if audio.ndim != 1:
            raise AnalysisError(f"essentia backend needs mono audio, got shape {audio.shape}")
        cfg = self.config
        x = resample(np.ascontiguousarray(audio, dtype=np.float32), int(sr), SAMPLE_RATE_HZ)
        x = np.ascontiguousarray(x, dtype=np.float32)
        duration = len(x) / SAMPLE_RATE_HZ
        if duration < MIN_SECONDS:
            raise AnalysisError(f"essentia backend needs at least {MIN_SECONDS:.1f}s of audio, "
                                f"got {duration:.3f}s")

        # ---- rhythm
        bpm, ticks, confidence, estimates, _intervals = self._rhythm(x)
        ticks = np.asarray(ticks, dtype=np.float64)
        ticks = ticks[(ticks >= 0) & (ticks < duration)]
        bpm = float(bpm) if np.isfinite(bpm) and len(ticks) >= 2 else 0.0
        if cfg.rhythm_method == "multifeature":
            tempo_conf = float(np.clip(confidence / MULTIFEATURE_MAX_CONFIDENCE, 0.0, 1.0))
        else:
            tempo_conf = 0.0
        est = np.asarray(estimates, dtype=np.float64)
        cands: list[tuple[float, float]] = []
        if bpm > 0:
            cands.append((bpm, 1.0))
        if est.size:
            vals, counts = np.unique(np.round(est), return_counts=True)
            for i in np.argsort(-counts)[:4]:
                if all(abs(vals[i] - c) > 1.0 for c, _ in cands):
                    cands.append((float(vals[i]), float(counts[i] / est.size)))
        tempo = TempoEstimate(bpm, tempo_conf if bpm > 0 else 0.0, tuple(cands))
        beats = tuple(Beat(round(float(t), 4), 0) for t in ticks) if bpm > 0 else ()

        # ---- key: the chosen profile's answer, and every fusion profile's
        key_profiles = tuple(self.profile_keys(x))
        if self._key is None:
            label, strength = next((k, st) for p, k, st in key_profiles if p == cfg.key_profile)
        else:
            key_name, scale, strength = self._key(x)
            label = essentia_key(key_name, scale)
        key = KeyEstimate(label, float(np.clip(strength, 0, 1)), (), float(strength))

        # ---- chords and chroma from one HPCP pass
        pcp, levels = self.hpcp(x)
        loud = levels > cfg.frame_silence_dbfs
        if pcp.shape[0] and loud.any():
            mean = pcp[loud].mean(axis=0)                           # (12,) A-based
            mean = np.roll(mean, -3)                                # (12,) C-based
            chroma = tuple(float(v) for v in mean / max(float(mean.max()), 1e-9))
        else:
            chroma = ()
        frame_labels: list[str] = []
        chords: tuple[ChordSegment, ...] = ()
        chords_conf = 0.0
        if pcp.shape[0]:
            labels, strength_f = self._chords(pcp)
            frame_labels = [harte(lab) if loud[i] else "N" for i, lab in enumerate(labels)]
            # ChordsDetection labels frame i from a window centred on the frame's centre,
            # (i + 1) * hop; segment boundaries sit half a hop before the centres.
            times = (np.arange(len(frame_labels)) + 0.5) * HPCP_HOP / SAMPLE_RATE_HZ
            times[0] = 0.0
            strength_f = np.asarray(strength_f, dtype=np.float64)
            if loud.any():
                chords_conf = float(np.clip(np.mean(strength_f[loud]), 0.0, 1.0))
            if cfg.chord_method == "beats" and len(beats) >= 3:
                seg_labels, seg_strength = self._chords_beats(pcp, ticks.astype(np.float32))
                seg_times = ticks[:len(seg_labels)]
                beat_labels = [harte(lab) for lab in seg_labels]
                head = [lab for t, lab in zip(times, frame_labels) if t < seg_times[0]]
                chords = _segments(head + beat_labels,
                                   np.r_[times[:len(head)], seg_times], duration)
                if len(seg_strength):
                    chords_conf = float(np.clip(np.mean(seg_strength), 0.0, 1.0))
            else:
                chords = _segments(frame_labels, times, duration)
        if not chords:
            chords = (ChordSegment(0.0, round(duration, 3), "N"),)
        return BackendAnalysis(
            backend=self.name, duration_s=duration, tempo=tempo, beats=beats, meter=0,
            meter_confidence=0.0, key=key, chords=chords, chords_confidence=chords_conf,
            beats_confidence=tempo.confidence, chroma=chroma, chord_frames=tuple(frame_labels),
            chord_fps=SAMPLE_RATE_HZ / HPCP_HOP, key_profiles=key_profiles,
            onsets=self.onsets(x))
