"""Label conversion: madmom / essentia key and chord names → the project's conventions.

* Keys read ``"F# minor"`` / ``"C major"`` with sharps only (:data:`KEYS` is the canonical
  24-key order: C major .. B major, then C minor .. B minor).
* Chords are Harte labels restricted to major/minor triads: ``"A:min"``, ``"C:maj"``, plus
  ``"N"`` for no chord. madmom's CRF already writes Harte (``"A#:maj"``); essentia writes
  ``"Am"``, ``"Bb"``, ``"C#m"``. Anything that is neither a triad nor ``N`` raises
  :class:`LabelError`.
"""

from __future__ import annotations

import re

from llark.errors import LlarkError

PITCH_CLASSES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NOTE_TO_PC: dict[str, int] = {
    **{name: pc for pc, name in enumerate(PITCH_CLASSES)},
    "Db": 1, "Eb": 3, "Gb": 6, "Ab": 8, "Bb": 10, "Cb": 11, "Fb": 4, "E#": 5, "B#": 0,
}
MODES = ("major", "minor")
#: The 24 keys in the order every probability vector of this package uses.
KEYS: tuple[str, ...] = tuple(f"{pc} {m}" for m in MODES for pc in PITCH_CLASSES)
KEY_INDEX: dict[str, int] = {k: i for i, k in enumerate(KEYS)}

#: madmom's ``CNNKeyRecognitionProcessor`` class order (``madmom.features.key.KEY_LABELS``).
MADMOM_KEY_LABELS: tuple[str, ...] = (
    "A major", "Bb major", "B major", "C major", "Db major", "D major", "Eb major", "E major",
    "F major", "F# major", "G major", "Ab major", "A minor", "Bb minor", "B minor", "C minor",
    "C# minor", "D minor", "D# minor", "E minor", "F minor", "F# minor", "G minor", "G# minor")

NO_CHORD = "N"


class LabelError(LlarkError, ValueError):
    """A key or chord label that cannot be read."""


def pitch_class(note: str) -> int:
    """``"F#"`` / ``"Gb"`` → 6. Raises :class:`LabelError` for anything else."""
    pc = _NOTE_TO_PC.get(note.strip())
    if pc is None:
        raise LabelError(f"unknown note name {note!r}")
    return pc


def key_label(tonic: int, mode: str) -> str:
    if mode not in MODES or not 0 <= tonic <= 11:
        raise LabelError(f"bad key: tonic={tonic} mode={mode!r}")
    return f"{PITCH_CLASSES[tonic]} {mode}"


def parse_key(label: str) -> tuple[int, str]:
    """``"F# minor"`` / ``"Gb major"`` / ``"f# min"`` → ``(tonic_pc, "minor"|"major")``."""
    parts = label.strip().split()
    if len(parts) != 2:
        raise LabelError(f"not a key label: {label!r} (expected e.g. 'F# minor')")
    note, mode = parts
    note = note[:1].upper() + note[1:]
    mode = {"maj": "major", "major": "major", "min": "minor", "minor": "minor"}.get(mode.lower(), "")
    if not mode:
        raise LabelError(f"not a key label: {label!r} (mode must be major or minor)")
    return pitch_class(note), mode


def normalize_key(label: str) -> str:
    """Any readable key label → the canonical sharp spelling (``"Bb minor"`` → ``"A# minor"``)."""
    tonic, mode = parse_key(label)
    return key_label(tonic, mode)


def key_index(label: str) -> int:
    """Index of a key in :data:`KEYS`."""
    return KEY_INDEX[normalize_key(label)]


def essentia_key(key: str, scale: str) -> str:
    """essentia's ``KeyExtractor`` output (``"Bb"``, ``"minor"``) → ``"A# minor"``."""
    return normalize_key(f"{key} {scale}")


def madmom_key_probabilities(probs: "list[float] | tuple[float, ...]") -> tuple[float, ...]:
    """madmom's 24 key probabilities (its own order) → :data:`KEYS` order."""
    if len(probs) != 24:
        raise LabelError(f"madmom key output needs 24 values, got {len(probs)}")
    out = [0.0] * 24
    for i, name in enumerate(MADMOM_KEY_LABELS):
        out[key_index(name)] = float(probs[i])
    return tuple(out)


def parse_chord(label: str) -> tuple[int, str] | None:
    """A major/minor triad label in Harte (``"A:min"``, ``"Bb:maj"``, ``"C"``) or essentia
    (``"Am"``, ``"Bb"``, ``"C#m"``) spelling → ``(root_pc, "maj"|"min")``; ``None`` for ``N``.
    """
    text = label.strip()
    if text in ("N", "X", ""):
        return None
    if ":" in text:
        root, _, quality = text.partition(":")
        quality = {"maj": "maj", "min": "min"}.get(quality, "")
        if not quality:
            raise LabelError(f"only major/minor triads are supported, got {label!r}")
        return pitch_class(root), quality
    m = re.fullmatch(r"([A-G][#b]?)(m|min|maj|M)?", text)
    if m is None:
        raise LabelError(f"not a chord label: {label!r}")
    quality = "min" if m.group(2) in ("m", "min") else "maj"
    return pitch_class(m.group(1)), quality


def harte(label: str) -> str:
    """Any madmom/essentia/Harte triad label → canonical Harte (``"Bbm"`` → ``"A#:min"``)."""
    parsed = parse_chord(label)
    if parsed is None:
        return NO_CHORD
    root, quality = parsed
    return f"{PITCH_CLASSES[root]}:{quality}"


def chord_index(label: str) -> int:
    """0..11 major (C..B), 12..23 minor, 24 = N."""
    parsed = parse_chord(label)
    if parsed is None:
        return 24
    root, quality = parsed
    return root + (12 if quality == "min" else 0)


def same_chord(a: str, b: str) -> bool:
    return chord_index(a) == chord_index(b)


def key_relation(a: str, b: str) -> str:
    """How two keys relate: ``same``, ``fifth``, ``relative``, ``parallel`` or ``other``
    (the categories of the MIREX weighted key score)."""
    ta, ma = parse_key(a)
    tb, mb = parse_key(b)
    if (ta, ma) == (tb, mb):
        return "same"
    if ma == mb and ((tb - ta) % 12 in (5, 7)):
        return "fifth"
    if ma == "major" and mb == "minor" and (ta - tb) % 12 == 3:
        return "relative"
    if ma == "minor" and mb == "major" and (tb - ta) % 12 == 3:
        return "relative"
    if ta == tb:
        return "parallel"
    return "other"
