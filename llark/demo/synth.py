"""A small, pure-numpy music synthesizer that knows the exact truth of what it plays.

The demo corpus (``llark demo-data``) and the tests need audio whose tempo, beats, downbeats,
key, chords and instruments are known exactly, and which still *sounds like music* to a beat
tracker (madmom's RNN) and a key model: a drum kit with kick/snare/hi-hat grooves, a bass that
follows the chord roots, chords voiced by a keyboard/pad/guitar, and a melody in the key's
scale. Timbres are made by additive synthesis (band-limited wavetables with ADSR envelopes,
vibrato and brightness decay) and by Karplus-Strong plucked strings; drums are synthesized
from swept sines and filtered noise.

Everything is deterministic given :attr:`SongSpec.seed`. A 30 s song renders in well under a
second of CPU: notes are rendered once per (instrument, pitch, length) and reused.

Conventions (the same as the rest of the project):

* keys and chords come from :mod:`llark.music`: keys read ``"F# minor"`` / ``"Bb major"``
  (musicians' spelling), chords are Harte labels restricted to triads, spelled in the song's
  key: ``"A:min"``, ``"Bb:maj"`` (in F major); ``"N"`` = no chord;
* General MIDI programs are **0-based** (0 = Acoustic Grand Piano, 40 = Violin), as in the MIDI
  wire format and ``pretty_midi``. MusicNet's label files use 1-based numbers: add one there.
  The drum kit has no program (``None``) and ``is_drum=True``; its note pitches are General
  MIDI percussion keys (36 kick, 38 snare, 42 closed hi-hat, 46 open hi-hat, 49 crash).
* beats carry their position in the bar, ``beat_number`` 1..``beats_per_bar``.

Public API: :class:`Part`, :class:`SongSpec`, :func:`render_song` -> :class:`SongAudio`,
:func:`random_song_spec`, plus :func:`roman_to_harte` and the :data:`INSTRUMENTS` catalog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Mapping, Sequence

import numpy as np

from llark.music import (Beat, ChordSegment, Key, Mode, chord_label, downbeats, key_name,
                         parse_chord)

__all__ = [
    "MAJOR_SCALE",
    "MINOR_SCALE",
    "ROLES",
    "STYLES",
    "PROGRESSIONS",
    "INSTRUMENTS",
    "InstrumentDef",
    "Part",
    "SongSpec",
    "Beat",
    "ChordSegment",
    "NoteEvent",
    "InstrumentInfo",
    "SongAudio",
    "roman_to_harte",
    "random_song_spec",
    "render_song",
]

# --------------------------------------------------------------------------------------------
# Music theory helpers
# --------------------------------------------------------------------------------------------

MAJOR_SCALE: Final[tuple[int, ...]] = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE: Final[tuple[int, ...]] = (0, 2, 3, 5, 7, 8, 10)  # natural minor

Quality = Literal["maj", "min"]
Role = Literal["drums", "bass", "chords", "arpeggio", "melody", "counter"]
ROLES: Final[tuple[str, ...]] = ("drums", "bass", "chords", "arpeggio", "melody", "counter")

_ROMAN: Final[dict[str, int]] = {"i": 0, "ii": 1, "iii": 2, "iv": 3, "v": 4, "vi": 5, "vii": 6}


def _triad(label: str) -> tuple[int, Quality]:
    """``(root pitch class, "maj"|"min")`` of a triad label in any spelling (``"A:min"``,
    ``"Bb:maj"``, ``"C"``); raises ``ValueError`` (:class:`llark.music.MusicLabelError`) for
    anything else, ``"N"`` included: the synthesizer only plays triads."""
    chord = parse_chord(label)
    if chord.root < 0 or chord.shorthand not in ("maj", "min") or chord.components or chord.bass:
        raise ValueError(f"only 'maj'/'min' triads are supported, got {label!r}")
    return chord.root, chord.shorthand  # type: ignore[return-value]


def roman_to_harte(numerals: Sequence[str], tonic: int, mode: str) -> tuple[str, ...]:
    """Turn roman numerals (``"I"``, ``"vi"``, ``"bVII"`` is not supported) into Harte labels.

    Upper case = major triad, lower case = minor triad; the degree is taken from the key's
    scale (natural minor for minor keys), so ``"V"`` in a minor key is the harmonic-minor
    dominant. Labels are spelled in the key. Example: ``roman_to_harte(["i", "VI", "III",
    "VII"], 9, "minor")`` gives ``("A:min", "F:maj", "C:maj", "G:maj")``;
    ``roman_to_harte(["I", "IV"], 5, "major")`` gives ``("F:maj", "Bb:maj")``.
    """
    key = Key(tonic, mode)  # type: ignore[arg-type]  # validates
    scale = MAJOR_SCALE if mode == "major" else MINOR_SCALE
    labels = []
    for numeral in numerals:
        degree = _ROMAN.get(numeral.lower())
        if degree is None:
            raise ValueError(f"unknown roman numeral {numeral!r}")
        quality: Quality = "maj" if numeral.isupper() else "min"
        labels.append(chord_label((tonic + scale[degree]) % 12, quality, key))
    return tuple(labels)


def _chord_pcs(label: str) -> tuple[int, int, int]:
    """Pitch classes (root, third, fifth) of a triad label."""
    root, quality = _triad(label)
    third = 4 if quality == "maj" else 3
    return root, (root + third) % 12, (root + 7) % 12


def _midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _nearest_with_pc(pcs: Sequence[int], target: float, lo: int, hi: int) -> int:
    """The MIDI pitch in [lo, hi] with a pitch class in ``pcs`` closest to ``target``."""
    best = None
    for pitch in range(lo, hi + 1):
        if pitch % 12 in pcs and (best is None or abs(pitch - target) < abs(best - target)):
            best = pitch
    if best is None:
        raise ValueError(f"no pitch with classes {list(pcs)} in range [{lo}, {hi}]")
    return best


# Progressions as roman numerals; one entry per chord slot (a bar or half a bar).
PROGRESSIONS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "major": (
        ("I", "V", "vi", "IV"),
        ("I", "IV", "V", "IV"),
        ("I", "vi", "IV", "V"),
        ("vi", "IV", "I", "V"),
        ("ii", "V", "I", "I"),
        ("I", "IV", "vi", "V"),
        ("I", "iii", "IV", "V"),
        ("I", "V", "IV", "I"),
        ("I", "I", "IV", "V"),
    ),
    "minor": (
        ("i", "VI", "III", "VII"),
        ("i", "iv", "VII", "III"),
        ("i", "VII", "VI", "VII"),
        ("i", "iv", "V", "i"),
        ("i", "VI", "iv", "V"),
        ("i", "III", "VII", "iv"),
        ("i", "iv", "i", "V"),
        ("i", "VI", "VII", "i"),
    ),
}

# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------

Engine = Literal["additive", "pluck", "drums"]


@dataclass(frozen=True)
class InstrumentDef:
    """How one instrument sounds and what it is called.

    ``harmonics`` are the relative amplitudes of partials 1, 2, 3, ...; ``decay_tau_s`` makes
    the note die away exponentially (pianos, basses; scaled by pitch), ``bright_tau_s``
    crossfades from the bright to a dull spectrum (struck/plucked attack), ``sustain`` is the
    ADSR sustain level. ``pluck_*`` tune the Karplus-Strong engine. ``lo``/``hi`` bound the
    MIDI pitches the instrument may play.
    """

    name: str
    gm_program: int | None
    gm_name: str
    family: str
    engine: Engine
    lo: int = 21
    hi: int = 108
    harmonics: tuple[float, ...] = (1.0,)
    attack_s: float = 0.01
    decay_s: float = 0.1
    sustain: float = 1.0
    release_s: float = 0.1
    decay_tau_s: float | None = None
    bright_tau_s: float | None = None
    vibrato_hz: float = 0.0
    vibrato_cents: float = 0.0
    vibrato_delay_s: float = 0.0
    detune_cents: float = 0.0
    tremolo_hz: float = 0.0
    tremolo_depth: float = 0.0
    noise: float = 0.0
    pluck_brightness: float = 0.5
    pluck_decay_s: float = 2.0
    sustained: bool = False


def _saw(n: int, power: float = 1.0) -> tuple[float, ...]:
    return tuple(1.0 / k**power for k in range(1, n + 1))


def _odd(n: int, power: float = 1.0) -> tuple[float, ...]:
    return tuple((1.0 / k**power if k % 2 else 0.0) for k in range(1, n + 1))


_INSTRUMENT_LIST: Final[tuple[InstrumentDef, ...]] = (
    InstrumentDef("piano", 0, "Acoustic Grand Piano", "keyboard", "additive", 21, 108,
                  (1.0, 0.55, 0.35, 0.25, 0.17, 0.12, 0.09, 0.06, 0.045, 0.03, 0.02),
                  attack_s=0.003, decay_s=0.05, sustain=1.0, release_s=0.12,
                  decay_tau_s=1.1, bright_tau_s=0.25),
    InstrumentDef("electric piano", 4, "Electric Piano 1", "keyboard", "additive", 28, 103,
                  (1.0, 0.3, 0.06, 0.02, 0.0, 0.0, 0.05),
                  attack_s=0.003, release_s=0.15, decay_tau_s=1.4, bright_tau_s=0.12,
                  tremolo_hz=4.5, tremolo_depth=0.08),
    InstrumentDef("organ", 16, "Drawbar Organ", "keyboard", "additive", 36, 96,
                  (1.0, 0.75, 0.5, 0.45, 0.0, 0.3, 0.0, 0.25),
                  attack_s=0.012, decay_s=0.05, sustain=1.0, release_s=0.06,
                  tremolo_hz=6.3, tremolo_depth=0.12, sustained=True),
    InstrumentDef("string ensemble", 48, "String Ensemble 1", "strings", "additive", 28, 96,
                  _saw(18, 1.1), attack_s=0.22, decay_s=0.2, sustain=0.9, release_s=0.35,
                  vibrato_hz=5.2, vibrato_cents=8.0, detune_cents=9.0, sustained=True),
    InstrumentDef("synth pad", 89, "Pad 2 (warm)", "synth", "additive", 36, 96,
                  _saw(12, 1.6), attack_s=0.35, decay_s=0.3, sustain=0.85, release_s=0.5,
                  vibrato_hz=0.4, vibrato_cents=6.0, detune_cents=12.0, sustained=True),
    InstrumentDef("violin", 40, "Violin", "strings", "additive", 55, 100,
                  (1.0, 0.8, 0.65, 0.5, 0.42, 0.3, 0.28, 0.2, 0.15, 0.12, 0.08, 0.06),
                  attack_s=0.06, decay_s=0.1, sustain=0.9, release_s=0.12,
                  vibrato_hz=5.6, vibrato_cents=16.0, vibrato_delay_s=0.12, sustained=True),
    InstrumentDef("viola", 41, "Viola", "strings", "additive", 48, 88,
                  (1.0, 0.9, 0.6, 0.45, 0.3, 0.22, 0.15, 0.1, 0.07, 0.05),
                  attack_s=0.07, decay_s=0.1, sustain=0.9, release_s=0.14,
                  vibrato_hz=5.3, vibrato_cents=14.0, vibrato_delay_s=0.14, sustained=True),
    InstrumentDef("cello", 42, "Cello", "strings", "additive", 36, 76,
                  (1.0, 0.85, 0.6, 0.4, 0.3, 0.2, 0.14, 0.1, 0.07, 0.05),
                  attack_s=0.08, decay_s=0.1, sustain=0.9, release_s=0.15,
                  vibrato_hz=5.0, vibrato_cents=14.0, vibrato_delay_s=0.15, sustained=True),
    InstrumentDef("contrabass", 43, "Contrabass", "strings", "additive", 28, 67,
                  (1.0, 0.7, 0.45, 0.3, 0.18, 0.1, 0.06),
                  attack_s=0.01, release_s=0.12, decay_tau_s=1.4, bright_tau_s=0.15),
    InstrumentDef("flute", 73, "Flute", "winds", "additive", 60, 96,
                  (1.0, 0.28, 0.09, 0.04, 0.02), attack_s=0.05, decay_s=0.1, sustain=0.9,
                  release_s=0.08, vibrato_hz=4.8, vibrato_cents=12.0, vibrato_delay_s=0.15,
                  noise=0.04, sustained=True),
    InstrumentDef("clarinet", 71, "Clarinet", "winds", "additive", 50, 91,
                  (1.0, 0.03, 0.55, 0.03, 0.3, 0.02, 0.15, 0.01, 0.07),
                  attack_s=0.04, decay_s=0.08, sustain=0.9, release_s=0.07,
                  vibrato_hz=4.5, vibrato_cents=5.0, vibrato_delay_s=0.2, sustained=True),
    InstrumentDef("oboe", 68, "Oboe", "winds", "additive", 58, 91,
                  (0.55, 1.0, 0.85, 0.6, 0.45, 0.3, 0.2, 0.12, 0.08, 0.05),
                  attack_s=0.04, decay_s=0.08, sustain=0.9, release_s=0.07,
                  vibrato_hz=5.0, vibrato_cents=8.0, vibrato_delay_s=0.15, sustained=True),
    InstrumentDef("bassoon", 70, "Bassoon", "winds", "additive", 34, 75,
                  (0.7, 1.0, 0.8, 0.55, 0.4, 0.25, 0.15, 0.08),
                  attack_s=0.05, decay_s=0.08, sustain=0.9, release_s=0.08,
                  vibrato_hz=4.5, vibrato_cents=5.0, vibrato_delay_s=0.2, sustained=True),
    InstrumentDef("french horn", 60, "French Horn", "brass", "additive", 41, 77,
                  (1.0, 0.65, 0.42, 0.28, 0.16, 0.09, 0.05),
                  attack_s=0.07, decay_s=0.1, sustain=0.9, release_s=0.12,
                  vibrato_hz=4.5, vibrato_cents=4.0, vibrato_delay_s=0.25, sustained=True),
    InstrumentDef("trumpet", 56, "Trumpet", "brass", "additive", 54, 86,
                  (0.8, 1.0, 0.85, 0.7, 0.55, 0.4, 0.3, 0.2, 0.14, 0.1, 0.06),
                  attack_s=0.03, decay_s=0.08, sustain=0.85, release_s=0.08,
                  vibrato_hz=5.5, vibrato_cents=8.0, vibrato_delay_s=0.2, sustained=True),
    InstrumentDef("synth lead", 80, "Lead 1 (square)", "synth", "additive", 48, 96,
                  _odd(15), attack_s=0.01, decay_s=0.15, sustain=0.8, release_s=0.06,
                  vibrato_hz=5.5, vibrato_cents=12.0, vibrato_delay_s=0.2, sustained=True),
    InstrumentDef("acoustic guitar", 24, "Acoustic Guitar (nylon)", "guitar", "pluck", 40, 84,
                  release_s=0.08, pluck_brightness=0.45, pluck_decay_s=2.2),
    InstrumentDef("electric guitar", 27, "Electric Guitar (clean)", "guitar", "pluck", 40, 88,
                  release_s=0.08, pluck_brightness=0.75, pluck_decay_s=3.0),
    InstrumentDef("harp", 46, "Orchestral Harp", "strings", "pluck", 24, 103,
                  release_s=0.2, pluck_brightness=0.35, pluck_decay_s=3.5),
    InstrumentDef("electric bass", 33, "Electric Bass (finger)", "bass", "additive", 28, 60,
                  (1.0, 0.5, 0.25, 0.14, 0.07, 0.035, 0.02),
                  attack_s=0.005, release_s=0.06, decay_tau_s=1.2, bright_tau_s=0.2),
    InstrumentDef("synth bass", 38, "Synth Bass 1", "bass", "additive", 28, 60,
                  _saw(14), attack_s=0.004, release_s=0.05, decay_tau_s=1.0, bright_tau_s=0.1),
    InstrumentDef("drums", None, "Standard Drum Kit", "percussion", "drums"),
)

INSTRUMENTS: Final[Mapping[str, InstrumentDef]] = {i.name: i for i in _INSTRUMENT_LIST}
"""Instrument catalog keyed by readable name ("piano", "electric bass", "drums", ...)."""

DRUM_KEYS: Final[dict[str, int]] = {
    "kick": 36, "snare": 38, "closed_hat": 42, "open_hat": 46, "crash": 49,
}

# --------------------------------------------------------------------------------------------
# Specs and results
# --------------------------------------------------------------------------------------------

_PATTERNS: Final[dict[str, tuple[str, ...]]] = {
    "drums": ("rock", "four_on_floor", "hiphop", "waltz", "brushes"),
    "bass": ("root_bar", "root_quarters", "root_fifth", "rock_eighths", "syncopated", "waltz"),
    "chords": ("sustain", "pulse", "offbeat", "waltz", "strum", "arpeggio"),
    "arpeggio": ("arpeggio", "alberti"),
    "melody": ("melody",),
    "counter": ("sustain",),
}


@dataclass(frozen=True)
class Part:
    """One voice of the arrangement: an instrument from :data:`INSTRUMENTS` playing a role.

    ``pattern`` picks the rhythm (see ``_PATTERNS``); ``"auto"`` lets :func:`render_song` pick
    one from the instrument, meter and seed.
    """

    instrument: str
    role: Role
    pattern: str = "auto"

    def __post_init__(self) -> None:
        if self.instrument not in INSTRUMENTS:
            raise ValueError(f"unknown instrument {self.instrument!r}; known: {sorted(INSTRUMENTS)}")
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; known: {ROLES}")
        if (self.role == "drums") != (INSTRUMENTS[self.instrument].engine == "drums"):
            raise ValueError(f"role {self.role!r} does not fit instrument {self.instrument!r}")
        if self.pattern != "auto" and self.pattern not in _PATTERNS[self.role]:
            raise ValueError(
                f"pattern {self.pattern!r} is not one of {_PATTERNS[self.role]} for role {self.role}"
            )


@dataclass(frozen=True)
class SongSpec:
    """Everything needed to render one song deterministically.

    Attributes:
        tonic: key tonic as a pitch class, 0 = C ... 11 = B.
        mode: ``"major"`` or ``"minor"``.
        tempo_bpm: beats per minute (the beat is a quarter note in 4/4 and 3/4).
        beats_per_bar: 3 or 4.
        progression: Harte triad labels, one per chord slot; it loops for the whole song.
        parts: the arrangement (instrument + role).
        duration_s: length of the rendered audio in seconds.
        seed: seeds every random choice (melody, patterns, velocities, noise).
        chords_per_bar: 1, or 2 (4/4 only: chords change on beats 1 and 3).
        first_beat_s: time of the first downbeat; the audio before it is silent ("N" chord).
        style: a descriptive label ("pop", "rock", "classical", ...) for metadata.
    """

    tonic: int
    mode: Mode
    tempo_bpm: float
    beats_per_bar: int
    progression: tuple[str, ...]
    parts: tuple[Part, ...]
    duration_s: float
    seed: int
    chords_per_bar: int = 1
    first_beat_s: float = 0.0
    style: str = "pop"

    def __post_init__(self) -> None:
        Key(self.tonic, self.mode)      # validates
        if not 30.0 <= self.tempo_bpm <= 300.0:
            raise ValueError(f"tempo_bpm must be within 30..300, got {self.tempo_bpm}")
        if self.beats_per_bar not in (3, 4):
            raise ValueError(f"beats_per_bar must be 3 or 4, got {self.beats_per_bar}")
        if self.chords_per_bar not in (1, 2):
            raise ValueError(f"chords_per_bar must be 1 or 2, got {self.chords_per_bar}")
        if self.chords_per_bar == 2 and self.beats_per_bar != 4:
            raise ValueError("chords_per_bar=2 needs beats_per_bar=4 "
                             f"(got {self.beats_per_bar})")
        if not self.progression:
            raise ValueError("progression must hold at least one chord")
        for label in self.progression:
            _triad(label)
        if not self.parts:
            raise ValueError("parts must hold at least one Part")
        if not 0.0 < self.duration_s <= 900.0:
            raise ValueError(f"duration_s must be within (0, 900], got {self.duration_s}")
        if not 0.0 <= self.first_beat_s < 60.0 / self.tempo_bpm:
            raise ValueError(f"first_beat_s must be within [0, one beat = "
                             f"{60.0 / self.tempo_bpm:.3f} s), got {self.first_beat_s}")

    @property
    def key_label(self) -> str:
        """The key as ``"F# minor"``, ``"Bb major"``."""
        return key_name(self.tonic, self.mode)

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def instrument_names(self) -> tuple[str, ...]:
        """Distinct instrument names in arrangement order."""
        return tuple(dict.fromkeys(p.instrument for p in self.parts))


@dataclass(frozen=True)
class NoteEvent:
    """One note as played. ``program`` is the 0-based GM program (``None`` for drums, whose
    ``pitch`` is a GM percussion key). ``offset_s`` is the note-off (the release tail of the
    sound may ring a little longer)."""

    onset_s: float
    offset_s: float
    pitch: int
    program: int | None
    instrument: str
    velocity: float
    is_drum: bool = False


@dataclass(frozen=True)
class InstrumentInfo:
    """An instrument heard in a song, with the roles and patterns it plays."""

    name: str
    gm_program: int | None
    gm_name: str
    family: str
    is_drum: bool
    roles: tuple[str, ...]
    patterns: tuple[str, ...]


def _r(x: float) -> float:
    return round(float(x), 6)


@dataclass(frozen=True)
class SongAudio:
    """A rendered song and its exact ground truth.

    ``audio`` is float32, shape ``(n,)`` (mono) or ``(n, 2)`` (stereo, soundfile layout),
    peak-normalized to about 0.9.
    """

    audio: np.ndarray
    sample_rate_hz: int
    spec: SongSpec
    beats: tuple[Beat, ...]
    chords: tuple[ChordSegment, ...]
    notes: tuple[NoteEvent, ...]
    instruments: tuple[InstrumentInfo, ...]

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sample_rate_hz

    @property
    def key_label(self) -> str:
        return self.spec.key_label

    @property
    def tempo_bpm(self) -> float:
        return self.spec.tempo_bpm

    @property
    def meter(self) -> int:
        """Beats per bar."""
        return self.spec.beats_per_bar

    @property
    def downbeats(self) -> tuple[float, ...]:
        return downbeats(self.beats)

    def truth(self, include_notes: bool = False) -> dict[str, Any]:
        """The ground truth as a JSON-ready dict (times in seconds, rounded to 1 µs)."""
        out: dict[str, Any] = {
            "key": self.key_label,
            "tonic": Key(self.spec.tonic, self.spec.mode).tonic_name,
            "mode": self.spec.mode,
            "tempo_bpm": _r(self.tempo_bpm),
            "meter": self.meter,
            "time_signature": f"{self.meter}/4",
            "beats": [{"time": _r(b.time_s), "beat_number": b.beat_number} for b in self.beats],
            "downbeats": [_r(t) for t in self.downbeats],
            "chords": [{"start": _r(c.start_s), "end": _r(c.end_s), "label": c.label}
                       for c in self.chords],
            "instruments": [
                {"name": i.name, "gm_program": i.gm_program, "gm_name": i.gm_name,
                 "family": i.family, "is_drum": i.is_drum, "roles": list(i.roles),
                 "patterns": list(i.patterns)}
                for i in self.instruments
            ],
            "style": self.spec.style,
            "progression": list(self.spec.progression),
            "duration_s": _r(self.duration_s),
            "sample_rate_hz": self.sample_rate_hz,
            "channels": 1 if self.audio.ndim == 1 else int(self.audio.shape[1]),
            "seed": self.spec.seed,
            "n_notes": len(self.notes),
        }
        if include_notes:
            out["notes"] = [
                {"onset": _r(n.onset_s), "offset": _r(n.offset_s), "pitch": n.pitch,
                 "program": n.program, "instrument": n.instrument, "is_drum": n.is_drum}
                for n in self.notes
            ]
        return out


# --------------------------------------------------------------------------------------------
# Random specs
# --------------------------------------------------------------------------------------------

# style -> (tempo range, list of candidate arrangements)
_STYLE_TABLE: Final[dict[str, tuple[tuple[float, float], tuple[tuple[Part, ...], ...]]]] = {
    "pop": ((88.0, 130.0), (
        (Part("drums", "drums"), Part("electric bass", "bass"), Part("piano", "chords"),
         Part("synth lead", "melody")),
        (Part("drums", "drums"), Part("electric bass", "bass"), Part("electric piano", "chords"),
         Part("acoustic guitar", "arpeggio"), Part("flute", "melody")),
    )),
    "rock": ((100.0, 160.0), (
        (Part("drums", "drums"), Part("electric bass", "bass", "rock_eighths"),
         Part("electric guitar", "chords", "strum"), Part("organ", "chords", "sustain"),
         Part("synth lead", "melody")),
        (Part("drums", "drums"), Part("electric bass", "bass"),
         Part("electric guitar", "chords", "strum"), Part("trumpet", "melody")),
    )),
    "electronic": ((110.0, 140.0), (
        (Part("drums", "drums", "four_on_floor"), Part("synth bass", "bass"),
         Part("synth pad", "chords"), Part("synth lead", "melody")),
        (Part("drums", "drums", "four_on_floor"), Part("synth bass", "bass", "rock_eighths"),
         Part("synth pad", "chords"), Part("electric piano", "arpeggio"),
         Part("synth lead", "melody")),
    )),
    "folk": ((76.0, 124.0), (
        (Part("drums", "drums", "brushes"), Part("contrabass", "bass"),
         Part("acoustic guitar", "chords", "strum"), Part("violin", "melody")),
        (Part("drums", "drums", "brushes"), Part("electric bass", "bass"),
         Part("acoustic guitar", "arpeggio"), Part("flute", "melody")),
    )),
    "jazz": ((90.0, 150.0), (
        (Part("drums", "drums", "brushes"), Part("contrabass", "bass", "root_quarters"),
         Part("piano", "chords", "offbeat"), Part("trumpet", "melody")),
        (Part("drums", "drums", "brushes"), Part("contrabass", "bass", "root_quarters"),
         Part("electric piano", "chords"), Part("clarinet", "melody")),
    )),
    "hiphop": ((80.0, 100.0), (
        (Part("drums", "drums", "hiphop"), Part("synth bass", "bass", "syncopated"),
         Part("electric piano", "chords"), Part("synth pad", "chords", "sustain")),
    )),
    "ambient": ((70.0, 96.0), (
        (Part("drums", "drums", "brushes"), Part("synth bass", "bass", "root_bar"),
         Part("synth pad", "chords"), Part("harp", "arpeggio"), Part("flute", "melody")),
    )),
    "classical": ((70.0, 116.0), (
        (Part("cello", "bass"), Part("string ensemble", "chords"), Part("violin", "melody")),
        (Part("piano", "bass"), Part("piano", "arpeggio", "alberti"), Part("piano", "melody")),
        (Part("cello", "bass"), Part("viola", "counter"), Part("violin", "counter"),
         Part("violin", "melody")),
        (Part("bassoon", "bass"), Part("french horn", "counter"), Part("clarinet", "counter"),
         Part("oboe", "counter"), Part("flute", "melody")),
    )),
}
STYLES: Final[tuple[str, ...]] = tuple(_STYLE_TABLE)


def random_song_spec(
    rng: np.random.Generator,
    duration_s: float,
    meter: int | None = None,
    *,
    style: str | None = None,
    mode: Mode | None = None,
    parts: Sequence[Part] | None = None,
    tempo_range: tuple[float, float] | None = None,
) -> SongSpec:
    """Draw a varied :class:`SongSpec`.

    Tempo is drawn from the style's range (always within 70..160 BPM unless ``tempo_range``
    says otherwise), the meter is 3/4 about a third of the time, the mode minor about half
    of the time, the tonic uniformly from all 12 pitch classes, the progression from
    :data:`PROGRESSIONS`. ``style``, ``mode``, ``parts`` and ``tempo_range`` override the
    random choices; the arrangement comes from the style unless ``parts`` is given.
    """
    if meter is not None and meter not in (3, 4):
        raise ValueError(f"meter must be 3, 4 or None, got {meter}")
    chosen_style = style if style is not None else str(rng.choice(
        ["pop", "rock", "electronic", "folk", "jazz", "hiphop", "ambient", "classical"]))
    if chosen_style not in _STYLE_TABLE:
        raise ValueError(f"unknown style {chosen_style!r}; known: {STYLES}")
    (lo, hi), arrangements = _STYLE_TABLE[chosen_style]
    if tempo_range is not None:
        lo, hi = tempo_range
    else:
        lo, hi = max(lo, 70.0), min(hi, 160.0)
    if not 30.0 <= lo <= hi <= 300.0:
        raise ValueError(f"tempo range must satisfy 30 <= lo <= hi <= 300, got ({lo}, {hi})")
    beats_per_bar = meter if meter is not None else (3 if rng.random() < 1.0 / 3.0 else 4)
    chosen_mode: Mode = mode if mode is not None else ("minor" if rng.random() < 0.5 else "major")
    tonic = int(rng.integers(0, 12))
    tempo = float(round(rng.uniform(lo, hi), 1))
    numerals = PROGRESSIONS[chosen_mode][int(rng.integers(len(PROGRESSIONS[chosen_mode])))]
    progression = roman_to_harte(numerals, tonic, chosen_mode)
    chords_per_bar = 2 if (beats_per_bar == 4 and rng.random() < 0.25) else 1
    if parts is None:
        chosen_parts = arrangements[int(rng.integers(len(arrangements)))]
    else:
        chosen_parts = tuple(parts)
    if beats_per_bar == 3:
        # Style-fixed 4/4 grooves become the waltz groove in 3/4.
        chosen_parts = tuple(_to_triple_meter(p) for p in chosen_parts)
    spb = 60.0 / tempo
    first_beat = float(round(rng.uniform(0.0, min(0.6, 0.9 * spb)), 3))
    return SongSpec(
        tonic=tonic, mode=chosen_mode, tempo_bpm=tempo, beats_per_bar=beats_per_bar,
        progression=progression, parts=tuple(chosen_parts), duration_s=float(duration_s),
        seed=int(rng.integers(0, 2**31 - 1)), chords_per_bar=chords_per_bar,
        first_beat_s=first_beat, style=chosen_style,
    )


def _to_triple_meter(part: Part) -> Part:
    if part.pattern in ("four_on_floor", "hiphop", "rock"):
        return Part(part.instrument, part.role, "waltz")
    if part.pattern in ("rock_eighths", "syncopated"):
        return Part(part.instrument, part.role, "waltz")
    if part.pattern == "offbeat":
        return Part(part.instrument, part.role, "waltz")
    return part


# --------------------------------------------------------------------------------------------
# Sound generation
# --------------------------------------------------------------------------------------------

_TABLE_SIZE: Final[int] = 4096


class _Renderer:
    """Per-song sound generator with note caches (wavetables, rendered notes, drum hits)."""

    def __init__(self, sample_rate_hz: int, seed: int) -> None:
        self.sr = sample_rate_hz
        self.seed = seed
        self._tables: dict[tuple[tuple[float, ...], int], np.ndarray] = {}
        self._notes: dict[tuple[str, int, int], np.ndarray] = {}
        self._drums: dict[str, np.ndarray] = {}

    # ---- wavetables -------------------------------------------------------------------
    def _table(self, harmonics: tuple[float, ...], f0: float) -> np.ndarray:
        kmax = max(1, min(len(harmonics), int(0.45 * self.sr / max(f0, 1.0))))
        key = (harmonics, kmax)
        table = self._tables.get(key)
        if table is None:
            x = np.arange(_TABLE_SIZE) / _TABLE_SIZE
            table = np.zeros(_TABLE_SIZE + 1)
            wave = np.zeros(_TABLE_SIZE)
            for k in range(1, kmax + 1):
                amp = harmonics[k - 1]
                if amp:
                    wave += amp * np.sin(2.0 * np.pi * k * x)
            peak = float(np.max(np.abs(wave))) or 1.0
            table[:-1] = wave / peak
            table[-1] = table[0]
            self._tables[key] = table
        return table

    @staticmethod
    def _lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
        idx = (phase % 1.0) * _TABLE_SIZE
        i0 = idx.astype(np.int64)
        frac = idx - i0
        return table[i0] * (1.0 - frac) + table[i0 + 1] * frac

    # ---- notes ------------------------------------------------------------------------
    def note(self, inst: InstrumentDef, pitch: int, n_on: int) -> np.ndarray:
        """Unit-velocity samples of one note held for ``n_on`` samples (plus release)."""
        key = (inst.name, pitch, n_on)
        cached = self._notes.get(key)
        if cached is not None:
            return cached
        if inst.engine == "pluck":
            y = self._pluck(inst, pitch, n_on)
        else:
            y = self._additive(inst, pitch, n_on)
        y = y.astype(np.float32)
        self._notes[key] = y
        return y

    def _envelope(self, inst: InstrumentDef, n_on: int, n: int, f0: float) -> np.ndarray:
        sr = self.sr
        t = np.arange(n) / sr
        att = max(inst.attack_s, 1.0 / sr)
        env = np.where(
            t < att, t / att,
            inst.sustain + (1.0 - inst.sustain) * np.exp(-(t - att) / max(inst.decay_s, 1e-3)),
        )
        if inst.decay_tau_s is not None:
            # Lower notes ring longer, as on a piano or a bass.
            tau = inst.decay_tau_s * float(np.clip((261.6 / f0) ** 0.5, 0.4, 2.5))
            env = env * np.exp(-t / tau)
        if n > n_on:
            level = env[n_on - 1] if n_on > 0 else 0.0
            n_rel = n - n_on
            env[n_on:] = level * np.linspace(1.0, 0.0, n_rel, endpoint=False) ** 2
        return env

    def _additive(self, inst: InstrumentDef, pitch: int, n_on: int) -> np.ndarray:
        sr = self.sr
        f0 = _midi_to_hz(pitch)
        n = n_on + int(inst.release_s * sr)
        t = np.arange(n) / sr
        if inst.vibrato_cents > 0.0:
            ramp = np.clip((t - inst.vibrato_delay_s) / 0.3, 0.0, 1.0)
            cents = inst.vibrato_cents * ramp * np.sin(2.0 * np.pi * inst.vibrato_hz * t)
            phase = np.cumsum(f0 * 2.0 ** (cents / 1200.0)) / sr
        else:
            phase = f0 * t
        table = self._table(inst.harmonics, f0)
        y = self._lookup(table, phase)
        if inst.detune_cents:
            y = 0.5 * (y + self._lookup(table, phase * 2.0 ** (inst.detune_cents / 1200.0) + 0.31))
        if inst.bright_tau_s is not None:
            dull_h = tuple(a * math.exp(-0.8 * k) for k, a in enumerate(inst.harmonics))
            dull = self._lookup(self._table(dull_h, f0), phase)
            mix = np.exp(-t / inst.bright_tau_s)
            y = dull + (y - dull) * mix
        if inst.noise:
            rng = np.random.default_rng((self.seed, pitch, 7))
            noise = rng.standard_normal(n)
            noise = np.diff(noise, prepend=0.0) * 0.5
            y = y + inst.noise * noise
        env = self._envelope(inst, n_on, n, f0)
        if inst.tremolo_depth:
            env = env * (1.0 - inst.tremolo_depth * (0.5 + 0.5 * np.sin(2.0 * np.pi * inst.tremolo_hz * t)))
        return y * env

    def _pluck(self, inst: InstrumentDef, pitch: int, n_on: int) -> np.ndarray:
        """Karplus-Strong string, computed one period at a time, then tuned exactly by
        resampling (the integer delay line alone would be up to a third of a tone off)."""
        sr = self.sr
        f0 = _midi_to_hz(pitch)
        n_rel = int(inst.release_s * sr)
        n = n_on + n_rel
        period = max(2, int(sr / f0 - 0.5))
        f_ks = sr / (period + 0.5)
        ratio = f0 / f_ks
        m = int(math.ceil(n * ratio)) + 2
        rng = np.random.default_rng((self.seed, pitch, 11))
        exc = rng.uniform(-1.0, 1.0, period)
        # One-pole low-pass on the excitation: darker pluck for small brightness.
        a = float(np.clip(inst.pluck_brightness, 0.05, 1.0))
        for i in range(1, period):
            exc[i] = a * exc[i] + (1.0 - a) * exc[i - 1]
        exc -= exc.mean()
        y = np.zeros(m + 1)
        y[1:period + 1] = exc[: min(period, m)]
        rho = 10.0 ** (-3.0 / (inst.pluck_decay_s * f_ks))
        k = period + 1
        while k <= m:
            end = min(k + period, m + 1)
            y[k:end] = rho * 0.5 * (y[k - period:end - period] + y[k - period - 1:end - period - 1])
            k = end
        y = y[1:]
        out = np.interp(np.arange(n) * ratio, np.arange(y.size), y)
        peak = float(np.max(np.abs(out))) or 1.0
        out /= peak
        env = np.ones(n)
        env[: min(n, 24)] = np.linspace(0.0, 1.0, min(n, 24))
        if n_rel > 0:
            env[n_on:] = np.linspace(1.0, 0.0, n_rel, endpoint=False) ** 2
        return out * env

    # ---- drums ------------------------------------------------------------------------
    def drum(self, name: str) -> np.ndarray:
        hit = self._drums.get(name)
        if hit is not None:
            return hit
        sr = self.sr
        rng = np.random.default_rng((self.seed, DRUM_KEYS[name], 13))

        def hp_noise(n: int) -> np.ndarray:
            noise = rng.standard_normal(n)
            return np.diff(np.diff(noise, prepend=0.0), prepend=0.0) * 0.25

        if name == "kick":
            n = int(0.45 * sr)
            t = np.arange(n) / sr
            freq = 48.0 + 110.0 * np.exp(-t / 0.035)
            body = np.sin(2.0 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.22)
            click = rng.standard_normal(n) * np.exp(-t / 0.004) * 0.35
            y = body + click
        elif name == "snare":
            n = int(0.3 * sr)
            t = np.arange(n) / sr
            tone = np.sin(2.0 * np.pi * 190.0 * t) * np.exp(-t / 0.06) * 0.6
            y = tone + hp_noise(n) * np.exp(-t / 0.09) * 1.2
        elif name == "closed_hat":
            n = int(0.1 * sr)
            t = np.arange(n) / sr
            y = hp_noise(n) * np.exp(-t / 0.022)
        elif name == "open_hat":
            n = int(0.45 * sr)
            t = np.arange(n) / sr
            y = hp_noise(n) * np.exp(-t / 0.16)
        elif name == "crash":
            n = int(1.8 * sr)
            t = np.arange(n) / sr
            y = hp_noise(n) * np.exp(-t / 0.6)
        else:
            raise ValueError(f"unknown drum {name!r}")
        y = (y / (float(np.max(np.abs(y))) or 1.0)).astype(np.float32)
        self._drums[name] = y
        return y


# --------------------------------------------------------------------------------------------
# Arrangement: from spec to note events
# --------------------------------------------------------------------------------------------

@dataclass
class _Slot:
    """One chord slot of the form: where it is (in beats) and what it is."""

    start_beat: float
    length_beats: float
    label: str
    bar_index: int
    slot_in_phrase: int


@dataclass
class _Event:
    beat: float  # onset, in beats from the first downbeat
    dur_beats: float  # sounding length in beats
    pitch: int
    velocity: float
    drum: str | None = None
    time_offset_s: float = 0.0  # strum spread


@dataclass
class _PartPlan:
    part: Part
    pattern: str
    events: list[_Event] = field(default_factory=list)


def _resolve_pattern(part: Part, spec: SongSpec, rng: np.random.Generator) -> str:
    if part.pattern != "auto":
        return part.pattern
    inst = INSTRUMENTS[part.instrument]
    triple = spec.beats_per_bar == 3
    if part.role == "drums":
        return "waltz" if triple else str(rng.choice(["rock", "four_on_floor", "rock", "hiphop"]))
    if part.role == "bass":
        if triple:
            return str(rng.choice(["waltz", "root_bar"]))
        return str(rng.choice(["root_quarters", "root_fifth", "rock_eighths", "syncopated"]))
    if part.role == "chords":
        if inst.sustained:
            return "sustain"
        if inst.engine == "pluck":
            return str(rng.choice(["strum", "arpeggio"]))
        if triple:
            return "waltz"
        return str(rng.choice(["pulse", "sustain", "offbeat"]))
    if part.role == "arpeggio":
        return "arpeggio"
    if part.role == "melody":
        return "melody"
    return "sustain"


def _drum_events(pattern: str, spec: SongSpec, n_bars: int, rng: np.random.Generator) -> list[_Event]:
    n = spec.beats_per_bar
    ev: list[_Event] = []

    def hit(beat: float, drum: str, vel: float) -> None:
        ev.append(_Event(beat, 0.25, DRUM_KEYS[drum], float(np.clip(vel + rng.normal(0, 0.04), 0.1, 1.0)), drum))

    for bar in range(n_bars):
        b0 = bar * n
        if bar % 8 == 0:
            hit(b0, "crash", 0.7)
        if pattern == "waltz":
            hit(b0, "kick", 1.0)
            hit(b0 + 1, "snare", 0.45)
            hit(b0 + 2, "snare", 0.45)
            for e in range(2 * n):
                hit(b0 + e / 2, "closed_hat", 0.55 if e % 2 == 0 else 0.3)
            continue
        if pattern == "brushes":
            hit(b0, "kick", 0.85)
            if n == 4:
                hit(b0 + 2, "kick", 0.6)
            for beat in range(1, n):
                hit(b0 + beat, "snare", 0.35 if n == 3 else (0.55 if beat % 2 else 0.25))
            for e in range(2 * n):
                hit(b0 + e / 2, "closed_hat", 0.45 if e % 2 == 0 else 0.22)
            continue
        # 4/4 grooves
        if pattern == "four_on_floor":
            for beat in range(4):
                hit(b0 + beat, "kick", 1.0)
                hit(b0 + beat + 0.5, "open_hat", 0.35)
            hit(b0 + 1, "snare", 0.8)
            hit(b0 + 3, "snare", 0.8)
            for e in range(8):
                if e % 2 == 0:
                    hit(b0 + e / 2, "closed_hat", 0.5)
        elif pattern == "hiphop":
            hit(b0, "kick", 1.0)
            hit(b0 + 1.5, "kick", 0.8)
            hit(b0 + 2.5, "kick", 0.7)
            hit(b0 + 1, "snare", 0.95)
            hit(b0 + 3, "snare", 0.95)
            for e in range(8):
                hit(b0 + e / 2, "closed_hat", 0.55 if e % 2 == 0 else 0.3)
        else:  # rock
            hit(b0, "kick", 1.0)
            hit(b0 + 2, "kick", 0.9)
            if bar % 2 == 1:
                hit(b0 + 2.5, "kick", 0.6)
            hit(b0 + 1, "snare", 0.9)
            hit(b0 + 3, "snare", 0.9)
            for e in range(8):
                hit(b0 + e / 2, "closed_hat", 0.6 if e % 2 == 0 else 0.35)
    return ev


def _bass_events(pattern: str, inst: InstrumentDef, slots: list[_Slot],
                 rng: np.random.Generator) -> list[_Event]:
    lo = max(inst.lo, 31)
    ev: list[_Event] = []
    for slot in slots:
        root_pc, _, fifth_pc = _chord_pcs(slot.label)
        root = lo + (root_pc - lo) % 12
        fifth = root + 7 if root + 7 <= inst.hi else root - 5
        octave = root + 12 if root + 12 <= inst.hi else root
        L = slot.length_beats
        s = slot.start_beat
        if pattern == "root_bar":
            notes = [(0.0, L, root)]
        elif pattern == "root_quarters":
            # Walking-ish: root, root/third-ish approach using chord tones.
            seq = [root, fifth, octave, fifth]
            notes = [(float(b), 1.0, seq[b % 4]) for b in range(int(L))]
        elif pattern == "root_fifth":
            notes = [(0.0, min(2.0, L), root)] + ([(2.0, L - 2.0, fifth)] if L > 2 else [])
        elif pattern == "rock_eighths":
            notes = [(e / 2, 0.5, root) for e in range(int(2 * L))]
        elif pattern == "syncopated":
            notes = [(0.0, 1.5, root), (1.5, 0.5, root)]
            if L > 2:
                notes += [(2.0, 1.0, fifth), (3.0, L - 3.0, octave)]
        elif pattern == "waltz":
            notes = [(0.0, 1.0, root)] + ([(2.0, 1.0, fifth)] if L >= 3 else [])
        else:
            raise ValueError(f"unknown bass pattern {pattern!r}")
        for off, dur, pitch in notes:
            if off >= L or dur <= 0:
                continue
            accent = 0.1 if off == 0.0 else 0.0
            ev.append(_Event(s + off, min(dur, L - off) * 0.92, pitch,
                             float(np.clip(0.75 + accent + rng.normal(0, 0.04), 0.1, 1.0))))
    return ev


def _voicing(label: str, prev: list[int] | None, center: float, lo: int, hi: int) -> list[int]:
    """Close-position triad (plus doubled root when there is room) nearest to the previous
    voicing: smooth voice leading, as a keyboard player would voice it."""
    pcs = _chord_pcs(label)
    target = float(np.mean(prev)) if prev else center
    target = 0.5 * target + 0.5 * center  # do not drift away from the register
    best: list[int] | None = None
    best_cost = math.inf
    for inversion in range(3):
        order = [pcs[(inversion + i) % 3] for i in range(3)]
        for base_oct in range(2, 7):
            bottom = base_oct * 12 + order[0]
            notes = [bottom]
            for pc in order[1:]:
                nxt = notes[-1] + ((pc - notes[-1]) % 12 or 12)
                notes.append(nxt)
            if notes[0] < lo or notes[-1] > hi:
                continue
            cost = abs(float(np.mean(notes)) - target)
            if cost < best_cost:
                best, best_cost = notes, cost
    if best is None:
        raise ValueError(f"cannot voice {label} within MIDI [{lo}, {hi}]")
    return best


def _chord_events(pattern: str, inst: InstrumentDef, slots: list[_Slot], beats_per_bar: int,
                  rng: np.random.Generator) -> list[_Event]:
    lo, hi = max(inst.lo, 48), min(inst.hi, 79)
    ev: list[_Event] = []
    prev: list[int] | None = None
    for slot in slots:
        voicing = _voicing(slot.label, prev, 62.0, lo, hi)
        prev = voicing
        L, s = slot.length_beats, slot.start_beat
        if pattern == "sustain":
            hits = [(0.0, L * 0.97)]
        elif pattern == "pulse":
            hits = [(float(b), 0.85) for b in range(int(L))]
        elif pattern == "offbeat":
            hits = [(b + 0.5, 0.4) for b in range(int(L))]
        elif pattern == "waltz":
            hits = [(float(b), 0.8) for b in range(1, int(L))] if L >= 2 else [(0.0, L * 0.9)]
        elif pattern == "strum":
            hits = [(float(b), 0.95) for b in range(int(L))]
            if beats_per_bar == 4 and L >= 4:
                hits = [(0.0, 1.45), (1.5, 0.95), (2.5, 0.45), (3.0, 0.95)]
        elif pattern == "arpeggio":
            seq = voicing + [voicing[0] + 12, voicing[1] + 12 if voicing[1] + 12 <= inst.hi else voicing[2]]
            order = [0, 1, 2, 3, 4, 3, 2, 1]
            for e in range(int(2 * L)):
                pitch = seq[order[e % len(order)]]
                ev.append(_Event(s + e / 2, 0.9, pitch,
                                 float(np.clip(0.55 + (0.1 if e == 0 else 0.0) + rng.normal(0, 0.04), 0.1, 1.0))))
            continue
        elif pattern == "alberti":
            low, mid, top = voicing[0], voicing[1], voicing[2]
            order2 = [low, top, mid, top]
            for e in range(int(2 * L)):
                ev.append(_Event(s + e / 2, 0.5, order2[e % 4],
                                 float(np.clip(0.5 + (0.1 if e == 0 else 0.0) + rng.normal(0, 0.03), 0.1, 1.0))))
            continue
        else:
            raise ValueError(f"unknown chord pattern {pattern!r}")
        for off, dur in hits:
            if off >= L:
                continue
            vel = float(np.clip(0.6 + (0.1 if off == 0.0 else 0.0) + rng.normal(0, 0.04), 0.1, 1.0))
            for i, pitch in enumerate(voicing):
                strum = 0.012 * i if pattern == "strum" else 0.0
                ev.append(_Event(s + off, min(dur, L - off), pitch, vel, time_offset_s=strum))
    return ev


def _arpeggio_events(pattern: str, inst: InstrumentDef, slots: list[_Slot], beats_per_bar: int,
                     rng: np.random.Generator) -> list[_Event]:
    ranged = replace(inst, lo=max(inst.lo, 52), hi=min(inst.hi, 84))
    return _chord_events(pattern, ranged, slots, beats_per_bar, rng)


def _scale_for_chord(scale_pcs: list[int], chord: tuple[int, int, int]) -> list[int]:
    """The key's scale, with chord tones outside it (e.g. the leading tone of a harmonic-minor
    V) replacing the scale tone a semitone away."""
    out = set(scale_pcs)
    for pc in chord:
        if pc not in out:
            out.discard((pc - 1) % 12)
            out.discard((pc + 1) % 12)
            out.add(pc)
    return sorted(out)


_RHYTHMS: Final[dict[int, tuple[tuple[float, ...], ...]]] = {
    4: ((1, 1, 1, 1), (2, 1, 1), (1, 1, 2), (1.5, 0.5, 1, 1), (0.5, 0.5, 1, 1, 1),
        (1, 0.5, 0.5, 2), (3, 1), (0.5, 0.5, 0.5, 0.5, 1, 1), (2, 2)),
    3: ((1, 1, 1), (2, 1), (1, 2), (1.5, 0.5, 1), (0.5, 0.5, 1, 1), (1, 0.5, 0.5, 1), (3,)),
}


def _melody_phrase(spec: SongSpec, inst: InstrumentDef, phrase_slots: list[_Slot],
                   rng: np.random.Generator) -> list[_Event]:
    """A melody over one pass of the progression (beats relative to the phrase start)."""
    n = spec.beats_per_bar
    scale = MAJOR_SCALE if spec.mode == "major" else MINOR_SCALE
    key_pcs = [(spec.tonic + d) % 12 for d in scale]
    lo, hi = max(inst.lo, 60), min(inst.hi, 88)
    if hi - lo < 12:
        lo, hi = inst.lo, inst.hi
    center = (lo + hi) / 2.0
    pitch = _nearest_with_pc([spec.tonic], center, lo, hi)
    phrase_beats = sum(s.length_beats for s in phrase_slots)
    n_bars = int(round(phrase_beats / n))
    base = phrase_slots[0].start_beat
    ev: list[_Event] = []

    def slot_at(beat: float) -> _Slot:
        for s in phrase_slots:
            if s.start_beat - base <= beat < s.start_beat - base + s.length_beats:
                return s
        return phrase_slots[-1]

    for bar in range(n_bars):
        last_bar = bar == n_bars - 1
        rhythm = (float(n),) if last_bar and rng.random() < 0.6 else _RHYTHMS[n][int(rng.integers(len(_RHYTHMS[n])))]
        pos = 0.0
        for i, dur in enumerate(rhythm):
            beat = bar * n + pos
            pos += dur
            chord = _chord_pcs(slot_at(beat).label)
            strong = (beat % n == 0) or (n == 4 and beat % n == 2)
            final = last_bar and i == len(rhythm) - 1
            if not strong and not final and rng.random() < 0.12:
                continue  # a rest
            if final:
                pitch = _nearest_with_pc([spec.tonic], pitch, lo, hi)
            elif strong:
                pitch = _nearest_with_pc(list(chord), pitch + rng.integers(-3, 4), lo, hi)
            else:
                pcs = _scale_for_chord(key_pcs, chord)
                step = int(rng.choice([-2, -1, -1, 1, 1, 2, 0, -3, 3]))
                candidates = [p for p in range(lo, hi + 1) if p % 12 in pcs]
                idx = int(np.argmin([abs(p - pitch) for p in candidates]))
                idx = int(np.clip(idx + step, 0, len(candidates) - 1))
                pitch = candidates[idx]
            vel = float(np.clip(0.7 + (0.08 if strong else 0.0) + rng.normal(0, 0.05), 0.1, 1.0))
            legato = 0.95 if inst.sustained else 0.9
            ev.append(_Event(beat, dur * legato, int(pitch), vel))
    return ev


def _melody_events(spec: SongSpec, inst: InstrumentDef, slots: list[_Slot],
                   rng: np.random.Generator) -> list[_Event]:
    """Phrases repeat (as tunes do), with a fresh variation on every other pass."""
    per_phrase = len(spec.progression)
    phrases = [slots[i:i + per_phrase] for i in range(0, len(slots), per_phrase)]
    # A phrase must span whole bars for the melody; if the progression is an odd number of
    # half-bar slots, group two passes.
    if (per_phrase % spec.chords_per_bar) != 0:
        phrases = [slots[i:i + 2 * per_phrase] for i in range(0, len(slots), 2 * per_phrase)]
    theme: list[_Event] | None = None
    variation: list[_Event] | None = None
    ev: list[_Event] = []
    for idx, phrase in enumerate(phrases):
        base = phrase[0].start_beat
        if theme is None:
            theme = _melody_phrase(spec, inst, phrase, rng)
            variation = _melody_phrase(spec, inst, phrase, rng)
        source = theme if idx % 4 != 2 else variation
        assert source is not None
        phrase_len = sum(s.length_beats for s in phrase)
        for e in source:
            if e.beat < phrase_len:
                ev.append(_Event(base + e.beat, min(e.dur_beats, phrase_len - e.beat), e.pitch, e.velocity))
    return ev


def _counter_events(index: int, inst: InstrumentDef, slots: list[_Slot],
                    rng: np.random.Generator) -> list[_Event]:
    """A sustained inner voice: one chord tone per chord (third, fifth, root by voice index),
    moving to the nearest such tone."""
    center = {0: 67.0, 1: 62.0, 2: 57.0}.get(index, 55.0)
    lo, hi = inst.lo, min(inst.hi, 84)
    center = float(np.clip(center, lo + 3, hi - 3))
    pitch: float = center
    ev: list[_Event] = []
    for slot in slots:
        pcs = _chord_pcs(slot.label)
        pc = pcs[(1 + index) % 3]
        pitch = _nearest_with_pc([pc], 0.6 * pitch + 0.4 * center, lo, hi)
        ev.append(_Event(slot.start_beat, slot.length_beats * 0.96, int(pitch),
                         float(np.clip(0.6 + rng.normal(0, 0.04), 0.1, 1.0))))
    return ev


# Loudness of each role in the mix (dB RMS before the final peak normalization).
_ROLE_LEVEL_DB: Final[dict[str, float]] = {
    "drums": -15.0, "bass": -18.0, "chords": -22.0, "arpeggio": -23.0,
    "melody": -18.5, "counter": -22.0,
}
_ROLE_PAN: Final[dict[str, float]] = {
    "drums": 0.0, "bass": 0.0, "chords": -0.35, "arpeggio": 0.4, "melody": 0.15, "counter": 0.0,
}


def render_song(spec: SongSpec, sample_rate_hz: int = 44100, *, stereo: bool = False) -> SongAudio:
    """Render ``spec`` to audio and return it with its exact ground truth.

    Deterministic: the same spec and sample rate give bit-identical audio. The audio is
    float32, mono ``(n,)`` or stereo ``(n, 2)``, peak-normalized to 0.9, with
    ``n = round(spec.duration_s * sample_rate_hz)``.
    """
    if not 8000 <= sample_rate_hz <= 192000:
        raise ValueError(f"sample_rate_hz must be within 8000..192000, got {sample_rate_hz}")
    sr = int(sample_rate_hz)
    rng = np.random.default_rng(spec.seed)
    n_samples = int(round(spec.duration_s * sr))
    duration = n_samples / sr
    spb = spec.seconds_per_beat
    t0 = spec.first_beat_s
    nbeat = spec.beats_per_bar

    # ---- the grid -------------------------------------------------------------------
    beats: list[Beat] = []
    i = 0
    while t0 + i * spb < duration - 1e-9:
        beats.append(Beat(t0 + i * spb, i % nbeat + 1))
        i += 1
    n_bars = max(1, int(math.ceil(len(beats) / nbeat)))
    slot_beats = nbeat / spec.chords_per_bar
    slots: list[_Slot] = []
    n_slots = n_bars * spec.chords_per_bar
    # Round up to whole passes of the progression so melodies see complete phrases.
    per = len(spec.progression)
    n_slots_full = int(math.ceil(n_slots / per)) * per
    for j in range(n_slots_full):
        slots.append(_Slot(j * slot_beats, slot_beats, spec.progression[j % per],
                           j // spec.chords_per_bar, j % per))

    chords: list[ChordSegment] = []
    if t0 > 0:
        chords.append(ChordSegment(0.0, t0, "N"))
    for slot in slots:
        start = t0 + slot.start_beat * spb
        if start >= duration - 1e-9:
            break
        end = min(duration, t0 + (slot.start_beat + slot.length_beats) * spb)
        if chords and chords[-1].label == slot.label:
            chords[-1] = ChordSegment(chords[-1].start_s, end, slot.label)
        else:
            chords.append(ChordSegment(start, end, slot.label))
    if chords[-1].end_s < duration:
        chords[-1] = ChordSegment(chords[-1].start_s, duration, chords[-1].label)

    # ---- the arrangement -------------------------------------------------------------
    plans: list[_PartPlan] = []
    counter_index = 0
    for part in spec.parts:
        inst = INSTRUMENTS[part.instrument]
        pattern = _resolve_pattern(part, spec, rng)
        if part.role == "drums":
            events = _drum_events(pattern, spec, n_bars, rng)
        elif part.role == "bass":
            events = _bass_events(pattern, inst, slots, rng)
        elif part.role == "chords":
            events = _chord_events(pattern, inst, slots, nbeat, rng)
        elif part.role == "arpeggio":
            events = _arpeggio_events(pattern, inst, slots, nbeat, rng)
        elif part.role == "melody":
            events = _melody_events(spec, inst, slots, rng)
        else:
            events = _counter_events(counter_index, inst, slots, rng)
            counter_index += 1
        plans.append(_PartPlan(part, pattern, events))

    # ---- sound ----------------------------------------------------------------------
    renderer = _Renderer(sr, spec.seed)
    notes: list[NoteEvent] = []
    mix = np.zeros((n_samples, 2) if stereo else n_samples, dtype=np.float32)
    n_counter = max(1, counter_index)
    counter_seen = 0
    for plan in plans:
        inst = INSTRUMENTS[plan.part.instrument]
        buf = np.zeros(n_samples, dtype=np.float32)
        for e in plan.events:
            onset = t0 + e.beat * spb + e.time_offset_s
            start = int(round(onset * sr))
            if start >= n_samples:
                continue
            if e.drum is not None:
                y = renderer.drum(e.drum)
                offset = onset + e.dur_beats * spb
            else:
                n_on = max(1, int(round(e.dur_beats * spb * sr)))
                y = renderer.note(inst, e.pitch, n_on)
                offset = onset + n_on / sr
            stop = min(n_samples, start + y.size)
            buf[start:stop] += e.velocity * y[: stop - start]
            notes.append(NoteEvent(_r(onset), _r(min(offset, duration)), e.pitch, inst.gm_program,
                                   inst.name, round(e.velocity, 3), e.drum is not None))
        rms = float(np.sqrt(np.mean(buf.astype(np.float64) ** 2)))
        if rms > 0.0:
            buf *= np.float32(10.0 ** (_ROLE_LEVEL_DB[plan.part.role] / 20.0) / rms)
        if stereo:
            pan = _ROLE_PAN[plan.part.role]
            if plan.part.role == "counter":
                pan = -0.5 + counter_seen / max(1, n_counter - 1) if n_counter > 1 else 0.0
                counter_seen += 1
            angle = (pan + 1.0) * math.pi / 4.0
            mix[:, 0] += buf * np.float32(math.cos(angle) * math.sqrt(2.0))
            mix[:, 1] += buf * np.float32(math.sin(angle) * math.sqrt(2.0))
        else:
            mix += buf
    fade = min(n_samples, int(0.02 * sr))
    if fade > 0:
        ramp = np.linspace(1.0, 0.0, fade, dtype=np.float32)
        if stereo:
            mix[-fade:] *= ramp[:, None]
        else:
            mix[-fade:] *= ramp
    peak = float(np.max(np.abs(mix)))
    if peak > 0.0:
        mix *= np.float32(0.9 / peak)
    notes.sort(key=lambda n: (n.onset_s, n.pitch))

    infos: dict[str, InstrumentInfo] = {}
    for plan in plans:
        inst = INSTRUMENTS[plan.part.instrument]
        old = infos.get(inst.name)
        roles = (old.roles if old else ()) + ((plan.part.role,) if not old or plan.part.role not in old.roles else ())
        pats = (old.patterns if old else ()) + ((plan.pattern,) if not old or plan.pattern not in old.patterns else ())
        infos[inst.name] = InstrumentInfo(inst.name, inst.gm_program, inst.gm_name, inst.family,
                                          inst.engine == "drums", roles, pats)
    return SongAudio(
        audio=mix.astype(np.float32, copy=False),
        sample_rate_hz=sr,
        spec=spec,
        beats=tuple(beats),
        chords=tuple(chords),
        notes=tuple(notes),
        instruments=tuple(infos.values()),
    )
