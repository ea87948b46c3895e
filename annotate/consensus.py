"""Consensus of the madmom and essentia answers: one annotation per clip, a confidence per field.

Pure functions over :class:`annotate.types.BackendAnalysis`; no models, no I/O. The rules:

* **Tempo** (:func:`resolve_tempo`): every tempo the backends report is evidence: madmom's
  beat grid (the downbeat DBN's median inter-beat interval, which is tracked together with
  the meter), madmom's tempo-histogram peaks, essentia's tempo and its beat grid. Candidates
  are the evidence values and their octaves (×2, ×½). A candidate scores the weights of the
  evidence within ``tempo_tolerance`` (4 %) of it, plus a broad log-normal prior around
  ``tempo_prior_bpm``, plus a bonus (scaled by madmom's beat confidence) when the candidate
  is the beat level of madmom's bar model. The answer is the weighted mean of the agreeing
  evidence; the confidence is the share of the evidence weight that agrees.
* **Beats, downbeats, meter** (:func:`resolve_beats`): madmom's DBN beats when their grid
  matches the consensus tempo; otherwise essentia's beats when theirs does, numbered in whole
  bars with the phase of madmom's downbeats and madmom's meter carried to that beat level
  (:func:`meter_at_level`); otherwise madmom's. essentia has no bar model.
* **Key** (:func:`resolve_key`): log-linear fusion over the 24 keys of madmom's CNN
  probabilities, essentia's answer weighted by its strength, a Krumhansl–Kessler profile
  correlation of essentia's mean HPCP, and the duration-weighted fit of the consensus chords
  to each key's tonic and diatonic triads. The confidence is the fused posterior of the winner.
* **Chords** (:func:`resolve_chords`): madmom's CRF segments (the better chord model); the
  confidence mixes the CRF's own posterior with the share of time essentia's frame-wise
  chords agree. Segments madmom calls ``N`` over loud music take essentia's label when
  essentia is confident (:attr:`ConsensusConfig.chord_fill_strength`).

The default weights were set on synthesized songs (seeds 0-3, 40 songs each, of
``benchmarks/annotate_accuracy.py``) and checked on a held-out seed and the demo corpus; see
docs/benchmarks.md (Annotate) for the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from annotate.labels import KEYS, NO_CHORD, chord_index, key_index
from annotate.types import BackendAnalysis, BeatTime, Chord, ClipAnalysis
from llark.config import doc
from llark.errors import ConfigError

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


@dataclass(frozen=True)
class ConsensusConfig:
    """Weights and thresholds of the consensus rules (see the module docstring)."""

    tempo_tolerance: float = doc("relative tolerance for two tempi to agree", default=0.04)
    tempo_min_bpm: float = doc("slowest tempo the consensus may answer", default=40.0)
    tempo_max_bpm: float = doc("fastest tempo the consensus may answer", default=240.0)
    tempo_prior_bpm: float = doc("centre of the tempo prior", default=110.0)
    tempo_prior_octaves: float = doc("width (std, in octaves) of the tempo prior", default=0.6)
    tempo_prior_weight: float = doc("weight of the tempo prior", default=0.3)
    w_madmom_grid: float = doc("weight of madmom's DBN beat grid tempo", default=1.0)
    w_madmom_hist: float = doc("weight of madmom's tempo histogram peaks (× strength)", default=1.0)
    w_essentia: float = doc("weight of essentia's tempo (× (0.5 + confidence/2))", default=1.0)
    w_essentia_grid: float = doc("weight of essentia's beat grid tempo", default=0.5)
    w_meter: float = doc("bonus for the beat level of madmom's bar model", default=0.3)
    confidence_floor: float = doc(
        "a tempo/beat-grid evidence weighs weight × (floor + (1 - floor) × its confidence)",
        default=0.5)
    key_w_madmom: float = doc("weight of madmom's log key probabilities", default=0.2)
    key_w_essentia: float = doc("weight of essentia's key (× strength)", default=1.0)
    key_w_profile: float = doc("weight of the HPCP profile correlation", default=2.0)
    key_w_chords: float = doc("weight of the chords' fit to the key", default=16.0)
    chord_fill_strength: float = doc(
        "essentia chord strength above which it replaces madmom's N over loud audio",
        default=0.6)

    def __post_init__(self) -> None:
        if not 0.0 < self.tempo_tolerance < 0.5:
            raise ConfigError(f"tempo_tolerance must be in (0, 0.5), got {self.tempo_tolerance}")
        if not 0.0 < self.tempo_min_bpm < self.tempo_max_bpm:
            raise ConfigError(f"need 0 < tempo_min_bpm < tempo_max_bpm, got "
                              f"{self.tempo_min_bpm}, {self.tempo_max_bpm}")
        for name in ("tempo_prior_weight", "w_madmom_grid", "w_madmom_hist", "w_essentia",
                     "w_essentia_grid", "w_meter", "key_w_madmom", "key_w_essentia",
                     "key_w_profile", "key_w_chords"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.confidence_floor <= 1.0:
            raise ConfigError(f"confidence_floor must be within [0, 1], got {self.confidence_floor}")
        if self.tempo_prior_octaves <= 0:
            raise ConfigError("tempo_prior_octaves must be > 0")


# --------------------------------------------------------------------------- helpers

def rel_diff(a: float, b: float) -> float:
    """|a - b| / b (inf when b is 0)."""
    return abs(a - b) / b if b > 0 else math.inf


def grid_tempo(beats: tuple[BeatTime, ...]) -> float:
    """60 / median inter-beat interval; 0.0 with fewer than 3 beats."""
    if len(beats) < 3:
        return 0.0
    ibi = np.diff([b.time_s for b in beats])
    ibi = ibi[ibi > 0]
    return float(60.0 / np.median(ibi)) if ibi.size else 0.0


def _octaves(bpm: float) -> tuple[float, ...]:
    return (bpm / 2.0, bpm, bpm * 2.0)


def _scaled(confidence: float, cfg: ConsensusConfig) -> float:
    return cfg.confidence_floor + (1.0 - cfg.confidence_floor) * float(np.clip(confidence, 0, 1))


@dataclass(frozen=True)
class TempoEvidence:
    bpm: float
    weight: float
    source: str


def tempo_evidence(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                   cfg: ConsensusConfig) -> list[TempoEvidence]:
    ev: list[TempoEvidence] = []
    if madmom is not None:
        g = grid_tempo(madmom.beats)
        if g > 0:
            ev.append(TempoEvidence(g, cfg.w_madmom_grid * _scaled(madmom.beats_confidence, cfg),
                                    "madmom_grid"))
        for bpm, strength in madmom.tempo.candidates[:3]:
            if bpm > 0:
                ev.append(TempoEvidence(bpm, cfg.w_madmom_hist * strength, "madmom_hist"))
    if essentia is not None and essentia.tempo.bpm > 0:
        conf = _scaled(essentia.tempo.confidence, cfg)
        ev.append(TempoEvidence(essentia.tempo.bpm, cfg.w_essentia * conf, "essentia"))
        g = grid_tempo(essentia.beats)
        if g > 0:
            ev.append(TempoEvidence(g, cfg.w_essentia_grid * conf, "essentia_grid"))
    return [e for e in ev if e.weight > 0]


def resolve_tempo(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                  cfg: ConsensusConfig) -> tuple[float, float, str]:
    """``(bpm, confidence, note)``; ``(0, 0, ...)`` when no backend found a tempo."""
    ev = tempo_evidence(madmom, essentia, cfg)
    if not ev:
        return 0.0, 0.0, "tempo: no evidence"
    meter_level = grid_tempo(madmom.beats) if madmom is not None and madmom.meter else 0.0
    meter_trust = _scaled(madmom.beats_confidence, cfg) if madmom is not None else 0.0
    cands = sorted({c for e in ev for c in _octaves(e.bpm)
                    if cfg.tempo_min_bpm <= c <= cfg.tempo_max_bpm})
    if not cands:
        return 0.0, 0.0, "tempo: all evidence out of range"
    total = sum(e.weight for e in ev)
    best, best_score = cands[0], -math.inf
    for c in cands:
        score = sum(e.weight for e in ev if rel_diff(c, e.bpm) <= cfg.tempo_tolerance)
        z = math.log2(c / cfg.tempo_prior_bpm) / cfg.tempo_prior_octaves
        score += cfg.tempo_prior_weight * math.exp(-0.5 * z * z) * total
        if meter_level and rel_diff(c, meter_level) <= cfg.tempo_tolerance:
            score += cfg.w_meter * meter_trust * total
        if score > best_score:
            best, best_score = c, score
    agree = [e for e in ev if rel_diff(best, e.bpm) <= cfg.tempo_tolerance]
    if agree:
        bpm = sum(e.bpm * e.weight for e in agree) / sum(e.weight for e in agree)
    else:
        bpm = best
    conf = sum(e.weight for e in agree) / total
    note = "tempo: " + ", ".join(f"{e.source}={e.bpm:.1f}" for e in ev) + f" -> {bpm:.1f}"
    return float(bpm), float(min(conf, 1.0)), note


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
                  tolerance_s: float = 0.07) -> tuple[BeatTime, ...]:
    """Number ``times`` cyclically 1..``meter``, with the bar phase that puts the most of
    another tracker's ``downbeats`` on a beat 1 (ties: the earliest phase). A whole-bar cycle
    stays consistent even when that tracker ran at double speed and marked half-bars.
    All numbers are 0 without a meter or downbeats."""
    t = np.asarray(times, dtype=np.float64)
    if not t.size:
        return ()
    if meter <= 0 or not downbeats:
        return tuple(BeatTime(round(float(x), 4), 0) for x in t)
    votes = np.zeros(meter)
    for d in downbeats:
        i = int(np.argmin(np.abs(t - d)))
        if abs(t[i] - d) <= tolerance_s:
            votes[i % meter] += 1
    phase = int(np.argmax(votes))
    return tuple(BeatTime(round(float(x), 4), int((i - phase) % meter + 1))
                 for i, x in enumerate(t))


def resolve_beats(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None, bpm: float,
                  cfg: ConsensusConfig) -> tuple[tuple[BeatTime, ...], int, float, str]:
    """``(beats, meter, meter_confidence, note)`` on the level of the consensus tempo."""
    if madmom is not None and madmom.beats:
        if bpm <= 0 or rel_diff(grid_tempo(madmom.beats), bpm) <= cfg.tempo_tolerance:
            return madmom.beats, madmom.meter, madmom.meter_confidence, "beats: madmom"
    if essentia is not None and essentia.beats and bpm > 0 and \
            rel_diff(grid_tempo(essentia.beats), bpm) <= cfg.tempo_tolerance:
        downbeats = madmom.downbeats_s if madmom is not None else ()
        meter = 0
        if madmom is not None and madmom.meter:
            level = grid_tempo(madmom.beats)
            meter = meter_at_level(madmom.meter, bpm / level) if level > 0 else madmom.meter
        beats = _number_beats([b.time_s for b in essentia.beats], downbeats, meter)
        conf = madmom.meter_confidence * 0.5 if madmom is not None and meter else 0.0
        return beats, meter, conf, "beats: essentia numbered from madmom downbeats"
    if madmom is not None:
        return madmom.beats, madmom.meter, madmom.meter_confidence, "beats: madmom (fallback)"
    if essentia is not None:
        return essentia.beats, 0, 0.0, "beats: essentia"
    return (), 0, 0.0, "beats: none"


# --------------------------------------------------------------------------- key

def profile_scores(chroma: tuple[float, ...]) -> np.ndarray:
    """Pearson correlation of a C-based 12-bin chroma with the 24 rotated KK profiles
    (``(24,)`` in :data:`KEYS` order); zeros when the chroma is flat or missing."""
    out = np.zeros(24)
    if len(chroma) != 12:
        return out
    c = np.asarray(chroma, dtype=np.float64)
    if np.std(c) < 1e-9:
        return out
    for mode, prof in ((0, KK_MAJOR), (1, KK_MINOR)):
        p = np.asarray(prof)
        for tonic in range(12):
            out[mode * 12 + tonic] = np.corrcoef(c, np.roll(p, tonic))[0, 1]
    return out


_MAJOR_TRIADS = ((0, "maj", 1.0), (5, "maj", 0.6), (7, "maj", 0.6), (9, "min", 0.4),
                 (2, "min", 0.3), (4, "min", 0.3))
_MINOR_TRIADS = ((0, "min", 1.0), (5, "min", 0.6), (7, "min", 0.4), (7, "maj", 0.5),
                 (3, "maj", 0.4), (8, "maj", 0.4), (10, "maj", 0.4))


def chord_key_scores(chords: tuple[Chord, ...]) -> np.ndarray:
    """How well a chord sequence fits each key ``(24,)``: duration-weighted triad weights
    (tonic 1.0, subdominant/dominant ~0.5, other diatonic triads less), mean-centred."""
    total = sum(c.end_s - c.start_s for c in chords if c.label != NO_CHORD)
    out = np.zeros(24)
    if total <= 0:
        return out
    for k in range(24):
        tonic, mode = k % 12, ("major" if k < 12 else "minor")
        table = _MAJOR_TRIADS if mode == "major" else _MINOR_TRIADS
        weights = {((tonic + off) % 12) + (12 if q == "min" else 0): w for off, q, w in table}
        out[k] = sum(weights.get(chord_index(c.label), 0.0) * (c.end_s - c.start_s)
                     for c in chords if c.label != NO_CHORD) / total
    return out - out.mean()


def resolve_key(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                chords: tuple[Chord, ...], cfg: ConsensusConfig) -> tuple[str, float, str]:
    """``(label, confidence, note)`` from the fused 24-key evidence."""
    logit = np.zeros(24)
    parts = []
    if madmom is not None and len(madmom.key.probabilities) == 24:
        p = np.clip(np.asarray(madmom.key.probabilities), 1e-6, 1.0)
        logit += cfg.key_w_madmom * np.log(p)
        parts.append(f"madmom={madmom.key.label}({madmom.key.confidence:.2f})")
    if essentia is not None and essentia.key.label:
        logit[key_index(essentia.key.label)] += cfg.key_w_essentia * essentia.key.strength
        parts.append(f"essentia={essentia.key.label}({essentia.key.strength:.2f})")
        prof = profile_scores(essentia.chroma)
        logit += cfg.key_w_profile * prof
    if chords:
        logit += cfg.key_w_chords * chord_key_scores(chords)
    if not parts:
        return "", 0.0, "key: no evidence"
    post = np.exp(logit - logit.max())
    post /= post.sum()
    best = int(np.argmax(post))
    return KEYS[best], float(post[best]), "key: " + ", ".join(parts) + f" -> {KEYS[best]}"


# --------------------------------------------------------------------------- chords

def _frame_label_at(frames: tuple[str, ...], fps: float, t: float) -> str:
    i = int(t * fps)
    return frames[min(max(i, 0), len(frames) - 1)] if frames else NO_CHORD


def chord_agreement(chords: tuple[Chord, ...], frames: tuple[str, ...], fps: float) -> float:
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


def merge_repeats(chords: tuple[Chord, ...] | list[Chord]) -> tuple[Chord, ...]:
    """Join neighbouring segments with the same label (``F:maj`` 0–1 s + ``F:maj`` 1–1.9 s
    → ``F:maj`` 0–1.9 s), as filling a gap with its neighbour's chord can leave them."""
    out: list[Chord] = []
    for c in chords:
        if out and out[-1].label == c.label and abs(out[-1].end_s - c.start_s) < 1e-6:
            out[-1] = Chord(out[-1].start_s, c.end_s, c.label)
        else:
            out.append(c)
    return tuple(out)


def resolve_chords(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                   cfg: ConsensusConfig) -> tuple[tuple[Chord, ...], float, str]:
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
                    filled.append(Chord(c.start_s, c.end_s, str(vals[np.argmax(counts)])))
                    note = "chords: madmom, N filled from essentia"
                    continue
            filled.append(c)
        chords = list(merge_repeats(filled))
    agree = chord_agreement(tuple(chords), essentia.chord_frames, essentia.chord_fps) \
        if essentia is not None else 0.0
    conf = 0.5 * madmom.chords_confidence + 0.5 * agree if essentia is not None \
        else madmom.chords_confidence
    return tuple(chords), float(conf), note + f" (agreement {agree:.2f})"


# --------------------------------------------------------------------------- results

def silent_analysis(backend: str, duration_s: float, rms_dbfs: float) -> ClipAnalysis:
    """The answer for a silent window: no beats, tempo 0, no key, one N chord."""
    return ClipAnalysis(
        backend=backend, duration_s=duration_s, tempo_bpm=0.0, tempo_confidence=0.0, beats=(),
        downbeats_s=(), meter=0, meter_confidence=0.0, key="", key_confidence=0.0,
        chords=(Chord(0.0, round(duration_s, 3), NO_CHORD),), chords_confidence=1.0,
        is_silent=True, rms_dbfs=rms_dbfs, notes=(f"silent: {rms_dbfs:.1f} dBFS",))


def from_single(result: BackendAnalysis, rms_dbfs: float) -> ClipAnalysis:
    """One backend's answer as the clip's annotation (``--backend madmom|essentia``)."""
    beats = result.beats
    return ClipAnalysis(
        backend=result.backend, duration_s=result.duration_s, tempo_bpm=result.tempo.bpm,
        tempo_confidence=result.tempo.confidence, beats=beats,
        downbeats_s=tuple(b.time_s for b in beats if b.beat_number == 1), meter=result.meter,
        meter_confidence=result.meter_confidence, key=result.key.label,
        key_confidence=result.key.confidence, chords=result.chords,
        chords_confidence=result.chords_confidence, rms_dbfs=rms_dbfs, backends=(result,))


def combine(madmom: BackendAnalysis, essentia: BackendAnalysis, rms_dbfs: float = 0.0,
            cfg: ConsensusConfig | None = None) -> ClipAnalysis:
    """The consensus annotation of one window from both backends' answers."""
    cfg = cfg or ConsensusConfig()
    bpm, tempo_conf, tempo_note = resolve_tempo(madmom, essentia, cfg)
    beats, meter, meter_conf, beats_note = resolve_beats(madmom, essentia, bpm, cfg)
    chords, chords_conf, chords_note = resolve_chords(madmom, essentia, cfg)
    key, key_conf, key_note = resolve_key(madmom, essentia, chords, cfg)
    return ClipAnalysis(
        backend="consensus", duration_s=madmom.duration_s, tempo_bpm=bpm,
        tempo_confidence=tempo_conf, beats=beats,
        downbeats_s=tuple(b.time_s for b in beats if b.beat_number == 1), meter=meter,
        meter_confidence=meter_conf, key=key, key_confidence=key_conf, chords=chords,
        chords_confidence=chords_conf, rms_dbfs=rms_dbfs, backends=(madmom, essentia),
        notes=(tempo_note, beats_note, key_note, chords_note))
