"""Label conversion: what madmom and essentia write → the project's music vocabulary
(:mod:`llark.music`, which defines keys, chords, their parsing and their spelling).

* Keys come out as :data:`llark.music.KEYS` labels, spelled as musicians write them
  (``"Bb major"``, ``"F# minor"``); probability vectors use that 24-key order (C major ..
  B major, then C minor .. B minor).
* Chords: madmom's CRF writes Harte with sharps (``"A#:maj"``), essentia writes ``"Am"``,
  ``"Bb"``, ``"C#m"``. :func:`harte` turns either into a major/minor Harte label (``"N"`` for
  none); anything that is neither a major/minor triad nor ``N`` raises
  :class:`llark.music.MusicLabelError`. :func:`spell_analysis` then spells a clip's chords in
  the clip's key (``"Bb:maj"`` in F major, ``"C#:min"`` in A major).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from annotate.types import ClipAnalysis
from llark.music import (
    KEYS,
    NO_CHORD,
    MusicLabelError,
    chord_index,
    key_index,
    majmin,
    spell_chord,
    spell_key,
)

__all__ = ["KEYS", "NO_CHORD", "MADMOM_KEY_LABELS", "chord_index", "key_index", "essentia_key",
           "madmom_key_probabilities", "harte", "spell_analysis"]

#: madmom's ``CNNKeyRecognitionProcessor`` class order (``madmom.features.key.KEY_LABELS``).
MADMOM_KEY_LABELS: tuple[str, ...] = (
    "A major", "Bb major", "B major", "C major", "Db major", "D major", "Eb major", "E major",
    "F major", "F# major", "G major", "Ab major", "A minor", "Bb minor", "B minor", "C minor",
    "C# minor", "D minor", "D# minor", "E minor", "F minor", "F# minor", "G minor", "G# minor")


def essentia_key(key: str, scale: str) -> str:
    """essentia's ``KeyExtractor`` output (``"A#"``, ``"minor"``) → ``"Bb minor"``."""
    return spell_key(f"{key} {scale}")


def madmom_key_probabilities(probs: Sequence[float]) -> tuple[float, ...]:
    """madmom's 24 key probabilities (its own order) → :data:`KEYS` order."""
    if len(probs) != 24:
        raise MusicLabelError(f"madmom key output needs 24 values, got {len(probs)}")
    out = [0.0] * 24
    for i, name in enumerate(MADMOM_KEY_LABELS):
        out[key_index(name)] = float(probs[i])
    return tuple(out)


def harte(label: str) -> str:
    """A backend's chord label → major/minor Harte in the neutral spelling (``"Bbm"`` →
    ``"Bb:min"``, ``"A#:maj"`` → ``"Bb:maj"``, ``"X"`` → ``"N"``); :func:`spell_analysis`
    respells it in the clip's key. Raises for anything but a major/minor triad or N/X."""
    if label.strip() == "X":
        return NO_CHORD
    reduced = majmin(label)
    if reduced is None or (reduced != NO_CHORD and spell_chord(label) != reduced):
        raise MusicLabelError(f"only major/minor triads are supported, got {label!r}")
    return reduced


def spell_analysis(analysis: ClipAnalysis) -> ClipAnalysis:
    """The analysis with its key in musicians' spelling and its chords spelled in that key
    (neutral spelling when there is no key)."""
    key = spell_key(analysis.key)
    chords = tuple(replace(c, label=spell_chord(c.label, key or None)) for c in analysis.chords)
    if key == analysis.key and chords == analysis.chords:
        return analysis
    return replace(analysis, key=key, chords=chords)
