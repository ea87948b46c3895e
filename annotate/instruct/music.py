"""Small music vocabulary shared by rendering, the template writer and grounding: note names,
keys, Harte chord labels in readable form, and an instrument vocabulary with families."""

from __future__ import annotations

import re
from dataclasses import dataclass

from annotate.instruct.facts import FactsError

_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1}


def pitch_class(letter: str, accidental: str = "") -> int:
    """``("F", "#")`` / ``("G", "flat")`` → pitch class 0..11."""
    acc = accidental.strip().lower().lstrip("-").strip()
    if letter.upper() not in _PC or acc not in _ACCIDENTAL:
        raise FactsError(f"not a note name: {letter}{accidental}")
    return (_PC[letter.upper()] + _ACCIDENTAL[acc]) % 12


def parse_note(name: str) -> int:
    """``"F#"``, ``"Gb"``, ``"F sharp"`` → pitch class."""
    m = re.fullmatch(r"\s*([A-Ga-g])\s*(#|♯|b|♭|-?sharp|-?flat)?\s*", name)
    if not m:
        raise FactsError(f"not a note name: {name!r}")
    return pitch_class(m.group(1), m.group(2) or "")


@dataclass(frozen=True)
class Key:
    tonic: int          # pitch class
    mode: str           # "major" / "minor"

    def relative(self) -> "Key":
        if self.mode == "major":
            return Key((self.tonic + 9) % 12, "minor")
        return Key((self.tonic + 3) % 12, "major")


def parse_key(label: str) -> Key:
    """The schema's key strings (``"F# minor"``, ``"Bb major"``) → :class:`Key`."""
    parts = label.split()
    if len(parts) != 2 or parts[1].lower() not in ("major", "minor", "maj", "min"):
        raise FactsError(f"not a key label: {label!r} (expected e.g. 'F# minor')")
    mode = "major" if parts[1].lower().startswith("maj") else "minor"
    return Key(parse_note(parts[0]), mode)


# --------------------------------------------------------------------------- chords

@dataclass(frozen=True)
class Chord:
    root: int           # pitch class; -1 for "no chord"
    quality: str        # "maj", "min", "dim", "aug", "sus", "none"
    label: str          # the Harte label it came from


_QUALITY_WORDS = {"maj": "major", "min": "minor", "dim": "diminished", "aug": "augmented",
                  "sus": "suspended"}
_EXTENSION_WORDS = {"7": "dominant seventh", "maj7": "major seventh", "min7": "minor seventh",
                    "dim7": "diminished seventh", "hdim7": "half-diminished seventh",
                    "maj6": "major sixth", "min6": "minor sixth", "9": "dominant ninth",
                    "sus4": "suspended fourth", "sus2": "suspended second"}


def parse_harte(label: str) -> Chord:
    """A Harte label (``"A:min"``, ``"C:maj"``, ``"G:7"``, ``"Bb:min7/b3"``, ``"N"``) → :class:`Chord`
    reduced to its triad quality."""
    label = label.strip()
    if label in ("N", "X", ""):
        return Chord(-1, "none", label or "N")
    root_text, _, rest = label.partition(":")
    quality_text = (rest or "maj").split("/")[0].split("(")[0]
    root = parse_note(root_text)
    if quality_text.startswith(("hdim", "dim")):
        quality = "dim"
    elif quality_text.startswith("aug"):
        quality = "aug"
    elif quality_text.startswith("sus"):
        quality = "sus"
    elif quality_text.startswith("min"):
        quality = "min"
    else:   # maj, 7, maj7, 9, 6, ...
        quality = "maj"
    return Chord(root, quality, label)


def note_spelling(label_root: str) -> str:
    """Keep the spelling of the annotation (``"Bb"`` stays ``"Bb"``), normalized case."""
    return label_root[:1].upper() + label_root[1:]


def readable_chord(label: str) -> str:
    """``"A:min"`` → ``"A minor"``, ``"G:7"`` → ``"G dominant seventh"``, ``"N"`` → ``"no chord"``."""
    label = label.strip()
    if label in ("N", "X", ""):
        return "no chord"
    root_text, _, rest = label.partition(":")
    parse_note(root_text)                      # raises on nonsense
    quality_text = (rest or "maj").split("/")[0]
    words = _EXTENSION_WORDS.get(quality_text) or _QUALITY_WORDS.get(quality_text) or quality_text
    return f"{note_spelling(root_text)} {words}"


# --------------------------------------------------------------------------- instruments

#: canonical instrument → words that name it in text (singular and plural forms are matched).
INSTRUMENT_WORDS: dict[str, tuple[str, ...]] = {
    "piano": ("piano", "grand piano", "pianist"),
    "harpsichord": ("harpsichord",),
    "organ": ("organ", "church organ", "hammond"),
    "violin": ("violin", "violinist", "fiddle"),
    "viola": ("viola",),
    "cello": ("cello", "violoncello", "cellist"),
    "double bass": ("double bass", "contrabass", "upright bass", "string bass"),
    "bass guitar": ("bass guitar", "electric bass"),
    "guitar": ("guitar", "guitarist", "acoustic guitar", "electric guitar"),
    "harp": ("harp",),
    "flute": ("flute", "piccolo", "flautist"),
    "oboe": ("oboe",),
    "clarinet": ("clarinet",),
    "bassoon": ("bassoon",),
    "saxophone": ("saxophone", "sax"),
    "horn": ("french horn", "horn"),
    "trumpet": ("trumpet",),
    "trombone": ("trombone",),
    "tuba": ("tuba",),
    "drums": ("drums", "drum kit", "drum", "drummer"),
    "vocals": ("vocals", "vocal", "voice", "voices", "singer", "singing", "vocalist", "choir",
               "sung"),
    "synthesizer": ("synthesizer", "synth"),
}
#: families a listener may name instead of a member.
INSTRUMENT_FAMILIES: dict[str, tuple[str, ...]] = {
    "strings": ("violin", "viola", "cello", "double bass", "harp"),
    "string": ("violin", "viola", "cello", "double bass", "harp"),
    "woodwinds": ("flute", "oboe", "clarinet", "bassoon", "saxophone"),
    "woodwind": ("flute", "oboe", "clarinet", "bassoon", "saxophone"),
    "winds": ("flute", "oboe", "clarinet", "bassoon", "saxophone", "horn"),
    "brass": ("horn", "trumpet", "trombone", "tuba"),
    "keyboard": ("piano", "harpsichord", "organ", "synthesizer"),
    "keyboards": ("piano", "harpsichord", "organ", "synthesizer"),
}
#: what a General MIDI program name (see facts.GM_PROGRAMS) counts as.
_PROGRAM_CANON = (
    ("harpsichord", "harpsichord"), ("piano", "piano"), ("organ", "organ"),
    ("contrabass", "double bass"), ("violin", "violin"), ("viola", "viola"), ("cello", "cello"),
    ("harp", "harp"), ("bass", "bass guitar"), ("guitar", "guitar"), ("flute", "flute"),
    ("piccolo", "flute"), ("oboe", "oboe"), ("english horn", "oboe"), ("clarinet", "clarinet"),
    ("bassoon", "bassoon"), ("sax", "saxophone"), ("french horn", "horn"), ("trumpet", "trumpet"),
    ("trombone", "trombone"), ("tuba", "tuba"), ("choir", "vocals"), ("voice", "vocals"),
    ("synth", "synthesizer"), ("string ensemble", "strings"), ("strings", "strings"),
    ("vocal", "vocals"), ("singer", "vocals"), ("singing", "vocals"), ("drum", "drums"),
)
#: tags (MagnaTagATune style) that say an instrument is absent.
NEGATIVE_TAG = re.compile(r"^(?:no|without)[ _-]+(.+)$")
INSTRUMENTAL_TAGS = ("instrumental",)


def canonical_instrument(text: str) -> str:
    """A tag / metadata instrument / GM program name → canonical name, or ``""`` if unknown."""
    t = text.strip().lower()
    for canon, words in INSTRUMENT_WORDS.items():
        if t == canon or t in words or t.rstrip("s") in words:
            return canon
    for fragment, canon in _PROGRAM_CANON:
        if fragment in t:
            return canon
    if t in INSTRUMENT_FAMILIES:
        return t if t.endswith("s") else t + "s"
    return ""


def instrument_pattern() -> re.Pattern[str]:
    """One regex matching any instrument word (longest first), plural ``s`` allowed."""
    words = sorted({w for ws in INSTRUMENT_WORDS.values() for w in ws} | set(INSTRUMENT_FAMILIES),
                   key=len, reverse=True)
    alternation = "|".join(re.escape(w) for w in words)
    return re.compile(rf"\b({alternation})(?:e?s)?\b", re.I)


def word_to_canonical(word: str) -> str:
    """A matched word of :func:`instrument_pattern` → canonical instrument or family name."""
    w = word.lower()
    if w in INSTRUMENT_FAMILIES:
        return w if w.endswith("s") else w + "s"
    for canon, words in INSTRUMENT_WORDS.items():
        if w in words:
            return canon
    raise FactsError(f"not an instrument word: {word!r}")   # only called on regex matches
