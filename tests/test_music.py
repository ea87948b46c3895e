"""llark.music: the one music vocabulary (spelling, key and chord parsing, reduction)."""

from __future__ import annotations

import mir_eval
import pytest

from llark.errors import LlarkError
from llark.music import (
    KEYS,
    Beat,
    ChordSegment,
    Key,
    MusicLabelError,
    chord_index,
    chord_label,
    downbeats,
    key_index,
    key_name,
    key_relation,
    majmin,
    note_name,
    parse_chord,
    parse_key,
    pitch_class,
    same_chord,
    spell_chord,
    spell_key,
)


@pytest.mark.parametrize("name,pc", [("C", 0), ("F#", 6), ("Gb", 6), ("F♯", 6), ("G♭", 6),
                                     ("F sharp", 6), ("G-flat", 6), ("E#", 5), ("Cb", 11),
                                     ("C##", 2), ("Bbb", 9), ("bb", 10), ("a", 9)])
def test_pitch_class_reads_every_spelling(name: str, pc: int) -> None:
    assert pitch_class(name) == pc


@pytest.mark.parametrize("bad", ["H", "", "C#b#x", "Do", "12"])
def test_pitch_class_rejects_nonsense_with_a_typed_error(bad: str) -> None:
    with pytest.raises(MusicLabelError, match="not a note name"):
        pitch_class(bad)
    assert issubclass(MusicLabelError, LlarkError) and issubclass(MusicLabelError, ValueError)


def test_keys_are_spelled_as_musicians_write_them() -> None:
    assert KEYS[:12] == ("C major", "Db major", "D major", "Eb major", "E major", "F major",
                         "F# major", "G major", "Ab major", "A major", "Bb major", "B major")
    assert KEYS[12:] == ("C minor", "C# minor", "D minor", "D# minor", "E minor", "F minor",
                         "F# minor", "G minor", "G# minor", "A minor", "Bb minor", "B minor")
    # every key in KEYS order: index = tonic (+12 for minor), and the label reads back
    for i, label in enumerate(KEYS):
        k = parse_key(label)
        assert k.index == i and k.name == label and key_index(label) == i
    # no sharp-only names left where a flat key is meant
    assert not any("A#" in k or "D# major" in k for k in KEYS)


@pytest.mark.parametrize("raw,want", [
    ("A# major", "Bb major"), ("Bb major", "Bb major"), ("Bb:maj", "Bb major"),
    ("bb min", "Bb minor"), ("A#:min", "Bb minor"), ("Gb major", "F# major"),
    ("D# major", "Eb major"), ("Eb minor", "D# minor"), ("F sharp minor", "F# minor"),
    ("C#:maj", "Db major"), ("Db minor", "C# minor"), ("C", "C major"), ("F#m", "F# minor"),
    ("  E   minor ", "E minor"), ("", ""),
])
def test_spell_key_accepts_both_spellings(raw: str, want: str) -> None:
    assert spell_key(raw) == want
    parts = raw.split()
    if len(parts) == 2 and len(parts[0]) <= 2 and parts[1] in ("major", "minor"):
        assert mir_eval.key.weighted_score(raw, want) == 1.0     # same key to mir_eval


@pytest.mark.parametrize("bad", ["H major", "C dorian", "major", "C# minor minor", "c", "X"])
def test_parse_key_rejects_what_it_cannot_read(bad: str) -> None:
    with pytest.raises(MusicLabelError):
        parse_key(bad)


def test_key_objects() -> None:
    assert key_name(10, "major") == "Bb major" and key_name(1, "minor") == "C# minor"
    assert Key(9, "minor").relative() == Key(0, "major")
    assert Key(3, "major").scale_names() == ("Eb", "F", "G", "Ab", "Bb", "C", "D")
    assert Key(6, "major").scale_names()[-1] == "E#"
    assert Key(5, "major").uses_flats and not Key(7, "major").uses_flats
    with pytest.raises(MusicLabelError):
        Key(12, "major")
    with pytest.raises(MusicLabelError):
        Key(0, "dorian")  # type: ignore[arg-type]


@pytest.mark.parametrize("label,key,want", [
    ("A#:maj", "F major", "Bb:maj"),       # IV of F
    ("D#:maj", "Bb major", "Eb:maj"),      # IV of Bb
    ("C#:min", "A major", "C#:min"),       # iii of A: the key's own sharp
    ("Db:min", "A major", "C#:min"),       # respelled into the key
    ("A#:maj", "D major", "Bb:maj"),       # borrowed bVI of D: flat, not A#
    ("G#:maj", "C minor", "Ab:maj"),       # VI of C minor
    ("Ab:dim", "A minor", "G#:dim"),       # leading tone of A minor
    ("F:maj", "F# major", "E#:maj"),       # the scale's letter even when it reads oddly
    ("G:7/3", "C minor", "G:7/3"),         # quality and bass kept
    ("Bbm", None, "Bb:min"),               # essentia's short form, neutral spelling
    ("C#", None, "Db:maj"),
    ("F#:min", "", "F#:min"),
    ("N", "C major", "N"), ("X", None, "X"),
])
def test_spell_chord_uses_the_key_spelling(label: str, key: str | None, want: str) -> None:
    assert spell_chord(label, key) == want
    if want not in ("N", "X"):
        assert mir_eval.chord.encode(want)[0] == mir_eval.chord.encode(spell_chord(label))[0]


def test_every_diatonic_triad_of_every_key_is_spelled_on_the_scale_letters() -> None:
    for label in KEYS:
        k = parse_key(label)
        names = k.scale_names()
        assert len({n[0] for n in names}) == 7          # seven letters, each once
        for name in names:
            assert note_name(pitch_class(name), k) == name
            assert spell_chord(f"{name}:maj", k).split(":")[0] == name
        # a flat key writes no sharp (but a minor key's leading tone: C# in D minor), a sharp
        # key writes no flat in its scale
        written = {note_name(pc, k) for pc in range(12)
                   if not (k.mode == "minor" and pc == (k.tonic + 11) % 12)}
        if k.mode == "minor":
            assert note_name((k.tonic + 11) % 12, k)[0] == names[6][0] \
                or label in ("D# minor", "G# minor")      # Cx, Fx: written D, G
        if k.uses_flats:
            assert not any("#" in n for n in written), (label, written)
        else:
            assert not any("b" in n[1:] for n in names), (label, names)


@pytest.mark.parametrize("label,root,triad", [
    ("A:min", 9, "min"), ("Bb:maj", 10, "maj"), ("C", 0, "maj"), ("G:7", 7, "maj"),
    ("Bb:min7/b3", 10, "min"), ("B:hdim7", 11, "dim"), ("C:aug", 0, "aug"),
    ("D:sus4", 2, "sus"), ("C:(1,b3,5)", 0, "min"), ("C:(1,3,5)", 0, "maj"),
    ("C:(1,*3,5)", 0, "other"), ("Am", 9, "min"), ("C#m", 1, "min"), ("Bb", 10, "maj"),
    ("N", -1, "none"), ("X", -1, "none"), ("E#:min", 5, "min"),
])
def test_parse_chord(label: str, root: int, triad: str) -> None:
    c = parse_chord(label)
    assert (c.root, c.triad) == (root, triad)


@pytest.mark.parametrize("bad", ["H:maj", "C:blues", "A:min/x", "Amaj7m", "C::maj"])
def test_parse_chord_rejects_nonsense(bad: str) -> None:
    with pytest.raises(MusicLabelError):
        parse_chord(bad)


def test_majmin_reduction_matches_mir_eval() -> None:
    """majmin keeps exactly the chords mir_eval's majmin comparison scores, with the same
    root and third."""
    labels = ["A:min", "G:7", "C:maj7", "D:min7/b3", "Bb:maj(9)", "F#:min6", "B:dim", "C:aug",
              "D:sus4", "N", "E:hdim7", "Ab:9", "C:minmaj7"]
    for label in labels:
        reduced = majmin(label)
        score = mir_eval.chord.majmin([label], [reduced or "N"])[0]
        if reduced is None:
            assert score < 0, label          # mir_eval leaves it out too
        else:
            assert score == 1.0, (label, reduced)
    assert majmin("A#:maj", "F major") == "Bb:maj"


def test_chord_index_and_same_chord() -> None:
    assert chord_index("C:maj") == 0 and chord_index("B:min") == 23 and chord_index("N") == 24
    assert chord_index("A#:maj") == chord_index("Bb") == 10
    assert same_chord("Bbm", "A#:min") and not same_chord("A:min", "A:maj")
    assert same_chord("G:7", "G:maj")
    with pytest.raises(MusicLabelError):
        chord_index("B:dim")
    assert chord_label(10, "maj", "F major") == "Bb:maj" and chord_label(1, "min") == "Db:min"


def test_key_relation_is_the_mirex_categories() -> None:
    assert key_relation("C major", "C major") == "same"
    assert key_relation("C major", "G major") == key_relation("C major", "F major") == "fifth"
    assert key_relation("C major", "A minor") == key_relation("A minor", "C major") == "relative"
    assert key_relation("C major", "C minor") == "parallel"
    assert key_relation("C major", "D major") == "other"
    assert key_relation("A# major", "Bb major") == "same"
    weights = {"same": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2, "other": 0.0}
    for a in ("C major", "A minor", "Eb major", "F# minor"):
        for b in KEYS:
            if key_relation(a, b) == "fifth" and (parse_key(b).tonic - parse_key(a).tonic) % 12 == 5:
                continue     # mir_eval scores the fifth above only (b a fifth below a: 0)
            assert weights[key_relation(a, b)] == mir_eval.key.weighted_score(a, b), (a, b)


def test_beats_and_segments() -> None:
    beats = (Beat(0.5, 1), Beat(1.0, 2), Beat(1.5, 1), Beat(2.0, 0))
    assert downbeats(beats) == (0.5, 1.5)
    assert Beat.from_row({"time_s": 1, "beat_number": 2}) == Beat(1.0, 2)
    assert ChordSegment.from_row({"start_s": 0, "end_s": 2.5, "label": "Bb:maj"}) == \
        ChordSegment(0.0, 2.5, "Bb:maj")
