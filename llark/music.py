"""The project's one music vocabulary: pitch classes and their spelling, keys, Harte chord
labels, chord segments and beats. Synth, annotate, instruct, eval and the schema all import it;
nothing else defines a key or chord parser.

Spelling: names are written the way musicians write them.

* Keys: flats for flat keys, sharps for sharp keys (:data:`KEYS`: ``"Bb major"``,
  ``"Eb major"``, ``"F# minor"``, ``"C# minor"``). Where both spellings need six accidentals
  the sharp one is used (``"F# major"``, ``"D# minor"``), as madmom's key model writes them.
* Chords are spelled in their key (:func:`spell_chord`): a root that belongs to the key's scale
  takes the scale's letter (``"C#:min"`` in A major, ``"Bb:maj"`` in F major, ``"E#"`` in
  F# major), as does the leading tone of a minor key (``"G#"`` in A minor); any other root
  takes flats in a flat key and otherwise the neutral spelling ``C Db D Eb E F F# G Ab A Bb B``
  (borrowed chords such as ``"Bb:maj"`` in D major). Without a key, chords take the neutral
  spelling.
* Parsing accepts every spelling (``"A# major"`` = ``"Bb major"`` = ``"Bb:maj"``), so labels
  written by older versions (sharps only) read the same; :func:`spell_key` and
  :func:`spell_chord` turn any readable label into the musicians' one.

Chords are Harte labels (``"A:min"``, ``"G:7"``, ``"Bb:min7/b3"``, ``"N"`` = no chord, ``"X"`` =
unknown); :func:`majmin` reduces one to the major/minor vocabulary that mir_eval's ``majmin``
comparison scores. Beats carry their 1-based position in the bar (``0`` = unknown).

Bad labels raise :class:`MusicLabelError` (a :class:`llark.errors.LlarkError`, so a record
with an unreadable label becomes a dead letter with this message, not an "unexpected" one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Iterable, Literal, Mapping

from llark.errors import LlarkError

__all__ = [
    "NATURALS", "SHARP_NAMES", "FLAT_NAMES", "NEUTRAL_NAMES", "MODES", "KEYS", "NO_CHORD",
    "UNKNOWN_CHORD", "MAJMIN_QUALITIES", "MusicLabelError", "Key", "HarteChord", "Beat",
    "ChordSegment", "pitch_class", "note_name", "parse_key", "key_name", "spell_key",
    "key_index", "key_relation", "parse_chord", "chord_label", "spell_chord", "majmin",
    "chord_index", "same_chord", "downbeats", "TEMPO_TOLERANCE", "TEMPO_ACC2_FACTORS",
    "tempo_accuracy",
]

Mode = Literal["major", "minor"]
MODES: Final[tuple[str, ...]] = ("major", "minor")

#: Pitch class of each natural note letter.
NATURALS: Final[dict[str, int]] = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_LETTERS: Final[str] = "CDEFGAB"
SHARP_NAMES: Final[tuple[str, ...]] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A",
                                       "A#", "B")
FLAT_NAMES: Final[tuple[str, ...]] = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A",
                                      "Bb", "B")
#: The spelling of a pitch class outside any key (and of roots foreign to a sharp key).
NEUTRAL_NAMES: Final[tuple[str, ...]] = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A",
                                         "Bb", "B")
#: Tonic spelling of the 12 major and the 12 minor keys (index = tonic pitch class).
_MAJOR_TONICS: Final[tuple[str, ...]] = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A",
                                         "Bb", "B")
_MINOR_TONICS: Final[tuple[str, ...]] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A",
                                         "Bb", "B")
_MAJOR_STEPS: Final[tuple[int, ...]] = (0, 2, 4, 5, 7, 9, 11)
_MINOR_STEPS: Final[tuple[int, ...]] = (0, 2, 3, 5, 7, 8, 10)      # natural minor

#: The 24 keys in the order every key probability vector of the project uses: C major .. B
#: major, then C minor .. B minor (by tonic pitch class), spelled as musicians write them.
KEYS: Final[tuple[str, ...]] = (tuple(f"{t} major" for t in _MAJOR_TONICS)
                                + tuple(f"{t} minor" for t in _MINOR_TONICS))

NO_CHORD: Final[str] = "N"
UNKNOWN_CHORD: Final[str] = "X"
MAJMIN_QUALITIES: Final[tuple[str, ...]] = ("maj", "min")


class MusicLabelError(LlarkError, ValueError):
    """A note, key or chord label that cannot be read."""


# --------------------------------------------------------------------------- pitch classes

_ACCIDENTAL_WORDS: Final[dict[str, int]] = {"sharp": 1, "flat": -1}
_ACCIDENTAL_SIGNS: Final[dict[str, int]] = {"#": 1, "♯": 1, "b": -1, "♭": -1}
_NOTE_RE = re.compile(r"\s*([A-Ga-g])((?:[#♯b♭])*|[\s-]*(?:sharp|flat))\s*", re.IGNORECASE)


def pitch_class(name: str) -> int:
    """A note name → pitch class 0..11: ``"F#"``, ``"Gb"``, ``"F♯"``, ``"G flat"``,
    ``"F-sharp"``, ``"E#"``, ``"Cb"``, ``"C##"``; the letter may be lower case (``"bb"`` = B♭)."""
    m = _NOTE_RE.fullmatch(name)
    if m is None:
        raise MusicLabelError(f"not a note name: {name!r} (expected e.g. 'F#', 'Bb', 'E')")
    acc = m.group(2).strip(" -").lower()
    shift = _ACCIDENTAL_WORDS[acc] if acc in _ACCIDENTAL_WORDS else \
        sum(_ACCIDENTAL_SIGNS[c] for c in acc)
    return (NATURALS[m.group(1).upper()] + shift) % 12


def _check_pc(pc: int) -> int:
    if not isinstance(pc, int) or not 0 <= pc <= 11:
        raise MusicLabelError(f"pitch class must be an integer 0..11, got {pc!r}")
    return pc


def _spell(pc: int, letter: str) -> str:
    """``pc`` written on ``letter`` (``_spell(10, "B") == "Bb"``, ``_spell(5, "E") == "E#"``)."""
    diff = (pc - NATURALS[letter] + 6) % 12 - 6          # -6..5
    return letter + ("#" * diff if diff > 0 else "b" * -diff)


# --------------------------------------------------------------------------- keys

@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class and mode. :attr:`name` is its musicians' spelling."""

    tonic: int          # pitch class 0..11
    mode: Mode          # "major" / "minor"

    def __post_init__(self) -> None:
        _check_pc(self.tonic)
        if self.mode not in MODES:
            raise MusicLabelError(f"mode must be 'major' or 'minor', got {self.mode!r}")

    @property
    def name(self) -> str:
        """``"Bb major"``, ``"C# minor"``."""
        return KEYS[self.index]

    @property
    def tonic_name(self) -> str:
        return (_MAJOR_TONICS if self.mode == "major" else _MINOR_TONICS)[self.tonic]

    @property
    def index(self) -> int:
        """Position in :data:`KEYS`."""
        return self.tonic + (12 if self.mode == "minor" else 0)

    @property
    def uses_flats(self) -> bool:
        """Is the key signature made of flats (F major, D minor, Bb major...)?"""
        return any("b" in name[1:] for name in self.scale_names())

    def relative(self) -> "Key":
        if self.mode == "major":
            return Key((self.tonic + 9) % 12, "minor")
        return Key((self.tonic + 3) % 12, "major")

    def scale_names(self) -> tuple[str, ...]:
        """The seven scale degrees spelled on consecutive letters (natural minor for minor)."""
        first = self.tonic_name[0]
        start = _LETTERS.index(first)
        steps = _MAJOR_STEPS if self.mode == "major" else _MINOR_STEPS
        return tuple(_spell((self.tonic + s) % 12, _LETTERS[(start + i) % 7])
                     for i, s in enumerate(steps))

    def __str__(self) -> str:
        return self.name


_KEY_RE = re.compile(r"\s*(.+?)\s*(?::|\s)\s*(major|minor|maj|min)\s*", re.IGNORECASE)
_KEY_SHORT_RE = re.compile(r"\s*([A-Ga-g](?:[#♯b♭])*)(m)?\s*")


def parse_key(label: str) -> Key:
    """A key label in any spelling → :class:`Key`: ``"F# minor"``, ``"Gb major"``,
    ``"A# major"``, ``"Bb:maj"``, ``"bb min"``, ``"C"`` (= C major), ``"F#m"`` (= F# minor)."""
    if not isinstance(label, str):
        raise MusicLabelError(f"not a key label: {label!r}")
    m = _KEY_RE.fullmatch(label)
    if m is not None:
        mode: Mode = "minor" if m.group(2).lower().startswith("min") else "major"
        return Key(pitch_class(m.group(1)), mode)
    m = _KEY_SHORT_RE.fullmatch(label)
    if m is not None and (m.group(1)[0].isupper()):
        return Key(pitch_class(m.group(1)), "minor" if m.group(2) else "major")
    raise MusicLabelError(f"not a key label: {label!r} (expected e.g. 'F# minor', 'Bb major' "
                          "or 'Bb:maj')")


def key_name(tonic: int, mode: str) -> str:
    """``key_name(10, "major") == "Bb major"``, ``key_name(6, "minor") == "F# minor"``."""
    return Key(_check_pc(tonic), mode).name  # type: ignore[arg-type]


def spell_key(label: str) -> str:
    """Any readable key label → the musicians' spelling (``"A# major"`` → ``"Bb major"``);
    ``""`` (no key) stays ``""``."""
    if not label.strip():
        return ""
    return parse_key(label).name


def key_index(label: str) -> int:
    """Position of a key (any spelling) in :data:`KEYS`."""
    return parse_key(label).index


def key_relation(a: str, b: str) -> str:
    """How two keys relate: ``same``, ``fifth``, ``relative``, ``parallel`` or ``other`` (the
    categories of the MIREX weighted key score; ``fifth`` in either direction)."""
    ka, kb = parse_key(a), parse_key(b)
    if ka == kb:
        return "same"
    if ka.mode == kb.mode and (kb.tonic - ka.tonic) % 12 in (5, 7):
        return "fifth"
    if ka.relative() == kb:
        return "relative"
    if ka.tonic == kb.tonic:
        return "parallel"
    return "other"


def _as_key(key: "Key | str | None") -> Key | None:
    if key is None or isinstance(key, Key):
        return key
    return parse_key(key) if key.strip() else None


def note_name(pc: int, key: "Key | str | None" = None) -> str:
    """Pitch class → name, spelled in ``key`` (see the module doc); neutral without a key."""
    _check_pc(pc)
    k = _as_key(key)
    if k is None:
        return NEUTRAL_NAMES[pc]
    for name in k.scale_names():
        if pitch_class(name) == pc:
            return name
    if k.mode == "minor" and pc == (k.tonic + 11) % 12:     # harmonic minor's leading tone
        leading = _spell(pc, k.scale_names()[6][0])
        if len(leading) == 2:                                # G# in A minor, not C## in D#
            return leading
    return FLAT_NAMES[pc] if k.uses_flats else NEUTRAL_NAMES[pc]


# --------------------------------------------------------------------------- chords

#: Harte shorthands by the triad they contain (used by :attr:`HarteChord.triad`).
_TRIAD_OF_SHORTHAND: Final[dict[str, str]] = {
    "maj": "maj", "min": "min", "dim": "dim", "aug": "aug", "maj7": "maj", "min7": "min",
    "7": "maj", "dim7": "dim", "hdim7": "dim", "minmaj7": "min", "maj6": "maj", "min6": "min",
    "9": "maj", "maj9": "maj", "min9": "min", "11": "maj", "min11": "min", "13": "maj",
    "maj13": "maj", "min13": "min", "sus2": "sus", "sus4": "sus", "1": "other", "5": "other",
}
_HARTE_RE = re.compile(r"([A-G](?:[#b])*)(?::([A-Za-z0-9]*)?(\([^)]*\))?)?(?:/([#b]*\d+))?")
_SHORT_CHORD_RE = re.compile(r"([A-G](?:[#♯b♭])*)(m|min|maj|M)?")


@dataclass(frozen=True)
class HarteChord:
    """A parsed chord label: root pitch class (``-1`` for ``N``/``X``), Harte shorthand
    (``"maj"``, ``"min7"``; ``""`` with a bare component list or for ``N``/``X``), the component
    list text (``"(1,b3,5)"``) and the bass degree (``"b3"``; ``""`` = root position)."""

    root: int
    shorthand: str
    components: str = ""
    bass: str = ""
    no_chord: bool = False          # N (True) vs X (unknown, root -1 and no_chord False)

    @property
    def triad(self) -> str:
        """``"maj"``, ``"min"``, ``"dim"``, ``"aug"``, ``"sus"``, ``"other"`` or ``"none"``."""
        if self.root < 0:
            return "none"
        if self.shorthand:
            return _TRIAD_OF_SHORTHAND[self.shorthand]
        degrees = {d.strip() for d in self.components.strip("()").split(",")}   # "*3" = omitted
        if "b3" in degrees:
            return "dim" if "b5" in degrees else "min"
        if "3" in degrees:
            return "aug" if "#5" in degrees else "maj"
        return "other"


def parse_chord(label: str) -> HarteChord:
    """A chord label → :class:`HarteChord`. Reads Harte (``"A:min"``, ``"Bb:maj"``, ``"G:7"``,
    ``"C:min7/b3"``, ``"C:(1,3,5)"``, ``"C"`` = C major), ``"N"``, ``"X"``, and essentia's short
    forms (``"Am"``, ``"Bb"``, ``"C#m"``)."""
    if not isinstance(label, str):
        raise MusicLabelError(f"not a chord label: {label!r}")
    text = label.strip()
    if text in (NO_CHORD, ""):
        return HarteChord(-1, "", no_chord=True)
    if text == UNKNOWN_CHORD:
        return HarteChord(-1, "")
    m = _HARTE_RE.fullmatch(text)
    if m is not None and (":" in text or "/" in text or m.group(2) is None):
        shorthand = m.group(2) or ""
        components = m.group(3) or ""
        if shorthand and shorthand not in _TRIAD_OF_SHORTHAND:
            raise MusicLabelError(f"unknown chord quality {shorthand!r} in {label!r}")
        if not shorthand and not components:
            shorthand = "maj"
        return HarteChord(pitch_class(m.group(1)), shorthand, components, m.group(4) or "")
    m = _SHORT_CHORD_RE.fullmatch(text)
    if m is not None:
        quality = "min" if m.group(2) in ("m", "min") else "maj"
        return HarteChord(pitch_class(m.group(1)), quality)
    raise MusicLabelError(f"not a chord label: {label!r} (expected Harte, e.g. 'A:min', "
                          "'Bb:maj', 'G:7', or 'N')")


def chord_label(root: int, quality: str, key: "Key | str | None" = None) -> str:
    """A Harte label for a root pitch class and a shorthand, spelled in ``key``:
    ``chord_label(10, "maj", "F major") == "Bb:maj"``."""
    _check_pc(root)
    if quality not in _TRIAD_OF_SHORTHAND:
        raise MusicLabelError(f"unknown chord quality {quality!r}")
    return f"{note_name(root, key)}:{quality}"


def spell_chord(label: str, key: "Key | str | None" = None) -> str:
    """Any readable chord label → Harte, its root spelled in ``key`` (module doc); the quality,
    components and bass are kept. ``"A#:maj"`` in F major → ``"Bb:maj"``; ``"Bbm"`` →
    ``"Bb:min"``; ``"N"``/``"X"`` unchanged."""
    c = parse_chord(label)
    if c.root < 0:
        return NO_CHORD if c.no_chord else UNKNOWN_CHORD
    out = f"{note_name(c.root, key)}:{c.shorthand}{c.components}"
    return out + (f"/{c.bass}" if c.bass else "")


def majmin(label: str, key: "Key | str | None" = None) -> str | None:
    """Reduce a label to the major/minor vocabulary (``"G:7"`` → ``"G:maj"``,
    ``"A:min7/b3"`` → ``"A:min"``, ``"N"`` → ``"N"``); ``None`` for chords that are neither
    (``dim``, ``aug``, ``sus``, power chords, ``X``), which mir_eval's ``majmin`` leaves out."""
    c = parse_chord(label)
    if c.root < 0:
        return NO_CHORD if c.no_chord else None
    if c.triad not in MAJMIN_QUALITIES:
        return None
    return f"{note_name(c.root, key)}:{c.triad}"


def chord_index(label: str) -> int:
    """0..11 major (root C..B), 12..23 minor, 24 = no chord. Raises for labels without a
    major/minor reduction."""
    reduced = majmin(label)
    if reduced is None:
        raise MusicLabelError(f"{label!r} is neither a major/minor chord nor N")
    if reduced == NO_CHORD:
        return 24
    c = parse_chord(reduced)
    return c.root + (12 if c.triad == "min" else 0)


def same_chord(a: str, b: str) -> bool:
    """Same major/minor chord (or both ``N``), whatever the spelling."""
    return chord_index(a) == chord_index(b)


# --------------------------------------------------------------------------- time

@dataclass(frozen=True)
class Beat:
    """A beat at ``time_s`` (seconds); ``beat_number`` is its 1-based position in the bar
    (1 = downbeat, 0 = unknown)."""

    time_s: float
    beat_number: int

    @classmethod
    def from_row(cls, r: Mapping[str, object]) -> "Beat":
        return cls(float(r["time_s"]), int(r["beat_number"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ChordSegment:
    """A chord (Harte label, ``"N"`` = none) sounding over ``[start_s, end_s)`` seconds."""

    start_s: float
    end_s: float
    label: str

    @classmethod
    def from_row(cls, r: Mapping[str, object]) -> "ChordSegment":
        return cls(float(r["start_s"]), float(r["end_s"]), str(r["label"]))  # type: ignore[arg-type]


def downbeats(beats: Iterable[Beat]) -> tuple[float, ...]:
    """Times of the beats that start a bar."""
    return tuple(b.time_s for b in beats if b.beat_number == 1)


# --------------------------------------------------------------------------- tempo accuracy

#: Acc1 / Acc2 tolerance: an estimate within 4 % of the reference (Gouyon et al., 2006, the
#: MIREX tempo measures the LLark paper reports on GiantSteps Tempo).
TEMPO_TOLERANCE: Final[float] = 0.04
#: Acc2 also counts the metrical-level errors: the reference times 2, 1/2, 3 or 1/3.
TEMPO_ACC2_FACTORS: Final[tuple[float, ...]] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)


def tempo_accuracy(reference_bpm: float, estimate_bpm: float | None,
                   tolerance: float = TEMPO_TOLERANCE) -> tuple[bool, bool]:
    """(Acc1, Acc2) of one tempo estimate: Acc1 when ``|estimate - reference| <= tolerance *
    reference``; Acc2 when that holds for the reference times one of
    :data:`TEMPO_ACC2_FACTORS`. No estimate, or a reference that is not positive, scores
    neither."""
    if estimate_bpm is None or not reference_bpm > 0 or not estimate_bpm > 0:
        return False, False

    def near(target: float) -> bool:
        return abs(estimate_bpm - target) / target <= tolerance

    return near(reference_bpm), any(near(reference_bpm * f) for f in TEMPO_ACC2_FACTORS)
