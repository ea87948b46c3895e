"""The fitted fusion: key and tempo from both backends' evidence, confidences that are
probabilities. Pure numpy; the parameters are a small JSON file written by
``python -m benchmarks.fit_fusion`` from the real-music development set
(``benchmarks/devset.py``) and committed as :data:`DEFAULT_PARAMS_PATH`.

**Key.** Every one of the 24 keys gets a feature vector (:func:`key_features`,
:data:`KEY_FEATURES`): madmom's CNN log-probability, one indicator per essentia key profile
(``edma``, ``bgate``, ``temperley``, ``krumhansl``, ``shaath``) scaled by that profile's
strength, the Krumhansl–Kessler correlation of essentia's mean HPCP, and the fit of madmom's
chords to the key's diatonic triads. The posterior is a conditional logit,
``P(k) ∝ exp(w · f(k))``, with ``w`` fitted by maximum likelihood (cross-validated over
pieces). The reported confidence is a second, logistic calibration
(:func:`calibrated`) of the winner's posterior together with how tonal and musical the clip
sounds (:func:`key_conf_features`: how many profiles agree, madmom's probability, the mean
profile strength, the flatness of the HPCP, the share of time with a chord, the beat
activation); it is fitted to
"the key is exactly right" on music and to "wrong" on non-music, so noise and speech get a
low key confidence.

**Tempo.** Candidates are every tempo either tracker reports (madmom's DBN beat grid and
tempo-histogram peaks, essentia's tempo and beat grid) and their ×2 / ×½ octaves
(:func:`tempo_candidates`). Each candidate's features (:data:`TEMPO_FEATURES`) are the
evidence that supports it (within 4 %), whether it is madmom's own answer (the histogram's top
peak), in 3/4 its octave relation to madmom's bar-model beat level, and how many of
essentia's note onsets fall on one of its beats (``log2`` of onsets per beat and its square,
:func:`onsets_per_beat`: a metrical level where a beat carries one or two notes is a beat;
one where it carries a quarter of a note, or eight, is an octave off), how often an onset
is followed by another one beat, half a beat and two beats later (:func:`onset_periodicity`),
and whether it is neither madmom's answer nor an octave of it (a pick at 2/3 or 3/2 of
madmom's tempo is wrong at every metrical level). None of them is an absolute tempo prior:
every feature is relative to the candidate or to the trackers. A conditional logit over the
candidates picks the octave; the answer is the weighted mean of the agreeing evidence, and
its confidence is a logistic calibration of the winner's posterior.

**Meter and chords.** The meter is madmom's bar model; its confidence is a logistic
calibration of madmom's meter probability and beat activation, whether the consensus moved
the beats off madmom's level, and the tempo confidence (:func:`meter_conf_features`). The
chord confidence is a logistic calibration of the CRF posterior and the share of essentia's
frames that agree, fitted to the clip's major/minor chord overlap.

Calibration helpers (:func:`fit_logistic`, :func:`ece`, :func:`reliability`) live here too so
the fit script and the tests share one implementation.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from annotate.labels import KEYS, NO_CHORD, chord_index
from annotate.types import BackendAnalysis, Beat, ChordSegment
from llark.errors import ConfigError

DEFAULT_PARAMS_PATH = Path(__file__).with_name("fusion_params.json")
PARAMS_VERSION = 2   # 2: the octave guard (octave_move, octave_threshold)
#: Profiles read from essentia (same order as the features).
KEY_PROFILE_FEATURES = ("edma", "bgate", "temperley", "krumhansl", "shaath")
KEY_FEATURES = ("madmom_logp", "essentia_key") + tuple(
    f"essentia_{p}" for p in KEY_PROFILE_FEATURES) + ("hpcp_kk", "chord_fit")
KEY_CONF_FEATURES = ("logit_posterior", "profiles_agree", "madmom_p", "madmom_log_max_p",
                     "mean_strength", "chroma_mean", "chord_coverage", "beat_strength", "bias")
TEMPO_FEATURES = (
    "madmom_grid", "madmom_hist", "essentia", "essentia_grid", "madmom_top",
    "is_grid_level_m3", "half_of_grid_m3", "double_of_grid_m3", "no_direct_support",
    "onsets_per_beat", "onsets_per_beat_sq", "onset_period", "onset_period_half",
    "onset_period_double", "off_madmom_octaves")
TEMPO_CONF_FEATURES = ("logit_posterior", "agree_share", "bias")
#: What the octave guard reads when the tempo logit's pick is not madmom's tempo.
OCTAVE_MOVE_FEATURES = ("log_posterior_ratio", "pick_posterior", "madmom_top_strength",
                        "on_madmom_octave", "bias")
METER_CONF_FEATURES = ("logit_meter_p", "madmom_beats_conf", "relevelled", "logit_tempo_conf",
                       "bias")
CHORD_CONF_FEATURES = ("logit_crf", "essentia_agreement", "bias")
TEMPO_TOLERANCE = 0.04
TEMPO_RANGE_BPM = (40.0, 240.0)

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
_MAJOR_TRIADS = ((0, "maj", 1.0), (5, "maj", 0.6), (7, "maj", 0.6), (9, "min", 0.4),
                 (2, "min", 0.3), (4, "min", 0.3))
_MINOR_TRIADS = ((0, "min", 1.0), (5, "min", 0.6), (7, "min", 0.4), (7, "maj", 0.5),
                 (3, "maj", 0.4), (8, "maj", 0.4), (10, "maj", 0.4))


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class FusionParams:
    """Fitted weights (one per feature name of the same position)."""

    key_weights: tuple[float, ...]        # KEY_FEATURES
    key_conf: tuple[float, ...]           # KEY_CONF_FEATURES
    tempo_weights: tuple[float, ...]      # TEMPO_FEATURES
    tempo_conf: tuple[float, ...]         # TEMPO_CONF_FEATURES
    meter_conf: tuple[float, ...]         # METER_CONF_FEATURES
    chord_conf: tuple[float, ...]         # CHORD_CONF_FEATURES
    #: OCTAVE_MOVE_FEATURES: P("leaving madmom's tempo for the logit's pick is right")
    octave_move: tuple[float, ...] = (0.0,) * len(OCTAVE_MOVE_FEATURES)
    #: the logit's pick replaces madmom's tempo only when that probability reaches this
    #: (0: always, the unguarded logit; above 1: never)
    octave_threshold: float = 0.0
    meta: tuple[tuple[str, str], ...] = ()   # provenance (what it was fitted on, when)

    def __post_init__(self) -> None:
        for name, names in (("key_weights", KEY_FEATURES), ("key_conf", KEY_CONF_FEATURES),
                            ("tempo_weights", TEMPO_FEATURES),
                            ("tempo_conf", TEMPO_CONF_FEATURES),
                            ("meter_conf", METER_CONF_FEATURES),
                            ("chord_conf", CHORD_CONF_FEATURES),
                            ("octave_move", OCTAVE_MOVE_FEATURES)):
            got = getattr(self, name)
            if len(got) != len(names):
                raise ConfigError(f"fusion parameters: {name} needs {len(names)} values "
                                  f"({', '.join(names)}), got {len(got)}")
            if not all(math.isfinite(v) for v in got):
                raise ConfigError(f"fusion parameters: {name} holds a non-finite value")
        if not math.isfinite(self.octave_threshold):
            raise ConfigError("fusion parameters: octave_threshold is not finite")

    @classmethod
    def neutral(cls) -> "FusionParams":
        """All weights zero (every key equally likely, every confidence 0.5): the starting
        point of a fit, never a default for users."""
        return cls(key_weights=(0.0,) * len(KEY_FEATURES),
                   key_conf=(0.0,) * len(KEY_CONF_FEATURES),
                   tempo_weights=(0.0,) * len(TEMPO_FEATURES),
                   tempo_conf=(0.0,) * len(TEMPO_CONF_FEATURES),
                   meter_conf=(0.0,) * len(METER_CONF_FEATURES),
                   chord_conf=(0.0,) * len(CHORD_CONF_FEATURES))

    def to_dict(self) -> dict[str, Any]:
        named = {
            "key_weights": dict(zip(KEY_FEATURES, self.key_weights)),
            "key_conf": dict(zip(KEY_CONF_FEATURES, self.key_conf)),
            "tempo_weights": dict(zip(TEMPO_FEATURES, self.tempo_weights)),
            "tempo_conf": dict(zip(TEMPO_CONF_FEATURES, self.tempo_conf)),
            "meter_conf": dict(zip(METER_CONF_FEATURES, self.meter_conf)),
            "chord_conf": dict(zip(CHORD_CONF_FEATURES, self.chord_conf)),
            "octave_move": dict(zip(OCTAVE_MOVE_FEATURES, self.octave_move)),
        }
        return {"version": PARAMS_VERSION,
                **{k: {n: round(float(v), 6) for n, v in d.items()} for k, d in named.items()},
                "octave_threshold": round(float(self.octave_threshold), 6),
                "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FusionParams":
        if d.get("version") != PARAMS_VERSION:
            raise ConfigError(f"fusion parameters version {d.get('version')!r}, this code "
                              f"reads {PARAMS_VERSION}: refit with python -m benchmarks.fit_fusion")

        def vec(field: str, names: Sequence[str]) -> tuple[float, ...]:
            got = d.get(field)
            if not isinstance(got, dict) or set(got) != set(names):
                raise ConfigError(f"fusion parameters: {field} must name exactly "
                                  f"{', '.join(names)}; got {sorted(got or ())}")
            return tuple(float(got[n]) for n in names)

        threshold = d.get("octave_threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigError(f"fusion parameters: octave_threshold must be a number, got "
                              f"{threshold!r}")
        return cls(key_weights=vec("key_weights", KEY_FEATURES),
                   key_conf=vec("key_conf", KEY_CONF_FEATURES),
                   tempo_weights=vec("tempo_weights", TEMPO_FEATURES),
                   tempo_conf=vec("tempo_conf", TEMPO_CONF_FEATURES),
                   meter_conf=vec("meter_conf", METER_CONF_FEATURES),
                   chord_conf=vec("chord_conf", CHORD_CONF_FEATURES),
                   octave_move=vec("octave_move", OCTAVE_MOVE_FEATURES),
                   octave_threshold=float(threshold),
                   meta=tuple(sorted((str(k), str(v)) for k, v in d.get("meta", {}).items())))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")


@functools.lru_cache(maxsize=8)
def load_params(path: str = str(DEFAULT_PARAMS_PATH)) -> FusionParams:
    """The fitted parameters at ``path`` (read once per process)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"fusion parameters {p} are missing: fit them with "
                          "python -m benchmarks.fit_fusion")
    return FusionParams.from_dict(json.loads(p.read_text()))


# --------------------------------------------------------------------------- calibration math

def sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def logit(p: np.ndarray | float, eps: float = 1e-4) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(q / (1.0 - q))


def calibrated(features: Sequence[float], weights: Sequence[float]) -> float:
    """A calibrated probability: ``sigmoid(weights · features)``."""
    return float(sigmoid(float(np.dot(features, weights))))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2,
                 sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Weights ``w`` of ``P(y=1|x) = sigmoid(x · w)`` by penalised maximum likelihood.

    ``x`` is ``(n, d)`` (include a constant column for a bias); ``y`` in [0, 1] may be soft
    (a fraction correct). The L2 penalty ``l2 · |w|²`` is per sample (scale-free in n) and
    acts on the features scaled to unit (weighted) standard deviation, so it treats a feature
    that varies over 0.4-0.8 like one that varies over -2..4; the weights returned are for the
    raw features. A constant column is the bias: not scaled, not penalised apart from the
    shift it absorbs."""
    x = np.asarray(x, dtype=np.float64)
    sw = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    p = sw / sw.sum()
    mean = p @ x                                                       # (d,)
    sd = np.sqrt(p @ (x - mean) ** 2)                                  # (d,)
    const = sd < 1e-12
    ones = np.flatnonzero(const & (np.abs(mean) > 1e-12))   # constant, non-zero: a bias
    scale = np.where(const, 1.0, sd)                                   # (d,)
    # centre only where a bias column can take the shift back
    shift = np.where(const | (ones.size == 0), 0.0, mean)              # (d,)
    z = (x - shift) / scale                                            # (n, d)
    w = _penalised_logistic(z, np.asarray(y, np.float64), l2, p)       # (d,) scaled space
    raw = w / scale
    raw[const] = 0.0
    if ones.size:
        b = int(ones[0])
        raw[b] = (float(np.sum(w[ones] * mean[ones]))
                  - float(np.sum(w[~const] * shift[~const] / scale[~const]))) / mean[b]
    return raw


def _penalised_logistic(x: np.ndarray, y: np.ndarray, l2: float, p: np.ndarray) -> np.ndarray:
    """The weighted (``p`` sums to 1), L2-penalised logistic fit behind :func:`fit_logistic`."""
    from scipy.optimize import minimize

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        # log(1 + e^z) - y z, stable
        nll = np.sum(p * (np.logaddexp(0.0, z) - y * z)) + l2 * np.dot(w, w)
        grad = x.T @ (p * (sigmoid(z) - y)) + 2.0 * l2 * w
        return float(nll), grad

    res = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    return np.asarray(res.x)


def fit_conditional_logit(features: list[np.ndarray], targets: list[np.ndarray],
                          l2: float = 1e-2) -> np.ndarray:
    """Weights ``w`` of ``P(option i) ∝ exp(f_i · w)`` over per-item option sets.

    ``features[j]`` is ``(options_j, d)``; ``targets[j]`` is a boolean mask of the options
    that are right (the likelihood is the total probability of the right ones)."""
    from scipy.optimize import minimize

    d = features[0].shape[1]
    n = len(features)
    width = max(f.shape[0] for f in features)
    x = np.zeros((n, width, d))                        # options padded to the widest set
    valid = np.zeros((n, width), bool)
    right = np.zeros((n, width), bool)
    for j, (f, t) in enumerate(zip(features, targets)):
        x[j, :len(f)] = f
        valid[j, :len(f)] = True
        right[j, :len(f)] = t

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.where(valid, x @ w, -np.inf)            # (n, width)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        pr = np.where(right, p, 0.0)
        pt = np.maximum(pr.sum(axis=1), 1e-300)        # (n,) probability of the right ones
        # d/dw -log sum_t p = E_p[f] - E_{p|t}[f]
        grad = np.einsum("nw,nwd->d", p, x) - np.einsum("nw,nwd->d", pr / pt[:, None], x)
        total = -float(np.sum(np.log(pt))) / n + l2 * float(np.dot(w, w))
        return total, grad / n + 2.0 * l2 * w

    res = minimize(loss, np.zeros(d), jac=True, method="L-BFGS-B")
    return np.asarray(res.x)


def reliability(confidence: Sequence[float], correct: Sequence[float], bins: int = 10
                ) -> list[tuple[float, float, int, float, float]]:
    """Rows ``(lo, hi, count, mean confidence, accuracy)`` over equal-width bins of [0, 1]
    (the last bin includes 1.0); empty bins are left out."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    idx = np.minimum((c * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append((b / bins, (b + 1) / bins, int(m.sum()), float(c[m].mean()),
                         float(y[m].mean())))
    return rows


def ece(confidence: Sequence[float], correct: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean |accuracy − confidence| over
    :func:`reliability`'s bins (0 for a perfectly calibrated predictor)."""
    rows = reliability(confidence, correct, bins)
    n = sum(r[2] for r in rows)
    return float(sum(r[2] * abs(r[4] - r[3]) for r in rows) / n) if n else 0.0


# --------------------------------------------------------------------------- key

def profile_scores(chroma: Sequence[float]) -> np.ndarray:
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


def chord_key_scores(chords: Sequence[ChordSegment]) -> np.ndarray:
    """How well a chord sequence fits each key ``(24,)``: duration-weighted triad weights
    (tonic 1.0, subdominant/dominant ~0.5, other diatonic triads less), mean-centred."""
    timed = [(chord_index(c.label), c.end_s - c.start_s) for c in chords if c.label != NO_CHORD]
    total = sum(d for _, d in timed)
    out = np.zeros(24)
    if total <= 0:
        return out
    for k in range(24):
        tonic = k % 12
        table = _MAJOR_TRIADS if k < 12 else _MINOR_TRIADS
        weights = {((tonic + off) % 12) + (12 if q == "min" else 0): w for off, q, w in table}
        out[k] = sum(weights.get(i, 0.0) * d for i, d in timed) / total
    return out - out.mean()


def key_features(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                 chords: Sequence[ChordSegment]) -> np.ndarray:
    """``(24, len(KEY_FEATURES))``: the evidence for each key (zeros where a backend is
    missing)."""
    from annotate.labels import key_index

    f = np.zeros((24, len(KEY_FEATURES)))
    if madmom is not None and len(madmom.key.probabilities) == 24:
        p = np.clip(np.asarray(madmom.key.probabilities, dtype=np.float64), 1e-4, 1.0)
        f[:, 0] = np.log(p) - np.log(p).mean()
    if essentia is not None:
        if essentia.key.label:
            f[key_index(essentia.key.label), 1] = float(np.clip(essentia.key.strength, 0, 1))
        found = {prof: (label, strength) for prof, label, strength in essentia.key_profiles}
        for j, prof in enumerate(KEY_PROFILE_FEATURES):
            if prof in found and found[prof][0]:
                f[key_index(found[prof][0]), 2 + j] = float(np.clip(found[prof][1], 0, 1))
        f[:, 2 + len(KEY_PROFILE_FEATURES)] = profile_scores(essentia.chroma)
    f[:, -1] = chord_key_scores(chords)
    return f


def key_posterior(features: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    z = features @ np.asarray(weights, dtype=np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


def key_conf_features(posterior: np.ndarray, best: int, features: np.ndarray,
                      madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                      chords: Sequence[ChordSegment]) -> np.ndarray:
    """The inputs of the key confidence (:data:`KEY_CONF_FEATURES`): the winner's posterior
    and how tonal and musical the clip is: the share of essentia's profiles that name the
    winner, madmom's probability of it and of its own favourite (log: low when the CNN
    hears no key), the profiles' mean strength, the mean of the
    max-normalised HPCP (flat for noise), the share of time with a chord, madmom's beat
    activation at its beats."""
    n_prof = len(KEY_PROFILE_FEATURES)
    agree = float(np.count_nonzero(features[best, 2:2 + n_prof] > 0)) / n_prof
    has_madmom = madmom is not None and len(madmom.key.probabilities) == 24
    madmom_p = float(madmom.key.probabilities[best]) if has_madmom else 0.0
    log_max_p = float(np.log(max(max(madmom.key.probabilities), 1e-4))) if has_madmom \
        else float(np.log(1.0 / 24))
    strengths = [s for _, _, s in essentia.key_profiles] if essentia is not None else []
    mean_strength = float(np.mean(strengths)) if strengths else 0.0
    chroma_mean = (float(np.mean(essentia.chroma)) if essentia is not None and essentia.chroma
                   else 1.0)
    total = sum(c.end_s - c.start_s for c in chords)
    voiced = sum(c.end_s - c.start_s for c in chords if c.label != NO_CHORD)
    coverage = voiced / total if total > 0 else 0.0
    beat_strength = float(madmom.beats_confidence) if madmom is not None else 0.0
    return np.array([float(logit(posterior[best])), agree, madmom_p, log_max_p, mean_strength,
                     chroma_mean, coverage, beat_strength, 1.0])


def fuse_key(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
             chords: Sequence[ChordSegment], params: FusionParams) -> tuple[str, float, str]:
    """``(key, calibrated confidence, note)``; ``("", 0, ...)`` without evidence."""
    f = key_features(madmom, essentia, chords)
    if not np.any(f):
        return "", 0.0, "key: no evidence"
    post = key_posterior(f, params.key_weights)
    best = int(np.argmax(post))
    conf = calibrated(key_conf_features(post, best, f, madmom, essentia, chords),
                      params.key_conf)
    parts = []
    if madmom is not None and madmom.key.label:
        parts.append(f"madmom={madmom.key.label}({madmom.key.confidence:.2f})")
    if essentia is not None:
        parts += [f"{p}={k}({s:.2f})" for p, k, s in essentia.key_profiles]
    return KEYS[best], conf, (f"key: {', '.join(parts)} -> {KEYS[best]} "
                              f"(posterior {post[best]:.2f}, calibrated {conf:.2f})")


# --------------------------------------------------------------------------- tempo

def rel_diff(a: float, b: float) -> float:
    """|a - b| / b (inf when b is 0)."""
    return abs(a - b) / b if b > 0 else math.inf


def grid_tempo(beats: Sequence[Beat]) -> float:
    """60 / median inter-beat interval; 0.0 with fewer than 3 beats."""
    if len(beats) < 3:
        return 0.0
    ibi = np.diff([b.time_s for b in beats])
    ibi = ibi[ibi > 0]
    return float(60.0 / np.median(ibi)) if ibi.size else 0.0


@dataclass(frozen=True)
class TempoEvidence:
    """A tempo one backend reports, its kind (one of the first four TEMPO_FEATURES) and
    its strength in [0, 1]."""

    bpm: float
    strength: float
    source: str


def tempo_evidence(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None
                   ) -> list[TempoEvidence]:
    ev: list[TempoEvidence] = []
    if madmom is not None:
        g = grid_tempo(madmom.beats)
        if g > 0:
            ev.append(TempoEvidence(g, float(np.clip(madmom.beats_confidence, 0, 1)),
                                    "madmom_grid"))
        for bpm, strength in madmom.tempo.candidates:
            if bpm > 0:
                ev.append(TempoEvidence(bpm, float(np.clip(strength, 0, 1)), "madmom_hist"))
    if essentia is not None and essentia.tempo.bpm > 0:
        conf = float(np.clip(essentia.tempo.confidence, 0, 1))
        ev.append(TempoEvidence(essentia.tempo.bpm, 0.5 + 0.5 * conf, "essentia"))
        g = grid_tempo(essentia.beats)
        if g > 0:
            ev.append(TempoEvidence(g, 0.5 + 0.5 * conf, "essentia_grid"))
    return ev


def onsets_per_beat(essentia: BackendAnalysis | None, bpm: float) -> float:
    """Note onsets per beat at ``bpm`` (essentia's onsets over the window); 0.0 without
    onsets."""
    if essentia is None or not essentia.onsets or essentia.duration_s <= 0 or bpm <= 0:
        return 0.0
    return len(essentia.onsets) / essentia.duration_s * 60.0 / bpm


def onset_periodicity(onsets: Sequence[float], period_s: float) -> float:
    """Share of ``onsets`` (sorted seconds) followed by another onset ``period_s`` later,
    within 6 % of the period; 0.0 with fewer than 4 onsets."""
    t = np.asarray(onsets, dtype=np.float64)               # (n,)
    if t.size < 4 or period_s <= 0:
        return 0.0
    target = t + period_s                                  # (n,)
    j = np.clip(np.searchsorted(t, target), 1, t.size - 1)
    nearest = np.minimum(np.abs(t[j] - target), np.abs(t[j - 1] - target))
    return float(np.mean(nearest <= 0.06 * period_s))


def tempo_candidates(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None
                     ) -> tuple[np.ndarray, np.ndarray, list[TempoEvidence]]:
    """``(bpm (c,), features (c, len(TEMPO_FEATURES)), evidence)``: every reported tempo
    and its octaves inside :data:`TEMPO_RANGE_BPM`, merged within the tolerance."""
    ev = tempo_evidence(madmom, essentia)
    lo, hi = TEMPO_RANGE_BPM
    raw = sorted({round(c, 3) for e in ev for c in (e.bpm / 2, e.bpm, e.bpm * 2) if lo <= c <= hi})
    cands: list[float] = []
    for c in raw:
        if not cands or rel_diff(c, cands[-1]) > TEMPO_TOLERANCE:
            cands.append(c)
    grid = grid_tempo(madmom.beats) if madmom is not None else 0.0
    meter = madmom.meter if madmom is not None else 0
    feats = np.zeros((len(cands), len(TEMPO_FEATURES)))
    sources = ("madmom_grid", "madmom_hist", "essentia", "essentia_grid")
    for i, c in enumerate(cands):
        for e in ev:
            if rel_diff(c, e.bpm) <= TEMPO_TOLERANCE:
                j = sources.index(e.source)
                feats[i, j] = max(feats[i, j], e.strength) if e.source != "madmom_hist" \
                    else feats[i, j] + e.strength
        top = madmom.tempo.bpm if madmom is not None else 0.0
        feats[i, 4] = float(top > 0 and rel_diff(c, top) <= TEMPO_TOLERANCE)
        if grid > 0 and meter == 3:
            # the octave relation to madmom's bar model in 3/4; the same features for 4/4 and
            # for the grid level in general lowered Acc1 under cross-validation (0.888 vs
            # 0.904 on part of the development set) and were dropped, as was the share of
            # essentia's per-method estimates (0.836 vs 0.841 on the whole set)
            feats[i, 5] = float(rel_diff(c, grid) <= TEMPO_TOLERANCE)
            feats[i, 6] = float(rel_diff(c, grid / 2) <= TEMPO_TOLERANCE)
            feats[i, 7] = float(rel_diff(c, grid * 2) <= TEMPO_TOLERANCE)
        feats[i, 8] = float(not feats[i, :4].any())
        opb = onsets_per_beat(essentia, c)
        if opb > 0:   # without onsets both stay 0 for every candidate: no say in the choice
            feats[i, 9] = math.log2(opb)
            feats[i, 10] = feats[i, 9] ** 2
        if essentia is not None:
            for j, beats in ((11, 1.0), (12, 0.5), (13, 2.0)):
                feats[i, j] = onset_periodicity(essentia.onsets, beats * 60.0 / c)
        feats[i, 14] = float(top > 0 and min(rel_diff(c, top * f) for f in (1.0, 2.0, 0.5))
                             > TEMPO_TOLERANCE)
    return np.asarray(cands), feats, ev


@dataclass(frozen=True)
class TempoDecision:
    """The fitted model's pick among the tempo candidates, before calibration."""

    bpm: float                          # strength-weighted mean of the agreeing estimates
    posterior: float                    # the model's probability of the chosen candidate
    conf_features: tuple[float, ...]    # what the tempo calibration reads (fit and use alike)
    evidence: tuple[TempoEvidence, ...]  # the tempo estimates the candidates came from
    kept_madmom: bool = False           # the guard kept madmom's tempo over the logit's pick


def tempo_posterior(feats: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The conditional logit's probability of each candidate (``(c,)``)."""
    z = feats @ np.asarray(weights, dtype=np.float64)
    post = np.exp(z - z.max())
    return post / post.sum()


def madmom_candidate(cands: np.ndarray, madmom: BackendAnalysis | None) -> int | None:
    """Index of the candidate that is madmom's own tempo (its histogram's top peak); ``None``
    when madmom has none inside :data:`TEMPO_RANGE_BPM`."""
    top = madmom.tempo.bpm if madmom is not None else 0.0
    if top <= 0 or not len(cands):
        return None
    j = int(np.argmin([rel_diff(c, top) for c in cands]))
    return j if rel_diff(float(cands[j]), top) <= TEMPO_TOLERANCE else None


def madmom_top_strength(madmom: BackendAnalysis | None) -> float:
    """The strength of madmom's top tempo-histogram peak (0.0 without one)."""
    return float(madmom.tempo.candidates[0][1]) if madmom is not None and \
        madmom.tempo.candidates else 0.0


def octave_move_features(post: np.ndarray, pick: int, mine: int, cands: np.ndarray,
                         top_strength: float) -> np.ndarray:
    """What the octave guard reads (:data:`OCTAVE_MOVE_FEATURES`) when the logit picks
    candidate ``pick`` over madmom's own ``mine``: the log ratio of their posteriors, the
    pick's posterior, the strength of madmom's histogram peak, and whether the pick is madmom's
    tempo ×2 or ×½ (rather than some other ratio)."""
    ratio = float(cands[pick] / cands[mine])
    octave = float(min(abs(ratio - 2.0) / 2.0, abs(ratio - 0.5) / 0.5) <= 2 * TEMPO_TOLERANCE)
    return np.array([float(np.log(max(post[pick], 1e-12) / max(post[mine], 1e-12))),
                     float(post[pick]), float(top_strength), octave, 1.0])


def guarded_pick(post: np.ndarray, mine: int | None, move_features: np.ndarray | None,
                 params: FusionParams) -> tuple[int, bool]:
    """``(candidate, kept madmom's)``: the logit's pick, unless it leaves madmom's tempo
    (``mine``) while the octave guard's probability that leaving is right stays under
    ``params.octave_threshold``. The one decision rule of the runtime and of the fit's
    evaluation."""
    pick = int(np.argmax(post))
    if mine is None or pick == mine or move_features is None:
        return pick, False
    if calibrated(move_features, params.octave_move) >= params.octave_threshold:
        return pick, False
    return mine, True


def decide_tempo(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
                 params: FusionParams) -> TempoDecision | None:
    """The tempo the fitted model picks and its calibration features; ``None`` without
    evidence. Used by :func:`fuse_tempo` and by the fit (``benchmarks/fit_fusion.py``)."""
    cands, feats, ev = tempo_candidates(madmom, essentia)
    if not len(cands):
        return None
    post = tempo_posterior(feats, params.tempo_weights)
    pick = int(np.argmax(post))
    mine = madmom_candidate(cands, madmom)
    move = (octave_move_features(post, pick, mine, cands, madmom_top_strength(madmom))
            if mine is not None and pick != mine else None)
    best, kept = guarded_pick(post, mine, move, params)
    bpm, share = agreeing_tempo(float(cands[best]), ev)
    return TempoDecision(bpm=bpm, posterior=float(post[best]),
                         conf_features=(float(logit(post[best])), share, 1.0),
                         evidence=tuple(ev), kept_madmom=kept)


def agreeing_tempo(candidate: float, ev: Sequence[TempoEvidence]) -> tuple[float, float]:
    """``(bpm, share)``: the strength-weighted mean of the evidence within the tolerance of
    ``candidate`` (the candidate itself without any) and that evidence's share of the total
    strength."""
    agree = [e for e in ev if rel_diff(candidate, e.bpm) <= TEMPO_TOLERANCE]
    total = sum(e.strength for e in agree)
    bpm = sum(e.bpm * e.strength for e in agree) / total if agree and total > 0 else candidate
    share = total / max(sum(e.strength for e in ev), 1e-9)
    return float(bpm), float(share)


def fuse_tempo(madmom: BackendAnalysis | None, essentia: BackendAnalysis | None,
               params: FusionParams) -> tuple[float, float, str]:
    """``(bpm, calibrated confidence, note)``; ``(0, 0, ...)`` without evidence."""
    d = decide_tempo(madmom, essentia, params)
    if d is None:
        return 0.0, 0.0, "tempo: no evidence"
    conf = calibrated(list(d.conf_features), params.tempo_conf)
    note = ("tempo: " + ", ".join(f"{e.source}={e.bpm:.1f}" for e in d.evidence[:8])
            + f" -> {d.bpm:.1f} (posterior {d.posterior:.2f}, calibrated {conf:.2f}"
            + (", madmom's octave kept" if d.kept_madmom else "") + ")")
    return d.bpm, conf, note


# --------------------------------------------------------------------------- meter, chords

def meter_conf_features(meter_probability: float, beats_confidence: float, relevelled: bool,
                        tempo_confidence: float) -> list[float]:
    """The meter confidence's inputs: madmom's meter probability and beat activation, whether
    the consensus moved the beats to another level than madmom's (the meter is then
    translated, :func:`annotate.consensus.meter_at_level`), and the consensus tempo's
    calibrated confidence (a wrong beat level makes the bar length wrong too)."""
    return [float(logit(meter_probability)), float(beats_confidence), float(relevelled),
            float(logit(tempo_confidence)), 1.0]


def chord_conf_features(crf_confidence: float, agreement: float) -> list[float]:
    return [float(logit(crf_confidence)), float(agreement), 1.0]
