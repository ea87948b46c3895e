"""Label conversion (annotate/labels.py): madmom / essentia key and chord names → Harte and
"F# minor", pure and model-free."""

from __future__ import annotations

import re

import pytest

from annotate.labels import (
    KEYS,
    MADMOM_KEY_LABELS,
    LabelError,
    chord_index,
    essentia_key,
    harte,
    key_index,
    key_relation,
    madmom_key_probabilities,
    normalize_key,
    parse_chord,
    parse_key,
    same_chord,
)

KEY_RE = re.compile(r"^(C|C#|D|D#|E|F|F#|G|G#|A|A#|B) (major|minor)$")
HARTE_RE = re.compile(r"^(N|(C|C#|D|D#|E|F|F#|G|G#|A|A#|B):(maj|min))$")


def test_keys_are_24_canonical_labels_in_c_order() -> None:
    assert len(KEYS) == 24 and len(set(KEYS)) == 24
    assert all(KEY_RE.match(k) for k in KEYS)
    assert KEYS[0] == "C major" and KEYS[11] == "B major" and KEYS[12] == "C minor"
    assert key_index("F# minor") == 18


@pytest.mark.parametrize("raw, want", [
    ("Bb major", "A# major"), ("Db major", "C# major"), ("Eb major", "D# major"),
    ("Ab major", "G# major"), ("C# minor", "C# minor"), ("Gb minor", "F# minor"),
    ("f# min", "F# minor"), ("A maj", "A major"), ("  E   minor ", "E minor"),
    ("Cb major", "B major"), ("E# minor", "F minor"),
])
def test_normalize_key_spells_sharps(raw: str, want: str) -> None:
    assert normalize_key(raw) == want


@pytest.mark.parametrize("bad", ["", "H major", "C dorian", "C", "C major minor", "minor C"])
def test_unreadable_keys_raise_label_error(bad: str) -> None:
    with pytest.raises(LabelError):
        parse_key(bad)


def test_essentia_key_output() -> None:
    assert essentia_key("Bb", "minor") == "A# minor"
    assert essentia_key("F#", "major") == "F# major"


def test_madmom_key_probabilities_are_reordered_to_keys() -> None:
    # A one-hot on each madmom class must land on the same key in KEYS order.
    for i, name in enumerate(MADMOM_KEY_LABELS):
        probs = [0.0] * 24
        probs[i] = 1.0
        out = madmom_key_probabilities(probs)
        assert out[key_index(name)] == 1.0 and sum(out) == 1.0
    assert madmom_key_probabilities([1.0] + [0.0] * 23)[KEYS.index("A major")] == 1.0
    with pytest.raises(LabelError):
        madmom_key_probabilities([0.5, 0.5])


@pytest.mark.parametrize("raw, want", [
    # madmom CRF output (Harte, sharps)
    ("A#:maj", "A#:maj"), ("C:min", "C:min"), ("N", "N"),
    # essentia ChordsDetection output
    ("Am", "A:min"), ("Bb", "A#:maj"), ("C#m", "C#:min"), ("Ebm", "D#:min"), ("Ab", "G#:maj"),
    ("F#", "F#:maj"),
    # other spellings
    ("Db:maj", "C#:maj"), ("Gb:min", "F#:min"), ("C", "C:maj"), ("X", "N"), ("", "N"),
])
def test_harte_conversion(raw: str, want: str) -> None:
    assert harte(raw) == want
    assert HARTE_RE.match(harte(raw))


@pytest.mark.parametrize("bad", ["C:7", "A:dim", "H", "Cmaj7", "A:sus4", "Bbb"])
def test_non_triads_raise(bad: str) -> None:
    with pytest.raises(LabelError):
        parse_chord(bad)


def test_chord_index_and_equivalence() -> None:
    assert chord_index("C:maj") == 0 and chord_index("B:maj") == 11
    assert chord_index("C:min") == 12 and chord_index("N") == 24
    assert same_chord("Bb", "A#:maj") and same_chord("Am", "A:min")
    assert not same_chord("A:maj", "A:min")


@pytest.mark.parametrize("a, b, rel", [
    ("C major", "C major", "same"), ("C major", "G major", "fifth"),
    ("C major", "F major", "fifth"), ("C major", "A minor", "relative"),
    ("A minor", "C major", "relative"), ("C major", "C minor", "parallel"),
    ("C major", "D major", "other"), ("A minor", "E minor", "fifth"),
])
def test_key_relation(a: str, b: str, rel: str) -> None:
    assert key_relation(a, b) == rel
