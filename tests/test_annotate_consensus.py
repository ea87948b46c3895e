"""Consensus rules (annotate/consensus.py) on hand-made backend answers: no models. Key and
tempo go through the committed fitted fusion (annotate/fusion_params.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotate.annotator import AnnotatorConfig, rms_dbfs
from annotate.consensus import (
    ConsensusConfig,
    chord_agreement,
    chord_key_scores,
    combine,
    from_single,
    grid_tempo,
    meter_at_level,
    profile_scores,
    resolve_beats,
    resolve_chords,
    resolve_key,
    resolve_tempo,
    silent_analysis,
)
from dataclasses import replace

from annotate.fusion import FusionParams, load_params
from annotate.labels import KEYS, key_index
from annotate.types import BackendAnalysis, Beat, ChordSegment, KeyEstimate, TempoEstimate
from llark.music import downbeats as downbeat_times
from llark.errors import ConfigError

CFG = ConsensusConfig()
PARAMS = load_params()
DUR = 24.0
PROFILES = ("edma", "bgate", "temperley", "krumhansl", "shaath")


def grid(bpm: float, meter: int = 4, start: float = 0.5, numbered: bool = True
         ) -> tuple[Beat, ...]:
    ibi = 60.0 / bpm
    n = int((DUR - start) / ibi)
    return tuple(Beat(round(start + i * ibi, 4), (i % meter + 1) if numbered else 0)
                 for i in range(n))


def onehot_key(label: str, p: float = 0.9) -> tuple[float, ...]:
    probs = np.full(24, (1 - p) / 23)
    probs[key_index(label)] = p
    return tuple(probs)


def madmom(bpm_grid: float = 120.0, hist: tuple = ((120.0, 0.5), (60.0, 0.3)), meter: int = 4,
           key: str = "C major", key_p: float = 0.9, chords: tuple = (), beats_conf: float = 0.7
           ) -> BackendAnalysis:
    chords = chords or (ChordSegment(0.0, 12.0, "C:maj"), ChordSegment(12.0, DUR, "G:maj"))
    return BackendAnalysis(
        backend="madmom", duration_s=DUR, tempo=TempoEstimate(hist[0][0], hist[0][1], hist),
        beats=grid(bpm_grid, meter), meter=meter, meter_confidence=0.9,
        key=KeyEstimate(key, key_p, onehot_key(key, key_p)), chords=chords,
        chords_confidence=0.9, beats_confidence=beats_conf)


def essentia(bpm: float = 120.0, conf: float = 0.8, key: str = "C major", strength: float = 0.8,
             chroma: tuple = (), frames: tuple = (), chords_conf: float = 0.7) -> BackendAnalysis:
    return BackendAnalysis(
        backend="essentia", duration_s=DUR, tempo=TempoEstimate(bpm, conf, ((bpm, 1.0),)),
        beats=grid(bpm, numbered=False, start=0.52), meter=0, meter_confidence=0.0,
        key=KeyEstimate(key, strength, (), strength), chords=(ChordSegment(0.0, DUR, "C:maj"),),
        chords_confidence=chords_conf, beats_confidence=conf, chroma=chroma,
        chord_frames=frames, chord_fps=10.0 if frames else 0.0,
        key_profiles=tuple((p, key, strength) for p in PROFILES))


# --------------------------------------------------------------------------- tempo

def test_grid_tempo_is_the_median_interval() -> None:
    assert grid_tempo(grid(100.0)) == pytest.approx(100.0, rel=1e-3)
    assert grid_tempo(grid(100.0)[:2]) == 0.0


def test_agreeing_backends_give_their_tempo_with_high_confidence() -> None:
    bpm, conf, _ = resolve_tempo(madmom(), essentia(121.0), PARAMS)
    assert bpm == pytest.approx(120.5, abs=0.6)
    assert conf > 0.8


def _only(**weights: float) -> FusionParams:
    """Hand-made fusion parameters: the named tempo features weigh, nothing else (tests of the
    mechanism, independent of what the committed fit learnt)."""
    from annotate.fusion import TEMPO_FEATURES

    return replace(FusionParams.neutral(),
                   tempo_weights=tuple(weights.get(n, 0.0) for n in TEMPO_FEATURES))


def test_the_tempo_follows_the_evidence_the_weights_trust() -> None:
    # madmom's histogram prefers half tempo; its DBN grid and essentia say 122 BPM.
    m = madmom(bpm_grid=122.0, hist=((61.0, 0.45), (122.0, 0.3)))
    e = essentia(122.0)
    bpm, _, note = resolve_tempo(m, e, _only(madmom_grid=2.0, essentia=2.0))
    assert bpm == pytest.approx(122.0, rel=0.02) and "madmom_hist=61.0" in note
    assert resolve_tempo(m, e, _only(madmom_top=3.0))[0] == pytest.approx(61.0, rel=0.02)
    # an octave no tracker reported can win, through its relation to madmom's bar model
    m = madmom(bpm_grid=100.0, hist=((50.0, 0.45), (100.0, 0.3)), meter=3)
    bpm, _, _ = resolve_tempo(m, essentia(100.0), _only(double_of_grid_m3=3.0))
    assert bpm == pytest.approx(200.0, rel=0.01)


def test_the_octave_guard_keeps_madmoms_tempo_unless_leaving_it_is_likely_right() -> None:
    from annotate.fusion import OCTAVE_MOVE_FEATURES

    # madmom says 61 BPM; essentia's tempo and grid say 122, and the logit trusts essentia
    m = madmom(bpm_grid=61.0, hist=((61.0, 0.45), (122.0, 0.1)))
    e = essentia(122.0)
    logit = _only(essentia=3.0, essentia_grid=3.0)
    assert resolve_tempo(m, e, logit)[0] == pytest.approx(122.0, rel=0.02)   # unguarded
    bias = OCTAVE_MOVE_FEATURES.index("bias")

    def guard(b: float, threshold: float) -> FusionParams:
        w = [0.0] * len(OCTAVE_MOVE_FEATURES)
        w[bias] = b
        return replace(logit, octave_move=tuple(w), octave_threshold=threshold)

    # P(moving is right) = sigmoid(bias): 0.5 under a 0.6 threshold keeps madmom's tempo
    bpm, _, note = resolve_tempo(m, e, guard(0.0, 0.6))
    assert bpm == pytest.approx(61.0, rel=0.02) and "madmom's octave kept" in note
    # sigmoid(3) = 0.95 clears it; a threshold above 1 never lets the pick leave madmom
    assert resolve_tempo(m, e, guard(3.0, 0.6))[0] == pytest.approx(122.0, rel=0.02)
    assert resolve_tempo(m, e, guard(3.0, 1.01))[0] == pytest.approx(61.0, rel=0.02)


def test_the_fitted_fusion_keeps_what_both_trackers_agree_on() -> None:
    m = madmom(bpm_grid=70.0, hist=((70.0, 0.5), (140.0, 0.2)), meter=3)
    bpm, _, _ = resolve_tempo(m, essentia(70.5, conf=0.6), PARAMS)
    assert bpm == pytest.approx(70.0, rel=0.02)


def test_disagreeing_trackers_give_a_lower_tempo_confidence() -> None:
    m = madmom(bpm_grid=70.0, hist=((70.0, 0.2), (107.0, 0.2)), beats_conf=0.2)
    _, conf_split, _ = resolve_tempo(m, essentia(133.0, conf=0.3), PARAMS)
    _, conf_agree, _ = resolve_tempo(madmom(), essentia(120.0), PARAMS)
    assert conf_split < conf_agree


def test_no_tempo_evidence_gives_zero() -> None:
    m = BackendAnalysis("madmom", DUR, TempoEstimate(0.0, 0.0), (), 0, 0.0,
                        KeyEstimate("", 0.0), (), 0.0)
    e = BackendAnalysis("essentia", DUR, TempoEstimate(0.0, 0.0), (), 0, 0.0,
                        KeyEstimate("", 0.0), (), 0.0)
    assert resolve_tempo(m, e, PARAMS)[:2] == (0.0, 0.0)


# --------------------------------------------------------------------------- beats

def test_beats_come_from_madmom_when_its_grid_matches() -> None:
    m = madmom()
    beats, meter, conf, note = resolve_beats(m, essentia(), 120.0, CFG)
    assert beats == m.beats and meter == 4 and conf == 0.9 and "madmom" in note


def test_madmom_at_double_speed_gives_every_second_beat_in_whole_bars() -> None:
    # madmom tracked at 180 BPM, its first downbeat on its second beat; the tempo is 90 BPM
    fast = grid(180.0)
    m = BackendAnalysis(**{**madmom(bpm_grid=180.0).__dict__, "beats": tuple(
        Beat(b.time_s, (i + 3) % 4 + 1) for i, b in enumerate(fast))})
    beats, meter, _, note = resolve_beats(m, essentia(90.0), 90.0, CFG)
    assert "madmom" in note and meter == 4
    assert [b.time_s for b in beats] == [b.time_s for i, b in enumerate(fast) if i % 2 == 1]
    # whole bars of 4 at this level (madmom's half-bars at double speed are not bars here):
    # numbers run 1..4 in turn, and every beat 1 is one of madmom's downbeats
    numbers = [b.beat_number for b in beats]
    first = numbers.index(1)
    assert numbers[first:] == [(k % 4) + 1 for k in range(len(numbers) - first)]
    madmom_ones = {b.time_s for i, b in enumerate(fast) if i % 4 == 1}
    assert set(downbeat_times(beats)) <= madmom_ones


def test_where_madmoms_bars_are_shorter_than_a_bar_here_the_beats_are_whole_bars() -> None:
    # madmom: 3/4 at 135 BPM, bars of 1.333 s = 2 beats at the 90 BPM tempo (bars of 4 there):
    # essentia's beats are numbered in whole bars of 4, a beat 1 on one of madmom's downbeats
    m = madmom(bpm_grid=135.0, hist=((90.0, 0.5),), meter=3)
    e = essentia(90.0)
    beats, meter, _, note = resolve_beats(m, e, 90.0, CFG)
    assert "essentia" in note and meter == 4
    assert [b.time_s for b in beats] == [b.time_s for b in e.beats]
    numbers = [b.beat_number for b in beats]
    assert max(numbers) == 4 and set(numbers) == {1, 2, 3, 4}
    assert all(min(abs(t - d) for d in m.downbeats_s) <= 0.07 for t in downbeat_times(beats))


def test_essentia_beats_take_the_bar_phase_of_madmom_downbeats() -> None:
    # madmom at half speed, its downbeats on every 8th essentia beat starting at beat index 2
    e = essentia(120.0)
    times = [b.time_s for b in e.beats]
    m = BackendAnalysis(
        backend="madmom", duration_s=DUR, tempo=TempoEstimate(60.0, 0.5, ((60.0, 0.5),)),
        beats=tuple(Beat(t, (i // 2) % 4 + 1 if i % 2 == 0 else 0)
                    for i, t in enumerate(times[2:]) if i % 2 == 0),
        meter=4, meter_confidence=0.8, key=KeyEstimate("C major", 0.5, onehot_key("C major")),
        chords=(ChordSegment(0.0, DUR, "C:maj"),), chords_confidence=0.5, beats_confidence=0.5)
    assert m.downbeats_s[0] == times[2]
    beats, meter, _, note = resolve_beats(m, e, 120.0, CFG)
    assert "essentia" in note and meter == 4
    assert [b.beat_number for b in beats][:6] == [3, 4, 1, 2, 3, 4]


@pytest.mark.parametrize("meter, ratio, want", [
    (4, 1.0, 4), (3, 1.0, 3),
    (4, 1.5, 3),    # a 4-beat bar at the dotted-quarter level of a 3/4 piece: 6 beats = 2 bars of 3
    (4, 2.0, 4),    # tracked at half speed: 8 beats = 2 bars of 4
    (4, 0.5, 4),    # tracked at double speed: 2 beats per "bar", keep 4
    (3, 2.0, 3),    # 6 beats = 2 bars of 3
    (4, 0.75, 3),   # 3 beats
    (4, 1.3, 4),    # not a whole number of beats: keep
])
def test_meter_at_another_beat_level(meter: int, ratio: float, want: int) -> None:
    assert meter_at_level(meter, ratio) == want


def test_a_waltz_tracked_in_duple_gets_bars_of_three() -> None:
    # madmom: 4/4 at 75 BPM (two bars of 3/4 at 112.5 per "bar"); the tempo is 112.5 BPM
    m = madmom(bpm_grid=75.0, hist=((75.0, 0.3), (112.5, 0.1)), beats_conf=0.2)
    e = essentia(112.5, conf=0.5)
    beats, meter, _, note = resolve_beats(m, e, 112.5, CFG)
    assert meter == 3 and "essentia" in note
    assert {b.beat_number for b in beats} == {1, 2, 3}


# --------------------------------------------------------------------------- key

def test_profile_scores_find_the_key_of_a_scale_chroma() -> None:
    c_major = np.zeros(12)
    c_major[[0, 2, 4, 5, 7, 9, 11]] = 1.0
    c_major[[0, 4, 7]] += 1.0                      # tonic triad emphasised
    scores = profile_scores(tuple(c_major))
    assert KEYS[int(np.argmax(scores))] == "C major"
    assert not profile_scores(()).any() and not profile_scores((1.0,) * 12).any()


def test_chord_key_scores_prefer_the_tonic_of_a_progression() -> None:
    chords = (ChordSegment(0, 4, "A:min"), ChordSegment(4, 6, "F:maj"), ChordSegment(6, 8, "G:maj"),
              ChordSegment(8, 12, "A:min"), ChordSegment(12, 13, "N"))
    scores = chord_key_scores(chords)
    assert KEYS[int(np.argmax(scores))] == "A minor"
    assert not chord_key_scores((ChordSegment(0, 5, "N"),)).any()


def test_key_fusion_overrules_a_confident_but_lone_madmom() -> None:
    # madmom says the relative major; essentia, the chroma profile and the chords say A minor.
    a_minor = np.zeros(12)
    a_minor[[9, 11, 0, 2, 4, 5, 7]] = 1.0
    a_minor[[9, 0, 4]] += 1.0
    chords = (ChordSegment(0, 6, "A:min"), ChordSegment(6, 9, "D:min"), ChordSegment(9, 12, "E:maj"),
              ChordSegment(12, 18, "A:min"))
    m = madmom(key="C major", key_p=0.9, chords=chords)
    e = essentia(key="A minor", strength=0.8, chroma=tuple(a_minor))
    label, conf, note = resolve_key(m, e, chords, PARAMS)
    assert label == "A minor"
    assert 0.0 < conf <= 1.0
    assert "madmom=C major" in note and "shaath=A minor" in note


def test_key_fusion_keeps_an_agreed_key_confident() -> None:
    label, conf, _ = resolve_key(madmom(key="G major"), essentia(key="G major"),
                                 (ChordSegment(0, 12, "G:maj"), ChordSegment(12, 24, "C:maj")), PARAMS)
    assert label == "G major" and conf > 0.5


def test_key_without_evidence_is_empty() -> None:
    assert resolve_key(None, None, (), PARAMS)[:2] == ("", 0.0)


# --------------------------------------------------------------------------- chords

def test_chords_follow_madmom_with_agreement_confidence() -> None:
    m = madmom()
    agree = ("C:maj",) * 120 + ("G:maj",) * 120            # 24 s at 10 fps
    disagree = ("D:min",) * 240
    chords, conf_hi, _ = resolve_chords(m, essentia(frames=agree), CFG, PARAMS)
    assert chords == m.chords
    _, conf_lo, _ = resolve_chords(m, essentia(frames=disagree), CFG, PARAMS)
    assert chord_agreement(m.chords, agree, 10.0) == 1.0
    assert chord_agreement(m.chords, disagree, 10.0) == 0.0
    assert conf_hi > conf_lo


def test_madmom_no_chord_over_music_is_filled_by_a_confident_essentia() -> None:
    m = madmom(chords=(ChordSegment(0.0, 4.0, "N"), ChordSegment(4.0, DUR, "C:maj")))
    frames = ("F:maj",) * 40 + ("C:maj",) * 200
    chords, _, note = resolve_chords(m, essentia(frames=frames, chords_conf=0.9), CFG, PARAMS)
    assert chords[0] == ChordSegment(0.0, 4.0, "F:maj") and "filled" in note
    # an unconfident essentia leaves madmom's N alone
    chords, _, _ = resolve_chords(m, essentia(frames=frames, chords_conf=0.2), CFG, PARAMS)
    assert chords[0].label == "N"


# --------------------------------------------------------------------------- whole results

def test_combine_keeps_every_raw_answer_and_confidences_in_range() -> None:
    m, e = madmom(), essentia()
    out = combine(m, e, -12.0, CFG)
    assert out.backend == "consensus" and not out.is_silent
    for v in (out.tempo_confidence, out.meter_confidence, out.key_confidence,
              out.chords_confidence):
        assert 0.0 <= v <= 1.0
    assert out.downbeats_s == tuple(b.time_s for b in out.beats if b.beat_number == 1)
    raw = json.loads(out.backends_json())
    assert set(raw) == {"madmom", "essentia", "_meta"}
    assert BackendAnalysis.from_dict(raw["madmom"]).key.label == "C major"
    assert raw["_meta"]["rms_dbfs"] == -12.0 and len(raw["_meta"]["notes"]) == 4


def test_from_single_reports_one_backend_as_is() -> None:
    e = essentia(133.0)
    out = from_single(e, -20.0)
    assert out.backend == "essentia" and out.tempo_bpm == 133.0 and out.meter == 0
    assert out.downbeats_s == () and out.key == "C major"
    assert json.loads(out.backends_json()).keys() == {"essentia", "_meta"}


def test_silent_analysis_is_annotated_as_silence() -> None:
    out = silent_analysis("consensus", 10.0, -80.0)
    assert out.is_silent and out.tempo_bpm == 0.0 and out.beats == () and out.key == ""
    assert out.key_confidence == 0.0 and out.chords == (ChordSegment(0.0, 10.0, "N"),)
    js = out.to_json_dict("x.wav")
    assert js["key"] == {"label": "", "confidence": 0.0} and js["beats"] == []


def test_rms_dbfs() -> None:
    assert rms_dbfs(np.zeros(100, np.float32)) == -200.0
    assert rms_dbfs(np.full(100, 0.1, np.float32)) == pytest.approx(-20.0, abs=1e-4)
    assert rms_dbfs(np.zeros(0, np.float32)) == -200.0


@pytest.mark.parametrize("bad", [dict(tempo_tolerance=0.0), dict(tempo_tolerance=0.6),
                                 dict(chord_fill_strength=2.0)])
def test_consensus_config_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        ConsensusConfig(**bad)


def test_annotator_config_validation() -> None:
    with pytest.raises(ConfigError):
        AnnotatorConfig(backend="librosa")
    with pytest.raises(ConfigError):
        AnnotatorConfig(silence_dbfs=10.0)


def test_madmom_with_too_few_beats_for_a_grid_keeps_its_meter() -> None:
    m = madmom()
    m = BackendAnalysis(**{**m.__dict__, "beats": m.beats[:2]})     # no grid from 2 beats
    beats, meter, _, note = resolve_beats(m, essentia(100.0), 100.0, CFG)
    assert "essentia" in note and meter == 4 and beats


def test_merge_repeats_joins_neighbouring_equal_chords():
    from annotate.consensus import merge_repeats
    from annotate.types import ChordSegment

    chords = (ChordSegment(0.0, 1.0, "F:maj"), ChordSegment(1.0, 1.9, "F:maj"), ChordSegment(1.9, 3.9, "D:min"),
              ChordSegment(3.9, 4.0, "F:maj"))
    assert merge_repeats(chords) == (ChordSegment(0.0, 1.9, "F:maj"), ChordSegment(1.9, 3.9, "D:min"),
                                     ChordSegment(3.9, 4.0, "F:maj"))
    assert merge_repeats(()) == ()
