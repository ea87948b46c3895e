"""Grounding: find the key, tempo, meter, chord and instrument claims in a piece of generated
text and check each against the clip's annotations and metadata.

A claim that contradicts what we know (``"in D major"`` when the clip is annotated F# minor,
``"around 90 BPM"`` when it is 140) or that states a value we do not have (a key for a clip
where none was detected, or whose key confidence is below the writers' threshold: the facts
then say "no clear key") makes the text ungrounded; the caller drops it and counts the reason
(``grounding_key``, ``grounding_tempo``, ``grounding_meter``, ``grounding_chord``,
``grounding_instrument``).

Decisions (see docs/instruct.md):

* Tempo: a claim matches within ``tempo_tolerance`` (default 8 %; a range matches when it
  overlaps that band). Half/double tempo does **not** match by default (``tempo_octave_ok``):
  the training data should agree with the annotation the model is trained against; the
  evaluation metric (Acc2) is where octave errors are forgiven.
* Key: enharmonic spellings match (F# minor = Gb minor); a tonic without a mode matches either
  mode; the relative major/minor does **not** match by default (``relative_key_ok``). A key
  named in the metadata (``"Sonata in C minor"``) counts as grounded too.
* Meter: ``3/4``, ``three beats per bar``, ``waltz time``, ``triple meter``; compound
  signatures (6/8, 9/8, 12/8) also match their dotted-beat count (2, 3, 4).
* Chords: named chords in a sentence about chords/harmony/progressions must be among the
  annotated chords (root, and major/minor quality where both sides have one).
* Instruments: a negated mention ("no vocals") contradicts a listed instrument; a mention
  contradicts a negative tag ("no vocals"); and where the metadata lists everything that plays
  (MusicNet), a mention of anything else contradicts it. Otherwise instruments are not
  checked: a listener can name instruments the tags do not list.
* Confidence: a key, tempo, meter or chord annotation below ``min_confidence`` (the same
  threshold the writers use, :data:`annotate.instruct.facts.DEFAULT_MIN_CONFIDENCE`) grounds
  nothing, so any claim of that kind contradicts the facts ("no clear key"). A key named in the
  metadata still grounds a key claim.
* Spelling does not matter: claims and annotations are compared as pitch classes
  (:mod:`llark.music`).
* Qualitative words ("fast", "slow", "bright") are not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from annotate.instruct.facts import DEFAULT_MIN_CONFIDENCE, ClipFacts
from annotate.instruct.music import (
    INSTRUMENT_FAMILIES,
    NEGATIVE_TAG,
    canonical_instrument,
    instrument_pattern,
    word_to_canonical,
)
from llark.music import HarteChord, Key, MusicLabelError, parse_chord, parse_key, pitch_class

KINDS = ("key", "tempo", "meter", "chord", "instrument")


@dataclass(frozen=True)
class GroundingSettings:
    tempo_tolerance: float = 0.08     # relative; 0.08 = ±8 %
    tempo_octave_ok: bool = False     # accept half / double the annotated tempo
    relative_key_ok: bool = False     # accept the relative major/minor of the annotated key


@dataclass(frozen=True)
class Contradiction:
    kind: str          # one of KINDS
    claim: str         # the words in the text
    expected: str      # what the clip's facts say

    @property
    def reason(self) -> str:
        return f"grounding_{self.kind}"

    def __str__(self) -> str:
        return f"{self.kind}: says {self.claim!r}, the clip has {self.expected}"


@dataclass(frozen=True)
class GroundingResult:
    contradictions: tuple[Contradiction, ...]
    grounded: tuple[str, ...]          # kinds of claims that were checked and agree

    @property
    def ok(self) -> bool:
        return not self.contradictions


# --------------------------------------------------------------------------- patterns

_NOTE = r"([A-G])(#|♯|b|♭|[ -]sharp|[ -]flat)?"
_KEY_PATTERNS = [
    # "key of F# minor", "key is D", "key: Bb major", "key of F#m"
    re.compile(rf"\b[Kk]ey\s*(?:of|is|:|=)?\s*(?:the\s+)?{_NOTE}"
               r"(?:(m)(?![\w#♯♭])|(?![\w#♯♭])(?:[\s-]*(major|minor|maj|min)\b)?)"),
    # "the key of this piece is D major", "its key sounds like A minor"
    re.compile(rf"\b[Kk]ey\b[^.;!?]{{0,40}}?\b(?:is|as|be|like)\s+{_NOTE}(?![\w#♯♭])"
               r"(?:[\s-]*(major|minor)\b)?"),
    # "D major key", "F# minor tonality"
    re.compile(rf"\b{_NOTE}[\s-]+(major|minor)\s+(?:key|tonality|scale|mode)\b"),
    # "is in D major", "written in F# minor" (not "in D major chord")
    re.compile(rf"\bin\s+{_NOTE}[\s-]+(major|minor)\b"
               r"(?!\s+(?:chord|triad|seventh|7th|arpeggio|scale|key|tonality|mode))"),
]
_MODE_ONLY = re.compile(r"\b(major|minor)\s+(?:key|tonality|mode)\b", re.I)
_TEMPO = re.compile(r"(?<![\d.])(\d{2,3}(?:\.\d+)?)\s*(?:(?:-|–|to|and)\s*(\d{2,3}(?:\.\d+)?)\s*)?"
                    r"(?:bpm|beats[\s-]per[\s-]minute|beats a minute)\b", re.I)
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "twelve": 12}
_SIGNATURE = re.compile(r"(?<![\d/])(\d{1,2})\s*/\s*(2|4|8|16)(?![\d/])")
_BEATS_PER_BAR = re.compile(r"\b(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|twelve)"
                            r"\s+beats?\s+(?:per|to\s+the|to\s+a|in\s+(?:a|each|every|the))\s+"
                            r"(?:bar|measure)\b", re.I)
_METER_WORDS = [
    (re.compile(r"\b(?:waltz)\s+(?:time|meter|metre|feel|rhythm)\b|\btriple\s+(?:meter|metre|time)\b",
                re.I), (3,), "triple meter"),
    (re.compile(r"\bduple\s+(?:meter|metre|time)\b", re.I), (2, 4), "duple meter"),
    (re.compile(r"\b(?:quadruple\s+(?:meter|metre|time)|common\s+time)\b", re.I), (4,),
     "quadruple meter"),
]
_CHORD_CONTEXT = re.compile(r"\bchords?\b|\bprogressions?\b|\bharmon(?:y|ies|ic|ically)\b|"
                            r"\btriads?\b|\bcadences?\b", re.I)
_LONG_CHORD = re.compile(rf"\b{_NOTE}[\s-]+(major|minor|diminished|augmented|dominant)\b")
_SHORT_TOKEN = r"[A-G](?:#|♯|b|♭)?(?:maj7|min7|m7|maj|min|dim|aug|sus[24]?|m|7)?"
_SHORT_CHORD = re.compile(r"\b([A-G])(#|♯|b|♭)?(maj7|min7|m7|maj|min|dim|aug|sus[24]?|m|7)(?![\w#♯♭])")
_CHORD_LIST = re.compile(rf"(?<![\w#♯♭]){_SHORT_TOKEN}(?![\w#♯♭])"
                         rf"(?:\s*(?:,|–|-|→|->|/|\bto\b|\band\b|\bthen\b)\s*"
                         rf"{_SHORT_TOKEN}(?![\w#♯♭])){{1,}}")
_LIST_TOKEN = re.compile(r"(?<![\w#♯♭])([A-G])(#|♯|b|♭)?(maj7|min7|m7|maj|min|dim|aug|sus[24]?|m|7)?"
                         r"(?![\w#♯♭])")
_SENTENCE = re.compile(r"[^.!?;]+[.!?;]?")
_NEGATION = re.compile(r"(?:\b(?:no|without|lacks?|lacking|absence\s+of|absent|not\s+any|"
                       r"free\s+of|devoid\s+of|nor|instead\s+of|rather\s+than)\b|"
                       r"(?:\bnot|n't|\bnever)\s+(?:\w+\s+){0,2}?(?:feature|include|have|"
                       r"contain|use|hear|involve|need)s?\b)"
                       r"(?:\s+(?:any|a|an|the|real|obvious|audible|prominent)){0,2}\s*$", re.I)
_LIST_NEGATION = re.compile(r"\b(?:no|without)\s+[\w\s,]*(?:,|\bor\b|\bnor\b)\s*$", re.I)
_INSTRUMENTAL = re.compile(r"\b(?:is|are|purely|entirely|completely|fully|an?)\s+instrumental\b|"
                           r"\binstrumental\s+(?:track|piece|song|music|recording|work)\b", re.I)
_INSTRUMENT = instrument_pattern()


def _pc(letter: str, accidental: str | None) -> int:
    return pitch_class(letter + (accidental or "").strip())


def _mode(word: str | None) -> str | None:
    if not word:
        return None
    w = word.lower()
    if w in ("m", "min", "minor"):
        return "minor"
    if w in ("maj", "major"):
        return "major"
    return None


# --------------------------------------------------------------------------- extraction

@dataclass(frozen=True)
class KeyClaim:
    tonic: int | None
    mode: str | None
    text: str
    span: tuple[int, int]


def key_claims(text: str) -> list[KeyClaim]:
    claims: list[KeyClaim] = []
    taken: list[tuple[int, int]] = []
    for pattern in _KEY_PATTERNS:
        for m in pattern.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            groups = m.groups()
            mode = _mode(groups[2] if len(groups) > 2 else None) or \
                _mode(groups[3] if len(groups) > 3 else None)
            claims.append(KeyClaim(_pc(groups[0], groups[1]), mode, m.group(0).strip(), m.span()))
            taken.append(m.span())
    for m in _MODE_ONLY.finditer(text):
        if any(a < m.end() and m.start() < b for a, b in taken):
            continue
        before = text[max(0, m.start() - 4):m.start()]
        if re.search(r"[A-G](?:#|b|♯|♭)?[\s-]*$", before):
            continue
        claims.append(KeyClaim(None, m.group(1).lower(), m.group(0), m.span()))
        taken.append(m.span())
    return claims


def tempo_claims(text: str) -> list[tuple[float, float, str]]:
    """``(low, high, text)`` for each tempo figure (low == high for a single number)."""
    out = []
    for m in _TEMPO.finditer(text):
        lo = float(m.group(1))
        hi = float(m.group(2)) if m.group(2) else lo
        out.append((min(lo, hi), max(lo, hi), m.group(0).strip()))
    return out


def meter_claims(text: str) -> list[tuple[tuple[int, ...], str]]:
    """``(acceptable beats per bar, text)`` for each meter statement."""
    out: list[tuple[tuple[int, ...], str]] = []
    for m in _SIGNATURE.finditer(text):
        num = int(m.group(1))
        if num == 0:
            continue
        ok = (num, num // 3) if num in (6, 9, 12) and m.group(2) in ("8", "16") else (num,)
        out.append((ok, m.group(0)))
    for m in _BEATS_PER_BAR.finditer(text):
        word = m.group(1).lower()
        n = int(word) if word.isdigit() else _NUMBER_WORDS[word]
        out.append(((n,), m.group(0)))
    for pattern, ok, _name in _METER_WORDS:
        for m in pattern.finditer(text):
            out.append((ok, m.group(0)))
    return out


def _chord_quality(word: str | None) -> str | None:
    if word is None:
        return None
    w = word.lower()
    if w in ("minor", "m", "min", "m7", "min7"):
        return "min"
    if w in ("major", "maj", "maj7", "7", "dominant"):
        return "maj"
    if w in ("diminished", "dim"):
        return "dim"
    if w in ("augmented", "aug"):
        return "aug"
    if w.startswith("sus"):
        return "sus"
    return None


def chord_claims(text: str, exclude: list[tuple[int, int]] = ()) -> list[tuple[int, str | None, str]]:
    """``(root, quality, text)`` for chords named in sentences about chords or harmony."""
    out: list[tuple[int, str | None, str]] = []
    masked = list(text)
    for a, b in exclude:                      # key claims are not chord claims
        masked[a:b] = " " * (b - a)
    text = "".join(masked)
    for sm in _SENTENCE.finditer(text):
        sentence = sm.group(0)
        if not _CHORD_CONTEXT.search(sentence):
            continue
        taken: list[tuple[int, int]] = []
        for m in _LONG_CHORD.finditer(sentence):
            out.append((_pc(m.group(1), m.group(2)), _chord_quality(m.group(3)), m.group(0)))
            taken.append(m.span())
        for m in _SHORT_CHORD.finditer(sentence):
            if any(a <= m.start() < b for a, b in taken):
                continue
            out.append((_pc(m.group(1), m.group(2)), _chord_quality(m.group(3)), m.group(0)))
            taken.append(m.span())
        for lm in _CHORD_LIST.finditer(sentence):
            tokens = list(_LIST_TOKEN.finditer(lm.group(0)))
            decorated = sum(1 for t in tokens if t.group(2) or t.group(3))
            if len(tokens) < 3 and decorated == 0:
                continue                      # "A and B" is more likely sections than chords
            for t in tokens:
                start = lm.start() + t.start()
                if any(a <= start < b for a, b in taken):
                    continue
                quality = _chord_quality(t.group(3)) or "maj"
                out.append((_pc(t.group(1), t.group(2)), quality, t.group(0)))
    return out


def instrument_claims(text: str) -> list[tuple[str, bool, str]]:
    """``(canonical instrument or family, present?, text)`` for each instrument mention."""
    out = []
    for m in _INSTRUMENT.finditer(text):
        before = text[max(0, m.start() - 60):m.start()]
        clause = re.split(r"[.;:!?]|\bbut\b|\bwhile\b|\bwith\b(?!out)", before)[-1]
        negated = bool(_NEGATION.search(clause) or _LIST_NEGATION.search(clause))
        out.append((word_to_canonical(m.group(1)), not negated, m.group(0)))
    for m in _INSTRUMENTAL.finditer(text):
        out.append(("vocals", False, m.group(0)))
    return out


# --------------------------------------------------------------------------- checking

def metadata_keys(facts: ClipFacts) -> list[Key]:
    """Keys named in the clip's metadata (``"String Quartet No 11 in F minor"``)."""
    keys = []
    for field_text in (facts.composition, facts.movement, facts.title, facts.caption):
        for claim in key_claims(field_text):
            if claim.tonic is not None and claim.mode is not None:
                keys.append(Key(claim.tonic, claim.mode))
    return keys


def _known_instruments(facts: ClipFacts) -> tuple[set[str], set[str]]:
    present: set[str] = set()
    absent: set[str] = set()
    for item in facts.tags:
        neg = NEGATIVE_TAG.match(item.strip().lower())
        if neg:
            canon = canonical_instrument(neg.group(1))
            if canon:
                absent.add(canon)
        elif item.strip().lower() == "instrumental":
            absent.add("vocals")
        else:
            canon = canonical_instrument(item)
            if canon:
                present.add(canon)
    for item in facts.instruments:
        canon = canonical_instrument(item)
        if canon:
            present.add(canon)
    if facts.notes is not None:
        for name, _count in facts.notes.instruments:
            canon = canonical_instrument(name)
            if canon:
                present.add(canon)
    return present, absent


def _covered(instrument: str, known: set[str]) -> bool:
    """Is a mention of ``instrument`` (canonical or family) supported by ``known``?"""
    if instrument in known:
        return True
    members = INSTRUMENT_FAMILIES.get(instrument, ())
    if any(m in known for m in members):
        return True
    # a member is supported by a family entry ("strings" listed, "violin" mentioned)
    return any(instrument in INSTRUMENT_FAMILIES.get(fam, ()) for fam in known)


def _unclear(what: str, confidence: float, min_confidence: float) -> str:
    return f"no clear {what} (confidence {confidence:.2f} < {min_confidence:.2f})"


def check_text(text: str, facts: ClipFacts, settings: GroundingSettings = GroundingSettings(),
               min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> GroundingResult:
    """All claims of ``text`` checked against ``facts``; annotations below ``min_confidence``
    ground no claim."""
    contradictions: list[Contradiction] = []
    grounded: list[str] = []

    # key
    claims = key_claims(text)
    if claims:
        allowed = metadata_keys(facts)
        expected = "no detected key"
        clear_key = facts.clear_key(min_confidence)
        if clear_key:
            annotated = parse_key(clear_key)
            allowed.insert(0, annotated)
            expected = f"key {clear_key}"
            if settings.relative_key_ok:
                allowed.append(annotated.relative())
        elif facts.key:
            expected = _unclear("key", facts.key_confidence, min_confidence)
        for claim in claims:
            ok = any((claim.tonic is None or claim.tonic == k.tonic)
                     and (claim.mode is None or claim.mode == k.mode) for k in allowed)
            if ok:
                grounded.append("key")
            else:
                contradictions.append(Contradiction("key", claim.text, expected))

    # tempo
    tempos = tempo_claims(text)
    if tempos:
        t = facts.clear_tempo(min_confidence)
        targets = [t] + ([t / 2, t * 2] if settings.tempo_octave_ok else [])
        tol = settings.tempo_tolerance
        expected = f"{t:.0f} BPM" if t > 0 else _unclear(
            "tempo", facts.tempo_confidence, min_confidence) if facts.tempo_bpm > 0 \
            else "no detected tempo"
        for lo, hi, words in tempos:
            ok = t > 0 and any(lo * (1 - tol) <= x <= hi * (1 + tol) for x in targets)
            if ok:
                grounded.append("tempo")
            else:
                contradictions.append(Contradiction("tempo", words, expected))

    # meter
    meter = facts.clear_meter(min_confidence)
    for ok_values, words in meter_claims(text):
        if meter > 0 and meter in ok_values:
            grounded.append("meter")
        else:
            contradictions.append(Contradiction(
                "meter", words,
                f"{meter} beats per bar" if meter > 0 else _unclear(
                    "meter", facts.meter_confidence, min_confidence) if facts.meter > 0
                else "no detected meter"))

    # chords
    chord_list = chord_claims(text, [c.span for c in claims])
    if chord_list:
        annotated_chords: list[HarteChord] = []
        names: list[str] = []
        if facts.clear_chords(min_confidence):
            for span in facts.chords:
                try:
                    chord = parse_chord(span.label)
                except MusicLabelError:
                    continue
                if chord.root >= 0:
                    annotated_chords.append(chord)
                    names.append(span.label)
            expected = f"chords {', '.join(sorted(set(names)))}" if names \
                else "no detected chords"
        elif any(c.label not in ("N", "X") for c in facts.chords):
            expected = _unclear("chords", facts.chords_confidence, min_confidence)
        else:
            expected = "no detected chords"
        for root, quality, words in chord_list:
            ok = any(c.root == root and (quality is None or quality not in ("maj", "min")
                                         or c.triad not in ("maj", "min") or c.triad == quality)
                     for c in annotated_chords)
            if ok:
                grounded.append("chord")
            else:
                contradictions.append(Contradiction("chord", words, expected))

    # instruments
    mentions = instrument_claims(text)
    if mentions:
        present, absent = _known_instruments(facts)
        for instrument, is_present, words in mentions:
            if is_present and _covered(instrument, absent) and not _covered(instrument, present):
                contradictions.append(Contradiction("instrument", words,
                                                    f"no {instrument} (tagged absent)"))
            elif is_present and facts.instruments_complete and not _covered(instrument, present):
                contradictions.append(Contradiction(
                    "instrument", words, f"only {', '.join(sorted(present)) or 'unknown'}"))
            elif not is_present and instrument in present:
                contradictions.append(Contradiction("instrument", words,
                                                    f"{instrument} (listed as playing)"))
            elif (is_present and _covered(instrument, present)) or \
                    (not is_present and instrument in absent):
                grounded.append("instrument")
    return GroundingResult(tuple(contradictions), tuple(dict.fromkeys(grounded)))
