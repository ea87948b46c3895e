"""The real madmom and essentia backends and the consensus on synthesized songs of known tempo,
meter, key and chords (llark.demo.synth), scored with mir_eval, plus silence and odd inputs."""

from __future__ import annotations

import json
import warnings

import mir_eval
import numpy as np
import pytest

from annotate.annotator import AnnotatorConfig, build_annotator
from annotate.consensus import from_single
from annotate.essentia_backend import EssentiaAnnotator, EssentiaConfig
from annotate.labels import KEYS
from annotate.madmom_backend import MadmomConfig, _set_threads
from annotate.types import ClipAnalysis
from llark.errors import AnalysisError, ConfigError
from llark.demo.synth import Part, SongAudio, SongSpec, render_song, roman_to_harte

SR = 22050          # the rate of the real recordings; the annotator resamples once to 44.1 kHz


def _spec(tonic: int, mode: str, bpm: float, meter: int, numerals: list[str], parts: tuple,
          seed: int, first_beat_s: float) -> SongSpec:
    return SongSpec(tonic=tonic, mode=mode, tempo_bpm=bpm, beats_per_bar=meter,  # type: ignore[arg-type]
                    progression=roman_to_harte(numerals, tonic, mode), parts=parts,
                    duration_s=16.0, seed=seed, first_beat_s=first_beat_s)


SONGS = {
    "pop_4_4_D_major_112": _spec(
        2, "major", 112.0, 4, ["I", "IV", "V", "I"],
        (Part("drums", "drums", "rock"), Part("electric bass", "bass"), Part("piano", "chords"),
         Part("synth lead", "melody")), seed=11, first_beat_s=0.3),
    "waltz_3_4_E_minor_96": _spec(
        4, "minor", 96.0, 3, ["i", "iv", "V", "i"],
        (Part("drums", "drums", "waltz"), Part("contrabass", "bass", "waltz"),
         Part("acoustic guitar", "chords", "waltz"), Part("flute", "melody")),
        seed=5, first_beat_s=0.2),
}


@pytest.fixture(scope="module")
def annotator():
    return build_annotator("consensus")


@pytest.fixture(scope="module")
def results(annotator) -> dict[str, tuple[SongAudio, ClipAnalysis]]:
    out = {}
    for name, spec in SONGS.items():
        song = render_song(spec, SR)
        out[name] = (song, annotator(song.audio, SR))
    return out


def beat_f(ref: list[float], est: list[float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(mir_eval.beat.f_measure(np.array(ref), np.array(est)))


def majmin(song: SongAudio, est: ClipAnalysis) -> float:
    ref_i = np.array([[c.start_s, c.end_s] for c in song.chords])
    ref_l = [c.label for c in song.chords]
    est_i = np.array([[c.start_s, c.end_s] for c in est.chords])
    est_l = [c.label for c in est.chords]
    est_i, est_l = mir_eval.util.adjust_intervals(est_i, est_l, ref_i.min(), ref_i.max(), "N", "N")
    intervals, r, e = mir_eval.util.merge_labeled_intervals(ref_i, ref_l, est_i, est_l)
    return float(mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(r, e),
                                                  mir_eval.util.intervals_to_durations(intervals)))


def check_well_formed(res: ClipAnalysis, duration_s: float) -> None:
    times = [b.time_s for b in res.beats]
    assert times == sorted(times) and all(0 <= t < duration_s + 0.05 for t in times)
    assert res.chords[0].start_s == 0.0
    assert res.chords[-1].end_s == pytest.approx(duration_s, abs=0.06)
    for a, b in zip(res.chords, res.chords[1:]):
        assert a.end_s == pytest.approx(b.start_s, abs=1e-6) and a.start_s < a.end_s
    assert res.key in KEYS
    for conf in (res.tempo_confidence, res.key_confidence, res.chords_confidence,
                 res.meter_confidence):
        assert 0.0 <= conf <= 1.0


@pytest.mark.parametrize("name", sorted(SONGS))
def test_consensus_matches_the_truth(results, name: str) -> None:
    song, res = results[name]
    check_well_formed(res, song.duration_s)
    assert res.backend == "consensus" and not res.is_silent
    assert res.tempo_bpm == pytest.approx(song.tempo_bpm, rel=0.04)          # Acc1
    assert res.meter == song.meter
    assert res.key == song.key_label
    assert beat_f([b.time_s for b in song.beats], [b.time_s for b in res.beats]) >= 0.9
    assert beat_f(list(song.downbeats), list(res.downbeats_s)) >= 0.8
    assert majmin(song, res) >= 0.85
    # every beat carries its position in a bar of the detected meter
    assert {b.beat_number for b in res.beats} <= set(range(1, res.meter + 1))
    raw = json.loads(res.backends_json())
    assert {"madmom", "essentia", "_meta"} == set(raw)
    out = res.to_json_dict("song.wav")
    assert set(out) == {"path", "tempo_bpm", "beats", "downbeats", "key", "chords", "backend"}
    assert out["key"]["label"] == song.key_label and len(out["beats"]) == len(res.beats)


@pytest.mark.parametrize("name", sorted(SONGS))
def test_each_backend_is_close_to_the_truth(results, name: str) -> None:
    song, res = results[name]
    m, e = res.backends
    assert m.backend == "madmom" and e.backend == "essentia"
    for b in (m, e):
        single = from_single(b, 0.0)
        check_well_formed(single, song.duration_s)
        ratio = b.tempo.bpm / song.tempo_bpm                                    # Acc2
        assert any(abs(ratio - f) / f <= 0.04 for f in (0.5, 1.0, 2.0, 3.0, 1 / 3)), b.tempo
        assert mir_eval.key.weighted_score(song.key_label, b.key.label) >= 0.5, b.key.label
    # madmom: bar positions, the 24 key probabilities, CRF chords
    assert m.meter == song.meter and m.downbeats_s
    assert len(m.key.probabilities) == 24 and sum(m.key.probabilities) == pytest.approx(1, abs=1e-3)
    assert majmin(song, from_single(m, 0.0)) >= 0.85
    # essentia: no bar model, a key strength, HPCP chroma and frame-wise chords
    assert e.meter == 0 and all(b.beat_number == 0 for b in e.beats)
    assert 0.0 < e.key.strength <= 1.0 and len(e.chroma) == 12 and max(e.chroma) == 1.0
    assert e.chord_frames and e.chord_fps > 0
    assert majmin(song, from_single(e, 0.0)) >= 0.6


def test_silent_and_near_silent_windows_are_annotated_as_silent(annotator) -> None:
    rng = np.random.default_rng(0)
    for audio in (np.zeros(10 * SR, np.float32),
                  (1e-4 * rng.standard_normal(10 * SR)).astype(np.float32)):    # about -80 dBFS
        res = annotator(audio, SR)
        assert res.is_silent and res.tempo_bpm == 0.0 and res.beats == () and res.key == ""
        assert res.key_confidence == 0.0 and [c.label for c in res.chords] == ["N"]
        assert res.chords[0].end_s == pytest.approx(10.0)
    # music at -45 dBFS is quiet, not silent
    song, _ = next(iter(SONGS.items()))
    quiet = render_song(SONGS[song], SR).audio * np.float32(0.05)
    assert not annotator(quiet, SR).is_silent


def test_odd_inputs_do_not_crash(annotator) -> None:
    rng = np.random.default_rng(1)
    noise = (0.1 * rng.standard_normal(8 * SR)).astype(np.float32)
    clicks = np.zeros(8 * SR, np.float32)
    clicks[:: SR // 2] = 1.0
    short = render_song(SONGS["pop_4_4_D_major_112"], SR).audio[: int(1.5 * SR)]
    for audio in (noise, clicks, short):
        res = annotator(audio, SR)
        assert not res.is_silent
        check_well_formed(res, audio.size / SR)


def test_bad_inputs_raise_typed_errors(annotator) -> None:
    with pytest.raises(AnalysisError, match="at least 1.0s"):
        annotator(np.full(SR // 2, 0.1, np.float32), SR)
    with pytest.raises(AnalysisError, match="mono"):
        annotator(np.zeros((SR, 2), np.float32), SR)
    bad = np.zeros(SR * 2, np.float32)
    bad[5] = np.nan
    with pytest.raises(AnalysisError, match="NaN"):
        annotator(bad, SR)


def test_single_backends_and_options() -> None:
    song = render_song(SONGS["waltz_3_4_E_minor_96"], SR)
    ess = build_annotator("essentia")
    assert ess.madmom is None
    res = ess(song.audio, SR)
    assert res.backend == "essentia" and res.meter == 0 and res.downbeats_s == ()
    # the onsets the tempo fusion counts: a waltz at 96 BPM has a note on (nearly) every beat
    assert ess.essentia is not None
    raw = ess.essentia(song.audio, SR)
    assert raw.onsets == tuple(sorted(raw.onsets)) and 0 <= raw.onsets[0]
    assert raw.onsets[-1] < raw.duration_s
    per_beat = len(raw.onsets) / raw.duration_s * 60.0 / 96.0
    assert 0.8 <= per_beat <= 6.0, per_beat
    assert ess.essentia(song.audio, SR).onsets == raw.onsets    # no state kept between calls
    # the key profile is also a fusion profile: its KeyExtractor runs once, same answer
    assert ess.essentia._key is None
    own = EssentiaAnnotator(EssentiaConfig(fusion_key_profiles=("edma",)))
    assert own._key is not None and own(song.audio, SR).key == raw.key
    # essentia's per-beat chord variant runs on the same beats
    beats_variant = EssentiaAnnotator(EssentiaConfig(chord_method="beats"))(song.audio, SR)
    assert beats_variant.chords and all(c.label for c in beats_variant.chords)
    with pytest.raises(ConfigError):
        EssentiaConfig(key_profile="nope")
    with pytest.raises(ConfigError):
        MadmomConfig(tempo_activation="both")
    with pytest.raises(ConfigError):
        AnnotatorConfig(backend="madmom", silence_dbfs=-300.0)


def test_onnx_sessions_run_single_threaded(annotator) -> None:
    """Every ONNX session of every madmom processor the annotator uses has one intra-op
    thread (madmom's key and chord processors default to two; the backend rebuilds them)."""
    from madmom.ml.nn.onnx_runtime import OnnxNeuralNetworkRuntime

    m = annotator.madmom

    found: list[OnnxNeuralNetworkRuntime] = []

    def walk(p: object, seen: set) -> None:
        if id(p) in seen:
            return
        seen.add(id(p))
        if isinstance(p, OnnxNeuralNetworkRuntime):
            found.append(p)
        for c in getattr(p, "processors", None) or ():
            walk(c, seen)
        if getattr(p, "_runtime", None) is not None:
            walk(p._runtime, seen)

    for proc in (m._downbeat_rnn, m._key, m._chord_features):
        walk(proc, set())
    assert len(found) >= 10   # 8 downbeat networks + key + chord features
    assert all(r.session_options.intra_op_num_threads == 1 for r in found)
    # _set_threads finds the sessions inside a processor tree
    assert _set_threads(m._key, 1) == 1          # madmom ships one key network
