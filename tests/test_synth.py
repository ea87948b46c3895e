"""Tests of the numpy music synthesizer (llark/demo/synth.py): determinism and exact ground truth."""

from __future__ import annotations

import re

import numpy as np
import pytest

from llark.demo.synth import (
    INSTRUMENTS,
    MAJOR_SCALE,
    MINOR_SCALE,
    Part,
    SongSpec,
    random_song_spec,
    render_song,
    roman_to_harte,
)
from llark.music import KEYS, parse_chord, parse_key

SR = 22050
NOTE = r"(C|C#|Db|D|D#|Eb|E|E#|F|F#|Gb|G|G#|Ab|A|A#|Bb|B)"
HARTE_RE = re.compile(rf"^(N|{NOTE}:(maj|min))$")


def _spec(**overrides: object) -> SongSpec:
    base: dict[str, object] = dict(
        tonic=9, mode="minor", tempo_bpm=120.0, beats_per_bar=4,
        progression=roman_to_harte(["i", "VI", "III", "VII"], 9, "minor"),
        parts=(Part("drums", "drums", "rock"), Part("electric bass", "bass"),
               Part("piano", "chords"), Part("synth lead", "melody")),
        duration_s=8.0, seed=7, first_beat_s=0.25,
    )
    base.update(overrides)
    return SongSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def songs() -> list:
    rng = np.random.default_rng(1234)
    specs = [random_song_spec(rng, 12.0, meter=m) for m in (3, 4, None, None)]
    specs.append(_spec(chords_per_bar=2))
    return [render_song(s, SR) for s in specs]


def test_render_is_deterministic() -> None:
    a = render_song(_spec(), SR)
    b = render_song(_spec(), SR)
    assert np.array_equal(a.audio, b.audio)
    assert a.notes == b.notes and a.beats == b.beats and a.chords == b.chords
    c = render_song(_spec(seed=8), SR)
    assert not np.array_equal(a.audio, c.audio)


def test_random_spec_is_deterministic() -> None:
    a = random_song_spec(np.random.default_rng(3), 10.0)
    b = random_song_spec(np.random.default_rng(3), 10.0)
    assert a == b


def test_audio_shape_level_and_no_clipping(songs: list) -> None:
    for song in songs:
        assert song.audio.dtype == np.float32
        assert song.audio.shape == (round(song.spec.duration_s * SR),)
        assert np.isfinite(song.audio).all()
        peak = float(np.max(np.abs(song.audio)))
        assert 0.85 <= peak <= 0.9 + 1e-6
    stereo = render_song(_spec(duration_s=3.0), SR, stereo=True)
    assert stereo.audio.shape == (3 * SR, 2)
    assert float(np.max(np.abs(stereo.audio))) <= 0.9 + 1e-6
    assert not np.array_equal(stereo.audio[:, 0], stereo.audio[:, 1])  # panned


def test_beats_are_evenly_spaced_with_bar_positions(songs: list) -> None:
    for song in songs:
        times = np.array([b.time_s for b in song.beats])
        numbers = [b.beat_number for b in song.beats]
        n = song.meter
        assert times[0] == pytest.approx(song.spec.first_beat_s)
        np.testing.assert_allclose(np.diff(times), 60.0 / song.tempo_bpm, atol=1e-9)
        assert times[-1] < song.duration_s
        assert song.duration_s - times[-1] <= 60.0 / song.tempo_bpm + 1e-9
        assert numbers == [i % n + 1 for i in range(len(numbers))]
        down = np.array(song.downbeats)
        np.testing.assert_allclose(down, times[::n])
        np.testing.assert_allclose(np.diff(down), n * 60.0 / song.tempo_bpm, atol=1e-9)


def test_chords_tile_the_song_and_change_on_bar_lines(songs: list) -> None:
    for song in songs:
        chords = song.chords
        assert chords[0].start_s == 0.0
        assert chords[-1].end_s == pytest.approx(song.duration_s)
        for prev, nxt in zip(chords, chords[1:]):
            assert prev.end_s == pytest.approx(nxt.start_s)
            assert prev.label != nxt.label
        spb = 60.0 / song.tempo_bpm
        slot = song.meter / song.spec.chords_per_bar * spb
        for seg in chords:
            assert HARTE_RE.match(seg.label), seg.label
            if seg.label == "N":
                assert seg.start_s == 0.0 and seg.end_s == pytest.approx(song.spec.first_beat_s)
                continue
            pos = (seg.start_s - song.spec.first_beat_s) / slot
            assert pos == pytest.approx(round(pos), abs=1e-6)
        if song.spec.chords_per_bar == 1:
            downbeats = np.array(song.downbeats)
            for seg in chords[1:]:
                assert np.min(np.abs(downbeats - seg.start_s)) < 1e-6


def test_key_label_and_truth_dict(songs: list) -> None:
    for song in songs:
        assert song.key_label in KEYS        # musicians' spelling: "Bb major", not "A# major"
        truth = song.truth()
        assert truth["key"] == song.key_label
        assert truth["key"].startswith(truth["tonic"] + " ")
        key = parse_key(song.key_label)
        # every chord root is written on a letter of the key's scale ("Bb:maj" in F major)
        assert all(c.label == "N" or c.label.split(":")[0] in key.scale_names()
                   for c in song.chords), (song.key_label, [c.label for c in song.chords])
        assert truth["meter"] in (3, 4)
        assert truth["beats"][0]["beat_number"] == 1
        assert {"time", "beat_number"} == set(truth["beats"][0])
        assert {"start", "end", "label"} == set(truth["chords"][0])
        for inst in truth["instruments"]:
            assert inst["name"] in INSTRUMENTS
            assert inst["is_drum"] == (inst["gm_program"] is None)
            assert inst["gm_program"] is None or 0 <= inst["gm_program"] <= 127
    assert _spec(tonic=6, mode="minor", progression=("F#:min",)).key_label == "F# minor"
    assert _spec(tonic=10, mode="major", progression=("Bb:maj",)).key_label == "Bb major"


def test_pitched_notes_fit_key_and_chords() -> None:
    song = render_song(_spec(duration_s=10.0), SR)
    spec = song.spec
    scale = {(spec.tonic + d) % 12 for d in MINOR_SCALE}
    pitched = [n for n in song.notes if not n.is_drum]
    drums = [n for n in song.notes if n.is_drum]
    assert pitched and drums
    assert {n.pitch for n in drums} <= {36, 38, 42, 46, 49}
    # Natural-minor progression: every pitched note is in the scale.
    assert all(n.pitch % 12 in scale for n in pitched)
    for n in song.notes:
        assert 0.0 <= n.onset_s < n.offset_s <= song.duration_s + 1e-9
    programs = {n.program for n in pitched}
    assert programs == {INSTRUMENTS[x].gm_program for x in ("electric bass", "piano", "synth lead")}
    # Bass notes are the roots of the chord sounding at their onset.
    for n in pitched:
        if n.program == INSTRUMENTS["electric bass"].gm_program:
            seg = next(c for c in song.chords if c.start_s <= n.onset_s + 1e-6 < c.end_s)
            root = parse_chord(seg.label).root
            assert n.pitch % 12 in {root, (root + 7) % 12}


def test_spectrum_is_in_the_key() -> None:
    """Most of the pitched energy falls on the 7 pitch classes of the key."""
    spec = _spec(parts=(Part("cello", "bass"), Part("string ensemble", "chords"),
                        Part("violin", "melody")), tonic=2, mode="major",
                 progression=roman_to_harte(["I", "V", "vi", "IV"], 2, "major"), duration_s=10.0)
    song = render_song(spec, SR)
    spectrum = np.abs(np.fft.rfft(song.audio)) ** 2
    freqs = np.fft.rfftfreq(song.audio.size, 1.0 / SR)
    band = (freqs > 60) & (freqs < 2000)
    pcs = np.round(12 * np.log2(freqs[band] / 440.0) + 69).astype(int) % 12
    chroma = np.bincount(pcs, weights=spectrum[band], minlength=12)
    in_key = sum(chroma[(2 + d) % 12] for d in MAJOR_SCALE)
    assert in_key / chroma.sum() > 0.9


def test_beat_is_audible_to_a_tracker() -> None:
    librosa = pytest.importorskip("librosa")
    song = render_song(_spec(duration_s=12.0, tempo_bpm=112.0), SR)
    tempo, _ = librosa.beat.beat_track(y=song.audio, sr=SR)
    est = float(np.atleast_1d(tempo)[0])
    assert any(abs(est / 112.0 - m) < 0.05 for m in (0.5, 1.0, 2.0)), est


def test_random_specs_are_varied() -> None:
    rng = np.random.default_rng(0)
    specs = [random_song_spec(rng, 30.0) for _ in range(90)]
    tempos = [s.tempo_bpm for s in specs]
    assert 70.0 <= min(tempos) and max(tempos) <= 160.0
    triple = sum(s.beats_per_bar == 3 for s in specs) / len(specs)
    minor = sum(s.mode == "minor" for s in specs) / len(specs)
    assert 0.15 < triple < 0.5 and 0.3 < minor < 0.7
    assert len({s.tonic for s in specs}) == 12
    assert len({s.style for s in specs}) >= 6
    assert all(0.0 <= s.first_beat_s < 60.0 / s.tempo_bpm for s in specs)
    assert random_song_spec(rng, 5.0, meter=3).beats_per_bar == 3


def test_roman_numerals_are_spelled_in_the_key() -> None:
    assert roman_to_harte(["I", "V", "vi", "IV"], 0, "major") == ("C:maj", "G:maj", "A:min", "F:maj")
    assert roman_to_harte(["i", "VI", "III", "VII"], 9, "minor") == (
        "A:min", "F:maj", "C:maj", "G:maj")
    assert roman_to_harte(["I", "IV", "V"], 10, "major") == ("Bb:maj", "Eb:maj", "F:maj")
    assert roman_to_harte(["I", "iii", "vi"], 9, "major") == ("A:maj", "C#:min", "F#:min")
    assert roman_to_harte(["i", "iv", "VI"], 5, "minor") == ("F:min", "Bb:min", "Db:maj")
    # the synthesizer plays triads only; any spelling of one is fine
    for bad in ("G:7", "N", "C:maj/3"):
        with pytest.raises(ValueError):
            _spec(progression=(bad,))
    assert _spec(progression=("A#:maj", "Bb:min")).progression == ("A#:maj", "Bb:min")


@pytest.mark.parametrize("bad", [
    {"beats_per_bar": 5}, {"tempo_bpm": 10.0}, {"tonic": 12}, {"progression": ()},
    {"progression": ("H:maj",)}, {"chords_per_bar": 2, "beats_per_bar": 3},
    {"first_beat_s": 1.0}, {"duration_s": 0.0},
])
def test_invalid_specs_raise(bad: dict) -> None:
    with pytest.raises(ValueError):
        _spec(**bad)


def test_invalid_parts_raise() -> None:
    with pytest.raises(ValueError):
        Part("kazoo", "melody")
    with pytest.raises(ValueError):
        Part("piano", "drums")
    with pytest.raises(ValueError):
        Part("piano", "chords", "four_on_floor")
