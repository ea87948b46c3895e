"""Consensus of the madmom and essentia answers: one annotation per clip, a confidence per field.

Pure functions over :class:`annotate.types.BackendAnalysis`; no models, no I/O. Key and tempo
come from the fusion fitted on the real-music development set (:mod:`annotate.fusion`; its
parameters are the committed ``annotate/fusion_params.json`` written by
``python -m benchmarks.fit_fusion``), and every confidence is a calibrated probability:

* **Tempo** (:func:`annotate.fusion.fuse_tempo`): a conditional logit over every tempo the
  backends report and its octaves, from the evidence that supports each candidate and its
  octave relation to madmom's bar-model beat level per meter (no tempo prior).
* **Beats, downbeats, meter** (:func:`resolve_beats`): madmom's DBN beats when their grid
  matches the consensus tempo; every 2nd or 3rd of them (in the phase of madmom's downbeats,
  numbered in whole bars of the meter at that level) when madmom tracked 2 or 3 times faster; otherwise essentia's beats when
  theirs does, numbered in whole bars with the phase of madmom's downbeats and madmom's meter carried to that beat level
  (:func:`meter_at_level`); otherwise madmom's. essentia has no bar model. The meter
  confidence is madmom's meter probability, calibrated.
* **The octave guard** (:func:`annotate.fusion.guarded_pick`): the tempo logit's pick replaces
  madmom's tempo only where the fitted probability that leaving it is right reaches
  ``FusionParams.octave_threshold``.
* **Key** (:func:`annotate.fusion.fuse_key`): a conditional logit over the 24 keys of madmom's
  CNN log-probabilities, five essentia key profiles, the HPCP profile correlation and the
  chords' fit to each key, with a calibrated confidence that is low on non-music.
* **Chords** (:func:`resolve_chords`): madmom's CRF segments (the better chord model);
  segments madmom calls ``N`` over loud music take essentia's label when essentia is
  confident (:attr:`ConsensusConfig.chord_fill_strength`). The confidence is a calibration
  of the CRF's own posterior and the share of time essentia's frame-wise chords agree.

The numbers behind every choice are in docs/benchmarks.md (Annotate accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate.fusion import (
    DEFAULT_PARAMS_PATH,
    FusionParams,
    calibrated,
    chord_conf_features,
    chord_key_scores,
    fuse_key,
    fuse_tempo,
    grid_tempo,
    load_params,
    meter_conf_features,
    profile_scores,
    rel_diff,
)
from annotate.labels import NO_CHORD, chord_index
from annotate.types import BackendAnalysis, Beat, ChordSegment, ClipAnalysis
from llark.config import doc
from llark.errors import ConfigError
from llark.music import downbeats as downbeat_times

__all__ = ["ConsensusConfig", "combine", "from_single", "silent_analysis", "resolve_beats",
           "resolve_chords", "resolve_key", "resolve_tempo", "meter_at_level",
           "chord_agreement", "merge_repeats", "grid_tempo", "rel_diff", "profile_scores",
           "chord_key_scores"]


@dataclass(frozen=True)
class ConsensusConfig:
    """Thresholds of the consensus rules and where the fitted fusion's parameters live."""

    tempo_tolerance: float = doc("relative tolerance for a beat grid to match the tempo",
                                 default=0.04)
    chord_fill_strength: float = doc(
        "essentia chord strength above which it replaces madmom's N over loud audio",
        default=0.6)
    fusion_params: str = doc(
        "JSON file of the fitted fusion (python -m benchmarks.fit_fusion); empty = the "
        "committed annotate/fusion_params.json", default="")

    def __post_init__(self) -> None:
        if not 0.0 < self.tempo_tolerance < 0.5:
            raise ConfigError(f"tempo_tolerance must be in (0, 0.5), got {self.tempo_tolerance}")
        if not 0.0 <= self.chord_fill_strength <= 1.0:
            raise ConfigError(f"chord_fill_strength must be within [0, 1], got "
                              f"{self.chord_fill_strength}")

    def params(self) -> FusionParams:
        """The fitted parameters this config names (loaded once per process)."""
        return load_params(self.fusion_params or str(DEFAULT_PARAMS_PATH))


def resolve_tempo(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                  params: FusionParams) -> tuple[float, float, str]:
    """``(bpm, confidence, note)``; ``(0, 0, ...)`` when no backend found a tempo."""
    return fuse_tempo(madmom, essentia, params)


# --------------------------------------------------------------------------- beats

def meter_at_level(meter: int, ratio: float) -> int:
    """The meter at another beat level: a tracker found bars of ``meter`` beats at a tempo
    ``ratio`` times slower than the chosen one, so one of its bars holds ``meter × ratio``
    chosen beats: 3 or 4 of them is that meter; a multiple of 3 (6, 12) is bars of 3; another
    even count (2, 8) is bars of 4; anything else keeps ``meter``."""
    k = meter * ratio
    n = int(round(k))
    if n <= 0 or abs(k - n) > 0.15:
        return meter
    if n in (3, 4):
        return n
    if n % 3 == 0:
        return 3
    if n % 2 == 0:
        return 4
    return meter


def _number_beats(times: list[float], downbeats: tuple[float, ...], meter: int,
                  tolerance_s: float = 0.07) -> tuple[Beat, ...]:
    """Number ``times`` cyclically 1..``meter``, with the bar phase that puts the most of
    another tracker's ``downbeats`` on a beat 1 (ties: the earliest phase). A whole-bar cycle
    stays consistent even when that tracker ran at double speed and marked half-bars.
    All numbers are 0 without a meter or downbeats."""
    t = np.asarray(times, dtype=np.float64)
    if not t.size:
        return ()
    if meter <= 0 or not downbeats:
        return tuple(Beat(round(float(x), 4), 0) for x in t)
    votes = np.zeros(meter)
    for d in downbeats:
        i = int(np.argmin(np.abs(t - d)))
        if abs(t[i] - d) <= tolerance_s:
            votes[i % meter] += 1
    phase = int(np.argmax(votes))
    return tuple(Beat(round(float(x), 4), int((i - phase) % meter + 1))
                 for i, x in enumerate(t))


def resolve_beats(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None, bpm: float,
                  cfg: ConsensusConfig) -> tuple[tuple[Beat, ...], int, float, str]:
    """``(beats, meter, meter probability, note)`` on the level of the consensus tempo; the
    meter probability is madmom's (uncalibrated: :func:`combine` calibrates it)."""
    if madmom is not None and madmom.beats:
        if bpm <= 0 or rel_diff(grid_tempo(madmom.beats), bpm) <= cfg.tempo_tolerance:
            return madmom.beats, madmom.meter, madmom.meter_confidence, "beats: madmom"
    if madmom is not None and madmom.beats and bpm > 0:
        level = grid_tempo(madmom.beats)
        for r in (2, 3):
            if rel_diff(level, r * bpm) <= cfg.tempo_tolerance:
                # madmom tracked r times faster: every r-th of its beats, in the phase of its
                # downbeats, is the consensus grid, numbered in whole bars of the meter at
                # this level, the bar phase put on the most of madmom's downbeats
                ones = [i for i, b in enumerate(madmom.beats) if b.beat_number == 1]
                phase = ones[0] % r if ones else 0
                times = [b.time_s for i, b in enumerate(madmom.beats) if i % r == phase]
                meter = meter_at_level(madmom.meter, 1.0 / r) if madmom.meter else 0
                beats = _number_beats(times, madmom.downbeats_s, meter) if meter else \
                    tuple(Beat(round(t, 4), 0) for t in times)
                return (beats, meter, madmom.meter_confidence if meter else 0.0,
                        f"beats: madmom's, one in {r}")
    if essentia is not None and essentia.beats and bpm > 0 and \
            rel_diff(grid_tempo(essentia.beats), bpm) <= cfg.tempo_tolerance:
        downbeats = madmom.downbeats_s if madmom is not None else ()
        meter = 0
        if madmom is not None and madmom.meter:
            level = grid_tempo(madmom.beats)
            meter = meter_at_level(madmom.meter, bpm / level) if level > 0 else madmom.meter
        times = [b.time_s for b in essentia.beats]
        conf = madmom.meter_confidence if madmom is not None and meter else 0.0
        beats = _number_beats(times, downbeats, meter)
        return beats, meter, conf, "beats: essentia numbered from madmom downbeats"
    if madmom is not None:
        return madmom.beats, madmom.meter, madmom.meter_confidence, "beats: madmom (fallback)"
    if essentia is not None:
        return essentia.beats, 0, 0.0, "beats: essentia"
    return (), 0, 0.0, "beats: none"


# --------------------------------------------------------------------------- key

def resolve_key(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                chords: tuple[ChordSegment, ...], params: FusionParams) -> tuple[str, float, str]:
    """``(label, calibrated confidence, note)`` from the fitted 24-key fusion."""
    return fuse_key(madmom, essentia, chords, params)


# --------------------------------------------------------------------------- chords

def _frame_label_at(frames: tuple[str, ...], fps: float, t: float) -> str:
    i = int(t * fps)
    return frames[min(max(i, 0), len(frames) - 1)] if frames else NO_CHORD


def chord_agreement(chords: tuple[ChordSegment, ...], frames: tuple[str, ...], fps: float) -> float:
    """Share of non-N frames of another backend that agree with ``chords``."""
    if not frames or fps <= 0 or not chords:
        return 0.0
    agree = n = 0
    for i, lab in enumerate(frames):
        if lab == NO_CHORD:
            continue
        t = (i + 0.5) / fps
        seg = next((c for c in chords if c.start_s <= t < c.end_s), None)
        if seg is None:
            continue
        n += 1
        agree += chord_index(seg.label) == chord_index(lab)
    return agree / n if n else 0.0


def merge_repeats(chords: tuple[ChordSegment, ...] | list[ChordSegment]) -> tuple[ChordSegment, ...]:
    """Join neighbouring segments with the same label (``F:maj`` 0–1 s + ``F:maj`` 1–1.9 s
    → ``F:maj`` 0–1.9 s), as filling a gap with its neighbour's chord can leave them."""
    out: list[ChordSegment] = []
    for c in chords:
        if out and out[-1].label == c.label and abs(out[-1].end_s - c.start_s) < 1e-6:
            out[-1] = ChordSegment(out[-1].start_s, c.end_s, c.label)
        else:
            out.append(c)
    return tuple(out)


def resolve_chords(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                   cfg: ConsensusConfig, params: FusionParams
                   ) -> tuple[tuple[ChordSegment, ...], float, str]:
    """``(chords, calibrated confidence, note)``: madmom's segments, N over loud music filled
    from a confident essentia."""
    if madmom is None:
        if essentia is None:
            return (), 0.0, "chords: none"
        return merge_repeats(essentia.chords), essentia.chords_confidence, "chords: essentia"
    chords = list(madmom.chords)
    note = "chords: madmom"
    if essentia is not None and essentia.chord_frames and \
            essentia.chords_confidence >= cfg.chord_fill_strength:
        filled = []
        for c in chords:
            if c.label == NO_CHORD and c.end_s - c.start_s >= 1.0:
                labels = [_frame_label_at(essentia.chord_frames, essentia.chord_fps, t)
                          for t in np.arange(c.start_s, c.end_s, 1.0 / essentia.chord_fps)]
                labels = [lab for lab in labels if lab != NO_CHORD]
                if len(labels) >= 0.8 * (c.end_s - c.start_s) * essentia.chord_fps:
                    vals, counts = np.unique(labels, return_counts=True)
                    filled.append(ChordSegment(c.start_s, c.end_s, str(vals[np.argmax(counts)])))
                    note = "chords: madmom, N filled from essentia"
                    continue
            filled.append(c)
        chords = list(merge_repeats(filled))
    agree = chord_agreement(tuple(chords), essentia.chord_frames, essentia.chord_fps) \
        if essentia is not None else 0.0
    conf = calibrated(chord_conf_features(madmom.chords_confidence, agree), params.chord_conf)
    return tuple(chords), conf, note + f" (CRF {madmom.chords_confidence:.2f}, agreement " \
        f"{agree:.2f}, calibrated {conf:.2f})"


# --------------------------------------------------------------------------- results

def silent_analysis(backend: str, duration_s: float, rms_dbfs: float) -> ClipAnalysis:
    """The answer for a silent window: no beats, tempo 0, no key, one N chord."""
    return ClipAnalysis(
        backend=backend, duration_s=duration_s, tempo_bpm=0.0, tempo_confidence=0.0, beats=(),
        downbeats_s=(), meter=0, meter_confidence=0.0, key="", key_confidence=0.0,
        chords=(ChordSegment(0.0, round(duration_s, 3), NO_CHORD),), chords_confidence=1.0,
        is_silent=True, rms_dbfs=rms_dbfs, notes=(f"silent: {rms_dbfs:.1f} dBFS",))


def from_single(result: BackendAnalysis, rms_dbfs: float) -> ClipAnalysis:
    """One backend's answer as the clip's annotation (``--backend madmom|essentia``)."""
    beats = result.beats
    return ClipAnalysis(
        backend=result.backend, duration_s=result.duration_s, tempo_bpm=result.tempo.bpm,
        tempo_confidence=result.tempo.confidence, beats=beats,
        downbeats_s=downbeat_times(beats), meter=result.meter,
        meter_confidence=result.meter_confidence, key=result.key.label,
        key_confidence=result.key.confidence, chords=result.chords,
        chords_confidence=result.chords_confidence, rms_dbfs=rms_dbfs, backends=(result,))


def combine(madmom: BackendAnalysis, essentia: BackendAnalysis, rms_dbfs: float = 0.0,
            cfg: ConsensusConfig | None = None, params: FusionParams | None = None
            ) -> ClipAnalysis:
    """The consensus annotation of one window from both backends' answers. ``params``
    overrides the fitted fusion ``cfg`` names (cross-validation fits one per fold)."""
    cfg = cfg or ConsensusConfig()
    params = params or cfg.params()
    bpm, tempo_conf, tempo_note = resolve_tempo(madmom, essentia, params)
    beats, meter, meter_p, beats_note = resolve_beats(madmom, essentia, bpm, cfg)
    relevelled = beats is not madmom.beats      # essentia's beats, the meter translated
    meter_conf = (calibrated(meter_conf_features(meter_p, madmom.beats_confidence, relevelled,
                                                 tempo_conf), params.meter_conf)
                  if meter else 0.0)
    chords, chords_conf, chords_note = resolve_chords(madmom, essentia, cfg, params)
    key, key_conf, key_note = resolve_key(madmom, essentia, chords, params)
    return ClipAnalysis(
        backend="consensus", duration_s=madmom.duration_s, tempo_bpm=bpm,
        tempo_confidence=tempo_conf, beats=beats,
        downbeats_s=downbeat_times(beats), meter=meter,
        meter_confidence=meter_conf, key=key, key_confidence=key_conf, chords=chords,
        chords_confidence=chords_conf, rms_dbfs=rms_dbfs, backends=(madmom, essentia),
        notes=(tempo_note, beats_note, key_note, chords_note))
