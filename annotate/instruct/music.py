"""The words instruct writes about music: Harte chord labels in readable form (spelled in the
clip's key), and an instrument vocabulary with families. Notes, keys and chord labels
themselves (parsing and spelling) are :mod:`llark.music`'s."""

from __future__ import annotations

import re

from annotate.instruct.facts import FactsError
from llark.music import Key, parse_chord, spell_chord

# --------------------------------------------------------------------------- chords

_QUALITY_WORDS = {"maj": "major", "min": "minor", "dim": "diminished", "aug": "augmented",
                  "sus": "suspended"}
_EXTENSION_WORDS = {"7": "dominant seventh", "maj7": "major seventh", "min7": "minor seventh",
                    "dim7": "diminished seventh", "hdim7": "half-diminished seventh",
                    "maj6": "major sixth", "min6": "minor sixth", "9": "dominant ninth",
                    "sus4": "suspended fourth", "sus2": "suspended second"}


def readable_chord(label: str, key: "Key | str | None" = None) -> str:
    """A Harte label in words, its root spelled in ``key`` (:func:`llark.music.spell_chord`):
    ``"A:min"`` → ``"A minor"``, ``"A#:maj"`` in F major → ``"Bb major"``, ``"G:7"`` →
    ``"G dominant seventh"``, ``"N"`` → ``"no chord"``. Raises
    :class:`llark.music.MusicLabelError` for a label it cannot read."""
    chord = parse_chord(label)
    if chord.root < 0:
        return "no chord"
    root = spell_chord(label, key).split(":")[0]
    if chord.shorthand:
        words = _EXTENSION_WORDS.get(chord.shorthand) or _QUALITY_WORDS.get(chord.shorthand) \
            or chord.shorthand
    else:
        words = _QUALITY_WORDS.get(chord.triad, "chord")
    return f"{root} {words}"


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
