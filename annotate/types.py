"""Result types of the music analysis: pure data, no Beam, no ``pipelines`` import.

A backend (madmom, essentia) answers one clip window with a :class:`BackendAnalysis`: its
tempo (with candidates), beats with their position in the bar, meter, key (with the 24-class
evidence it has), chords and a confidence per field. The consensus (or a single backend used
on its own) turns those into one :class:`ClipAnalysis`, the result the Beam glue converts
into ``pipelines.schema.Annotation``. Times are seconds from the start of the window.

Conventions (:mod:`llark.music`, the project's music vocabulary): keys read ``"F# minor"``,
``"Bb major"`` (musicians' spelling), chords are Harte labels restricted to major/minor triads
(``"A:min"``, ``"Bb:maj"``) plus ``"N"`` (no chord); ``beat_number`` is the 1-based position in
the bar and ``0`` where a backend does not know the bar (essentia). Key probability vectors use
:data:`llark.music.KEYS` order (C major .. B major, C minor .. B minor). Beats and chord
segments are :class:`llark.music.Beat` and :class:`llark.music.ChordSegment` (one definition,
re-exported here for the backends and the consensus).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from llark.music import Beat, ChordSegment, downbeats

BACKENDS = ("consensus", "madmom", "essentia")


@dataclass(frozen=True)
class TempoEstimate:
    """A tempo in BPM with a confidence in [0, 1] and the backend's other candidates.

    ``candidates`` are ``(bpm, strength)`` pairs, strongest first (madmom's tempo histogram
    peaks; essentia's per-method estimates). ``bpm`` is 0.0 when there is no tempo.
    """

    bpm: float
    confidence: float
    candidates: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class KeyEstimate:
    """A key label (``"F# minor"``, ``""`` = none) with a confidence in [0, 1].

    ``probabilities`` is empty or holds 24 non-negative values in
    :data:`llark.music.KEYS` order that sum to 1 (madmom's CNN softmax). ``strength`` is
    essentia's profile correlation of the chosen key (0 when the backend has none).
    """

    label: str
    confidence: float
    probabilities: tuple[float, ...] = ()
    strength: float = 0.0

    def __post_init__(self) -> None:
        if self.probabilities and len(self.probabilities) != 24:
            raise ValueError(f"key probabilities need 24 values, got {len(self.probabilities)}")


@dataclass(frozen=True)
class BackendAnalysis:
    """One backend's raw answer for one clip window.

    ``chroma`` is the window's mean 12-bin chroma (C..B, max-normalised) when the backend
    computes one (essentia's HPCP), for the key fusion. ``chord_frames`` are the backend's
    frame-wise chord labels at ``chord_fps`` when it has them (essentia), so the consensus can
    measure agreement with another backend's segments. ``key_profiles`` holds
    ``(profile, key label, strength)`` for each of essentia's key profiles the backend ran
    (:attr:`annotate.essentia_backend.EssentiaConfig.fusion_key_profiles`), evidence for the
    fitted key fusion.
    """

    backend: str
    duration_s: float
    tempo: TempoEstimate
    beats: tuple[Beat, ...]
    meter: int                        # beats per bar; 0 = unknown
    meter_confidence: float
    key: KeyEstimate
    chords: tuple[ChordSegment, ...]
    chords_confidence: float
    beats_confidence: float = 0.0
    chroma: tuple[float, ...] = ()
    chord_frames: tuple[str, ...] = ()
    chord_fps: float = 0.0
    key_profiles: tuple[tuple[str, str, float], ...] = ()
    onsets: tuple[float, ...] = ()

    @property
    def downbeats_s(self) -> tuple[float, ...]:
        return downbeats(self.beats)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times rounded to 1 ms, values to 4 decimals)."""
        return {
            "backend": self.backend,
            "duration_s": round(self.duration_s, 3),
            "tempo": {"bpm": round(self.tempo.bpm, 3), "confidence": round(self.tempo.confidence, 4),
                      "candidates": [[round(b, 3), round(s, 4)] for b, s in self.tempo.candidates]},
            "beats": [[round(b.time_s, 3), b.beat_number] for b in self.beats],
            "beats_confidence": round(self.beats_confidence, 4),
            "meter": self.meter,
            "meter_confidence": round(self.meter_confidence, 4),
            "key": {"label": self.key.label, "confidence": round(self.key.confidence, 4),
                    "probabilities": [round(p, 5) for p in self.key.probabilities],
                    "strength": round(self.key.strength, 4)},
            "chords": [[round(c.start_s, 3), round(c.end_s, 3), c.label] for c in self.chords],
            "chords_confidence": round(self.chords_confidence, 4),
            "chroma": [round(c, 4) for c in self.chroma],
            "chord_frames": list(self.chord_frames),
            "chord_fps": self.chord_fps,
            "key_profiles": [[p, k, round(s, 4)] for p, k, s in self.key_profiles],
            "onsets": [round(t, 3) for t in self.onsets],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BackendAnalysis":
        t, k = d["tempo"], d["key"]
        return cls(
            backend=d["backend"], duration_s=float(d["duration_s"]),
            tempo=TempoEstimate(float(t["bpm"]), float(t["confidence"]),
                                tuple((float(b), float(s)) for b, s in t.get("candidates", ()))),
            beats=tuple(Beat(float(b), int(n)) for b, n in d["beats"]),
            meter=int(d["meter"]), meter_confidence=float(d["meter_confidence"]),
            key=KeyEstimate(k["label"], float(k["confidence"]),
                            tuple(float(p) for p in k.get("probabilities", ())),
                            float(k.get("strength", 0.0))),
            chords=tuple(ChordSegment(float(s), float(e), str(lab)) for s, e, lab in d["chords"]),
            chords_confidence=float(d["chords_confidence"]),
            beats_confidence=float(d.get("beats_confidence", 0.0)),
            chroma=tuple(float(c) for c in d.get("chroma", ())),
            chord_frames=tuple(d.get("chord_frames", ())),
            chord_fps=float(d.get("chord_fps", 0.0)),
            key_profiles=tuple((str(p), str(k), float(s))
                               for p, k, s in d.get("key_profiles", ())),
            onsets=tuple(float(t) for t in d.get("onsets", ())),
        )


@dataclass(frozen=True)
class ClipAnalysis:
    """The annotation of one clip window: one answer per field with its confidence.

    ``backend`` says who produced it (``"consensus"``, ``"madmom"`` or ``"essentia"``);
    ``backends`` keeps every backend's raw answer. ``is_silent`` windows have no beats, tempo
    0, key ``""`` with confidence 0 and one ``N`` chord over the window.
    """

    backend: str
    duration_s: float
    tempo_bpm: float
    tempo_confidence: float
    beats: tuple[Beat, ...]
    downbeats_s: tuple[float, ...]
    meter: int
    meter_confidence: float
    key: str
    key_confidence: float
    chords: tuple[ChordSegment, ...]
    chords_confidence: float
    is_silent: bool = False
    rms_dbfs: float = 0.0
    backends: tuple[BackendAnalysis, ...] = field(default=())
    notes: tuple[str, ...] = ()       # how the consensus decided (for humans, kept in the JSON)

    def backends_json(self) -> str:
        """Every backend's raw answer plus the consensus notes as one JSON object."""
        payload: dict[str, Any] = {b.backend: b.to_dict() for b in self.backends}
        payload["_meta"] = {"rms_dbfs": round(self.rms_dbfs, 2), "notes": list(self.notes),
                            "backend": self.backend}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    def to_json_dict(self, path: str) -> dict[str, Any]:
        """The ``llark analyze`` output object: exactly the documented fields."""
        return {
            "path": path,
            "tempo_bpm": round(self.tempo_bpm, 2),
            "beats": [{"time": round(b.time_s, 3), "beat_number": b.beat_number} for b in self.beats],
            "downbeats": [round(t, 3) for t in self.downbeats_s],
            "key": {"label": self.key, "confidence": round(self.key_confidence, 3)},
            "chords": [{"start": round(c.start_s, 3), "end": round(c.end_s, 3), "label": c.label}
                       for c in self.chords],
            "backend": self.backend,
        }
