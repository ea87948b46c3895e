"""Label conversion (annotate/labels.py): madmom / essentia key and chord names → the project's
vocabulary (llark.music), and a clip's chords spelled in its key; pure and model-free."""

from __future__ import annotations

import re

import pytest

from annotate.labels import (
    KEYS,
    MADMOM_KEY_LABELS,
    essentia_key,
    harte,
    key_index,
    madmom_key_probabilities,
    spell_analysis,
)
from annotate.types import ClipAnalysis
from llark.music import Beat, ChordSegment, MusicLabelError

NOTE = r"(C|Db|D|Eb|E|F|F#|G|Ab|A|Bb|B)"
HARTE_RE = re.compile(rf"^(N|{NOTE}:(maj|min))$")


def test_keys_are_24_labels_in_c_order() -> None:
    assert len(KEYS) == 24 and len(set(KEYS)) == 24
    assert KEYS[0] == "C major" and KEYS[10] == "Bb major" and KEYS[11] == "B major"
    assert KEYS[12] == "C minor" and key_index("F# minor") == 18 and key_index("A# minor") == 22


def test_essentia_key_output_is_spelled_as_musicians_do() -> None:
    assert essentia_key("Bb", "minor") == "Bb minor"
    assert essentia_key("A#", "major") == "Bb major"
    assert essentia_key("F#", "major") == "F# major"
    assert essentia_key("Eb", "minor") == "D# minor"


def test_madmom_key_probabilities_are_reordered_to_keys() -> None:
    # A one-hot on each madmom class must land on the same key in KEYS order.
    for i, name in enumerate(MADMOM_KEY_LABELS):
        probs = [0.0] * 24
        probs[i] = 1.0
        out = madmom_key_probabilities(probs)
        assert out[key_index(name)] == 1.0 and sum(out) == 1.0
        assert KEYS[out.index(1.0)] == name      # madmom already spells as KEYS does
    assert madmom_key_probabilities([1.0] + [0.0] * 23)[KEYS.index("A major")] == 1.0
    with pytest.raises(MusicLabelError):
        madmom_key_probabilities([0.5, 0.5])


@pytest.mark.parametrize("raw, want", [
    # madmom CRF output (Harte, sharps)
    ("A#:maj", "Bb:maj"), ("C:min", "C:min"), ("N", "N"), ("D#:min", "Eb:min"),
    # essentia ChordsDetection output
    ("Am", "A:min"), ("Bb", "Bb:maj"), ("C#m", "Db:min"), ("Ebm", "Eb:min"), ("Ab", "Ab:maj"),
    ("F#", "F#:maj"),
    # other spellings
    ("Db:maj", "Db:maj"), ("Gb:min", "F#:min"), ("C", "C:maj"), ("X", "N"), ("", "N"),
])
def test_harte_conversion_gives_neutral_spelling(raw: str, want: str) -> None:
    assert harte(raw) == want
    assert HARTE_RE.match(harte(raw))


@pytest.mark.parametrize("bad", ["C:7", "A:dim", "H", "Cmaj7", "A:sus4", "C:maj/3"])
def test_non_triads_raise(bad: str) -> None:
    with pytest.raises(MusicLabelError):
        harte(bad)


def _analysis(key: str, labels: list[str]) -> ClipAnalysis:
    chords = tuple(ChordSegment(float(i), float(i + 1), lab) for i, lab in enumerate(labels))
    return ClipAnalysis("consensus", float(len(labels)), 120.0, 0.9, (Beat(0.5, 1),), (0.5,), 4,
                        0.8, key, 0.7, chords, 0.6)


def test_spell_analysis_spells_chords_in_the_clip_key() -> None:
    out = spell_analysis(_analysis("A# major", ["A#:maj", "D#:maj", "F:maj", "G:min", "N"]))
    assert out.key == "Bb major"
    assert [c.label for c in out.chords] == ["Bb:maj", "Eb:maj", "F:maj", "G:min", "N"]
    out = spell_analysis(_analysis("A major", ["A:maj", "Db:min", "F#:min", "E:maj"]))
    assert [c.label for c in out.chords] == ["A:maj", "C#:min", "F#:min", "E:maj"]
    # everything but the labels is kept
    assert (out.tempo_bpm, out.beats, out.key_confidence) == (120.0, (Beat(0.5, 1),), 0.7)
    # no key: the neutral spelling
    out = spell_analysis(_analysis("", ["A#:maj", "C#:min"]))
    assert out.key == "" and [c.label for c in out.chords] == ["Bb:maj", "Db:min"]
    same = _analysis("C major", ["C:maj", "G:maj"])
    assert spell_analysis(same) is same
