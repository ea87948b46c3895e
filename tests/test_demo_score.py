"""The score renderer (llark/demo/score.py) on one short Bach chorale: labels from the score,
humanised MIDI, a FluidSynth rendering whose labels sit where the notes sound."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("music21")
pytest.importorskip("mido")

from llark.demo.score import (  # noqa: E402
    DRUM_PATTERNS,
    RenderSpec,
    ScoreRejected,
    corpus_paths,
    drum_events,
    humanised_midi,
    load_piece,
    render,
    soundfonts,
    timed_labels,
)
from llark.music import parse_chord  # noqa: E402

CHORALE = "bwv104.6"     # A major, 4/4 with a one-beat pickup, 4 voices, 10 bars


@pytest.fixture(scope="module")
def facts():
    path = next(p for p in corpus_paths("bach") if p.stem == CHORALE)
    return load_piece("bach", path)


def test_labels_come_from_the_score(facts) -> None:
    assert facts.key == "A major"             # three sharps, final bass note A
    assert facts.meter == 4 and facts.n_parts == 4
    # the pickup is beat 4; the first full bar starts at quarter 1
    assert facts.beats_q[:6] == ((0.0, 4), (1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 1))
    downbeats = [q for q, n in facts.beats_q if n == 1]
    assert downbeats[:3] == [1.0, 5.0, 9.0]
    assert np.all(np.diff([q for q, _ in facts.beats_q]) > 0)
    # chordify reduced to Harte: the opening tonic, every label readable, sonorities in order
    assert facts.chords_q[0] == (0.0, 0.5, "A:maj")
    labels = {lab for _, _, lab in facts.chords_q}
    assert "X" in labels and {"A:maj", "D:maj", "E:maj"} <= labels
    for lab in labels - {"X"}:
        parse_chord(lab)
    starts = [s for s, _, _ in facts.chords_q]
    assert starts == sorted(starts)


def test_a_modal_ending_is_refused() -> None:
    path = next(p for p in corpus_paths("bach") if p.stem == "bwv102.7")   # ends on C, 2 flats
    with pytest.raises(ScoreRejected) as err:
        load_piece("bach", path)
    assert err.value.reason == "modal"


def test_only_the_allowed_corpus_folders() -> None:
    with pytest.raises(ValueError):
        corpus_paths("palestrina")


def test_humanised_midi_jitters_timing_and_dynamics(facts, tmp_path: Path) -> None:
    import mido

    spec = RenderSpec(tempo_bpm=100.0, soundfont="unused.sf2", programs=(19,), seed=3)
    humanised_midi(facts, spec, tmp_path / "x.mid")
    mid = mido.MidiFile(str(tmp_path / "x.mid"))
    assert len(mid.tracks) == 1 + facts.n_parts
    ticks, vels = [], []
    for track in mid.tracks[1:]:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                ticks.append(now)
                vels.append(msg.velocity)
    onsets_q = np.array(ticks) / mid.ticks_per_beat
    score_q = np.array([n.onset_q for n in facts.notes])
    assert len(onsets_q) == len(score_q)
    # every onset within 4 standard deviations (12 ms) of a score onset, not all exactly on it
    off_s = np.array([np.min(np.abs(score_q - q)) for q in onsets_q]) * 60.0 / 100.0
    assert off_s.max() < 0.05 and np.mean(off_s > 1e-3) > 0.5
    assert len(set(vels)) > 10


def test_the_drum_kit_marks_the_scores_beats(facts, tmp_path: Path) -> None:
    """Kick on 1 and 3, snare on 2 and 4 of the score's own bars (the pickup is beat 4, so it
    gets a snare), hi-hats in eighths; all on channel 10 as a track of its own."""
    import mido

    spec = RenderSpec(tempo_bpm=100.0, soundfont="unused.sf2", programs=(19,), seed=3,
                      drums="rock")
    events = drum_events(facts, spec, np.random.default_rng(0))
    hits = [(tick / 480, msg.note) for tick, on, msg in events if on]
    assert {msg.channel for _, _, msg in events} == {9}
    near = {note: [q for q, n in hits if n == note] for note in (36, 38, 42)}
    beat_of = dict(facts.beats_q)
    for note, want in ((36, {1, 3}), (38, {2, 4})):
        for q in near[note]:
            beat = min(beat_of, key=lambda b: abs(b - q))
            assert abs(beat - q) < 0.05 and beat_of[beat] in want
    assert len(near[36]) + len(near[38]) == len(facts.beats_q)
    assert len(near[42]) == 2 * len(facts.beats_q)             # every eighth
    humanised_midi(facts, spec, tmp_path / "d.mid")
    assert len(mido.MidiFile(str(tmp_path / "d.mid")).tracks) == 2 + facts.n_parts
    assert set(DRUM_PATTERNS) >= {"rock", "ride", "quarters"}
    with pytest.raises(ValueError, match="drums must be one of"):
        drum_events(facts, RenderSpec(100.0, "x.sf2", (19,), 3, drums="polka"),
                    np.random.default_rng(0))


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not soundfonts(),
                    reason="fluidsynth or a GM soundfont is missing (make system-deps)")
def test_render_puts_sound_on_the_labelled_beats(facts) -> None:
    spec = RenderSpec(tempo_bpm=100.0, soundfont=soundfonts()[0], programs=(19,), seed=1,
                      seconds=8.0)
    out = render(facts, spec)
    assert out.sample_rate_hz == 44100 and out.audio.shape == (8 * 44100,)
    assert out.audio.dtype == np.float32 and np.abs(out.audio).max() == pytest.approx(0.7, 1e-3)
    assert out.key == "A major" and out.meter == 4 and out.tempo_bpm == 100.0
    # beats at 0.6 s per quarter, inside the cut
    assert out.beats[:3] == ((0.0, 4), (0.6, 1), (1.2, 2))
    assert all(t < 8.0 for t, _ in out.beats) and len(out.beats) == 14
    assert out.chords[0] == (0.0, 0.3, "A:maj") and out.chords[-1][1] <= 8.0
    assert (out.beats, out.chords) == timed_labels(facts, 100.0, 8.0)
    # the organ sounds from the first beat: each beat's 100 ms is far above silence
    rms = [np.sqrt(np.mean(out.audio[int(t * 44100):int((t + 0.1) * 44100)] ** 2))
           for t, _ in out.beats]
    assert min(rms) > 0.01
