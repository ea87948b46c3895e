"""The fitted fusion (annotate/fusion.py): calibration math, the parameter file, and how the
committed fit behaves on clear and on absent evidence. No models run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotate.fusion import (
    CHORD_CONF_FEATURES,
    DEFAULT_PARAMS_PATH,
    KEY_CONF_FEATURES,
    KEY_FEATURES,
    TEMPO_FEATURES,
    FusionParams,
    calibrated,
    ece,
    fit_conditional_logit,
    fit_logistic,
    fuse_key,
    fuse_tempo,
    key_features,
    load_params,
    onset_periodicity,
    onsets_per_beat,
    reliability,
    sigmoid,
    tempo_candidates,
)
from annotate.labels import KEYS, key_index
from annotate.types import BackendAnalysis, Beat, ChordSegment, KeyEstimate, TempoEstimate
from llark.errors import ConfigError

DUR = 24.0


# --------------------------------------------------------------------------- calibration math

def test_fit_logistic_recovers_known_weights() -> None:
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=(6000, 2)), np.ones(6000)]
    w = np.array([1.5, -0.8, 0.3])
    y = (rng.random(6000) < sigmoid(x @ w)).astype(float)
    got = fit_logistic(x, y, l2=0.0)
    assert np.allclose(got, w, atol=0.15)


def test_fit_logistic_penalises_every_feature_on_the_same_scale() -> None:
    """The penalty acts on standardised features: rescaling or shifting a feature changes
    its raw weight, never the fitted probabilities; a feature with a narrow range is not
    shrunk harder than a wide one (the key confidence's HPCP flatness lies in 0.4-0.8)."""
    rng = np.random.default_rng(5)
    narrow = rng.normal(0.6, 0.1, 800)
    wide = rng.normal(0.0, 3.0, 800)
    y = (rng.random(800) < sigmoid(12.0 * (narrow - 0.6) + 0.3 * wide)).astype(float)
    x = np.c_[narrow, wide, np.ones(800)]
    w = fit_logistic(x, y, l2=1e-2)
    x2 = np.c_[narrow * 10.0 + 5.0, wide / 4.0, np.ones(800)]
    w2 = fit_logistic(x2, y, l2=1e-2)
    assert np.allclose(sigmoid(x @ w), sigmoid(x2 @ w2), atol=1e-4)
    # the narrow feature keeps most of its effect under the penalty (raw fit: 12)
    assert w[0] > 8.0
    # an all-zero column gets weight 0 and does not disturb the bias
    w3 = fit_logistic(np.c_[x, np.zeros(800)], y, l2=1e-2)
    assert w3[3] == 0.0 and np.allclose(w3[:3], w, atol=1e-4)


def test_fit_logistic_takes_soft_targets_and_weights() -> None:
    # a constant feature fitted to a fraction: the calibrated probability is that fraction
    x = np.ones((10, 1))
    assert calibrated([1.0], fit_logistic(x, np.full(10, 0.7), l2=0.0)) == pytest.approx(0.7, 1e-3)
    # sample weights: 3 wrong clips weighing 3 each against 9 right ones -> 0.5
    y = np.r_[np.ones(9), np.zeros(3)]
    sw = np.r_[np.ones(9), np.full(3, 3.0)]
    assert calibrated([1.0], fit_logistic(np.ones((12, 1)), y, l2=0.0, sample_weight=sw)) == \
        pytest.approx(0.5, 1e-3)


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(1)
    conf = rng.random(20000)
    right = (rng.random(20000) < conf).astype(float)
    assert ece(conf, right) < 0.02
    over = np.full(1000, 0.95)
    hits = np.r_[np.ones(600), np.zeros(400)]
    assert ece(over, hits) == pytest.approx(0.35, abs=1e-9)
    assert ece([], []) == 0.0


def test_reliability_bins() -> None:
    rows = reliability([0.05, 0.15, 0.15, 1.0, 0.99], [0, 1, 0, 1, 0])
    assert rows == [(0.0, 0.1, 1, 0.05, 0.0), (0.1, 0.2, 2, 0.15, 0.5),
                    (0.9, 1.0, 2, pytest.approx(0.995), 0.5)]
    assert sum(r[2] for r in rows) == 5


def test_conditional_logit_learns_which_feature_marks_the_right_option() -> None:
    rng = np.random.default_rng(2)
    feats, targets = [], []
    for _ in range(300):
        f = rng.normal(size=(5, 2))
        right = int(np.argmax(f[:, 0] + 0.3 * rng.normal(size=5)))   # feature 0 is the evidence
        t = np.zeros(5, bool)
        t[right] = True
        feats.append(f)
        targets.append(t)
    w = fit_conditional_logit(feats, targets, l2=1e-3)
    assert w[0] > 2.0 and abs(w[1]) < 0.5


# --------------------------------------------------------------------------- the parameter file

def test_the_committed_parameters_load_and_name_their_provenance() -> None:
    params = load_params()
    assert len(params.key_weights) == len(KEY_FEATURES)
    meta = dict(params.meta)
    assert "devset" in meta["fitted_on"] and meta["command"] == "python -m benchmarks.fit_fusion"
    d = json.loads(DEFAULT_PARAMS_PATH.read_text())
    assert set(d["tempo_weights"]) == set(TEMPO_FEATURES)
    assert FusionParams.from_dict(params.to_dict()) == params


def test_parameter_files_are_checked() -> None:
    d = load_params().to_dict()
    bad = dict(d, key_conf={k: v for k, v in d["key_conf"].items() if k != "bias"})
    with pytest.raises(ConfigError, match="key_conf must name exactly"):
        FusionParams.from_dict(bad)
    with pytest.raises(ConfigError, match="version"):
        FusionParams.from_dict(dict(d, version=0))
    with pytest.raises(ConfigError, match="needs"):
        FusionParams.neutral().__class__(key_weights=(1.0,), key_conf=(0.0,) * len(KEY_CONF_FEATURES),
                                         tempo_weights=(0.0,) * len(TEMPO_FEATURES),
                                         tempo_conf=(0.0,) * 3, meter_conf=(0.0,) * 3,
                                         chord_conf=(0.0,) * len(CHORD_CONF_FEATURES))
    with pytest.raises(ConfigError, match="missing"):
        load_params("/nonexistent/fusion.json")


# --------------------------------------------------------------------------- behaviour of the fit

def _grid(bpm: float, meter: int = 4, numbered: bool = True) -> tuple[Beat, ...]:
    ibi = 60.0 / bpm
    return tuple(Beat(round(0.5 + i * ibi, 4), (i % meter + 1) if numbered else 0)
                 for i in range(int((DUR - 0.5) / ibi)))


def _keyed(label: str, p: float) -> tuple[float, ...]:
    probs = np.full(24, (1 - p) / 23)
    probs[key_index(label)] = p
    return tuple(probs)


def _scale_chroma(tonic: int, minor: bool = False) -> tuple[float, ...]:
    steps = (0, 2, 3, 5, 7, 8, 10) if minor else (0, 2, 4, 5, 7, 9, 11)
    c = np.full(12, 0.1)
    for s in steps:
        c[(tonic + s) % 12] = 0.6
    for s in (0, 3 if minor else 4, 7):
        c[(tonic + s) % 12] = 1.0
    return tuple(c)


def music(key: str = "G major", bpm: float = 120.0) -> tuple[BackendAnalysis, BackendAnalysis,
                                                             tuple[ChordSegment, ...]]:
    """Two backends that hear clear, agreeing music in ``key`` at ``bpm``."""
    tonic = key_index(key) % 12
    names = [KEYS[(tonic + s) % 12].split()[0] for s in (0, 5, 7)]
    chords = (ChordSegment(0, 6, f"{names[0]}:maj"), ChordSegment(6, 12, f"{names[1]}:maj"),
              ChordSegment(12, 18, f"{names[2]}:maj"), ChordSegment(18, DUR, f"{names[0]}:maj"))
    m = BackendAnalysis("madmom", DUR, TempoEstimate(bpm, 0.5, ((bpm, 0.5), (bpm / 2, 0.2))),
                        _grid(bpm), 4, 0.95, KeyEstimate(key, 0.9, _keyed(key, 0.9)), chords,
                        0.9, beats_confidence=0.6)
    e = BackendAnalysis("essentia", DUR, TempoEstimate(bpm, 0.8, ((bpm, 1.0),)),
                        _grid(bpm, numbered=False), 0, 0.0, KeyEstimate(key, 0.9, (), 0.9),
                        chords, 0.7, beats_confidence=0.8, chroma=_scale_chroma(tonic),
                        key_profiles=tuple((p, key, 0.9) for p in
                                           ("edma", "bgate", "temperley", "krumhansl", "shaath")))
    return m, e, chords


def noise() -> tuple[BackendAnalysis, BackendAnalysis]:
    """What the backends report on pink noise: a flat key distribution, profiles that
    disagree weakly, a flat chroma, no chords, weak beats at unrelated tempi."""
    flat = np.full(24, 1 / 24)
    flat[3] += 0.02
    flat /= flat.sum()
    m = BackendAnalysis("madmom", DUR, TempoEstimate(97.0, 0.05, ((97.0, 0.05), (151.0, 0.04))),
                        _grid(97.0), 4, 0.5, KeyEstimate(KEYS[3], float(flat[3]), tuple(flat)),
                        (ChordSegment(0, DUR, "N"),), 0.99, beats_confidence=0.05)
    e = BackendAnalysis("essentia", DUR, TempoEstimate(133.0, 0.02, ((133.0, 1.0),)),
                        _grid(133.0, numbered=False), 0, 0.0, KeyEstimate("F minor", 0.35, (), 0.35),
                        (ChordSegment(0, DUR, "N"),), 0.1, chroma=tuple(np.linspace(0.8, 1.0, 12)),
                        key_profiles=(("edma", "F minor", 0.3), ("bgate", "C major", 0.35),
                                      ("temperley", "D# major", 0.3),
                                      ("krumhansl", "F minor", 0.32), ("shaath", "G# major", 0.3)))
    return m, e


def test_clear_agreeing_key_evidence_gives_that_key_with_high_confidence() -> None:
    m, e, chords = music("Bb major")
    label, conf, note = fuse_key(m, e, chords, load_params())
    assert label == "Bb major" and conf > 0.8
    assert "edma=Bb major" in note


def test_noise_gets_a_low_key_confidence() -> None:
    m, e = noise()
    _, conf, _ = fuse_key(m, e, (ChordSegment(0, DUR, "N"),), load_params())
    m2, e2, chords = music()
    _, conf_music, _ = fuse_key(m2, e2, chords, load_params())
    assert conf < 0.25 < conf_music


def test_no_key_evidence_gives_no_key() -> None:
    assert fuse_key(None, None, (), load_params())[:2] == ("", 0.0)
    assert not key_features(None, None, ()).any()


def test_agreeing_trackers_give_their_tempo_with_high_confidence() -> None:
    m, e, _ = music(bpm=120.0)
    bpm, conf, _ = fuse_tempo(m, e, load_params())
    assert bpm == pytest.approx(120.0, rel=0.01) and conf > 0.7
    m, e = noise()
    _, conf_noise, _ = fuse_tempo(m, e, load_params())
    assert conf_noise < conf


def test_tempo_candidates_are_the_evidence_and_its_octaves() -> None:
    m, e, _ = music(bpm=100.0)
    cands, feats, ev = tempo_candidates(m, e)
    assert {round(c) for c in cands} == {50, 100, 200}
    i = int(np.argmin(np.abs(cands - 100.0)))
    assert feats[i, TEMPO_FEATURES.index("madmom_top")] == 1.0
    assert feats[i, TEMPO_FEATURES.index("no_direct_support")] == 0.0
    j = int(np.argmin(np.abs(cands - 200.0)))
    assert feats[j, TEMPO_FEATURES.index("no_direct_support")] == 1.0
    # the octave relation to the bar model is a feature in 3/4 only
    assert not feats[:, TEMPO_FEATURES.index("double_of_grid_m3")].any()
    m3 = BackendAnalysis(**{**m.__dict__, "meter": 3})
    cands, feats, _ = tempo_candidates(m3, e)
    j = int(np.argmin(np.abs(cands - 200.0)))
    assert feats[j, TEMPO_FEATURES.index("double_of_grid_m3")] == 1.0
    assert fuse_tempo(None, None, load_params())[:2] == (0.0, 0.0)


def test_onset_evidence_is_read_relative_to_each_candidate() -> None:
    """Onsets per beat and their periodicity are measured at each candidate's beat, so a
    melody of eighth notes at 100 BPM reads two notes per beat at 100 and one at 200."""
    eighths = tuple(round(i * 0.3, 4) for i in range(80))         # 200 onsets/min, 24 s
    m, e, _ = music(bpm=100.0)
    e = BackendAnalysis(**{**e.__dict__, "onsets": eighths})
    assert onsets_per_beat(e, 100.0) == pytest.approx(80 / DUR * 0.6)
    assert onsets_per_beat(e, 200.0) == pytest.approx(onsets_per_beat(e, 100.0) / 2)
    assert onsets_per_beat(None, 100.0) == 0.0
    cands, feats, _ = tempo_candidates(m, e)
    col = {n: feats[:, TEMPO_FEATURES.index(n)] for n in TEMPO_FEATURES}
    i100, i200 = (int(np.argmin(np.abs(cands - b))) for b in (100.0, 200.0))
    assert col["onsets_per_beat"][i100] - col["onsets_per_beat"][i200] == pytest.approx(1.0)
    assert col["onsets_per_beat_sq"][i100] == pytest.approx(col["onsets_per_beat"][i100] ** 2)
    # every onset but the last two has one 0.6 s later (a beat at 100), all but the last
    # one 0.3 s later (half a beat)
    assert col["onset_period"][i100] == pytest.approx(78 / 80)
    assert col["onset_period_half"][i100] == pytest.approx(79 / 80)
    # a beat at 100 BPM is 0.6 s; at 0.45 s (133 BPM: no onset there) the share is 0
    assert onset_periodicity(eighths, 0.45) == 0.0
    assert onset_periodicity(eighths[:3], 0.3) == 0.0        # too few onsets to say
    # without onsets the onset columns say nothing (0 for every candidate)
    _, quiet, _ = tempo_candidates(m, BackendAnalysis(**{**e.__dict__, "onsets": ()}))
    for n in ("onsets_per_beat", "onset_period", "onset_period_double"):
        assert not quiet[:, TEMPO_FEATURES.index(n)].any()


def test_a_candidate_off_madmoms_octaves_is_marked() -> None:
    """A tempo at 3/2 of madmom's (essentia hearing dotted quarters) is no octave of it."""
    m, e, _ = music(bpm=100.0)
    e = BackendAnalysis(**{**e.__dict__, "tempo": TempoEstimate(150.0, 0.8, ((150.0, 1.0),))})
    cands, feats, _ = tempo_candidates(m, e)
    off = dict(zip(np.round(cands), feats[:, TEMPO_FEATURES.index("off_madmom_octaves")]))
    assert off[100.0] == off[50.0] == off[200.0] == 0.0
    assert off[150.0] == off[75.0] == 1.0


# --------------------------------------------------------------------------- the tempo study

def test_tempo_study_columns_are_relative_to_the_candidate() -> None:
    """The features `fit_fusion --tempo-study` tries read the evidence relative to each
    candidate (beats per chord, support at its octaves), not an absolute tempo."""
    from benchmarks.devset import DevClip, Truth
    from benchmarks.fit_fusion import TEMPO_STUDY_SETS, Parsed, study_columns

    m, e, _ = music(bpm=100.0)
    e = BackendAnalysis(**{**e.__dict__, "chord_fps": 10.0,
                           "chord_frames": tuple(["C:maj"] * 60 + ["G:maj"] + ["F:maj"] * 60
                                                 + ["C:maj"] * 60)})
    p = Parsed(DevClip("x", "x", "bach", Truth(tempo_bpm=100.0), {}, {}), m, e)
    cands, feats, _ = tempo_candidates(m, e)
    cols = study_columns(p, cands, feats)
    assert {n for names in TEMPO_STUDY_SETS.values() for n in names} <= set(cols)
    assert all(v.shape == (len(cands),) for v in cols.values())
    i100 = int(np.argmin(np.abs(cands - 100.0)))
    i50 = int(np.argmin(np.abs(cands - 50.0)))
    # madmom's chords last 6 s: 10 beats at 100 BPM, 5 at 50
    assert cols["hr_madmom"][i100] == pytest.approx(np.log2(10.0))
    assert cols["hr_madmom"][i100] - cols["hr_madmom"][i50] == pytest.approx(1.0)
    # essentia's frames: the one-frame G run is ignored, 2 changes in 24 s -> 100 / 60 / (2/24)
    assert cols["hr_essentia"][i100] == pytest.approx(np.log2(100.0 / 60.0 / (2 / DUR)))
    # 50 BPM's double (100) holds every source; 100's half is 50, which only the hist holds
    assert cols["double_support"][i50] == pytest.approx(feats[i100, :4].sum())
    assert cols["half_hist"][i100] == pytest.approx(feats[i50, 1])
    assert cols["grids_agree"][i100] == 1.0 and cols["grids_agree"][i50] == 0.0
