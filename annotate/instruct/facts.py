"""What the instruction writers know about one clip: a small typed view, free of Beam and of
``pipelines/`` (``pipelines/instruct.py`` builds it from the schema records).

Every field is something a listener could, in principle, hear or be told about the excerpt:
metadata (tags, genres, caption, instruments, composer...) and annotations (tempo, meter, key,
chords, notes). ``audio_uri``/``source_id``/``clip_id`` are kept only so that validation can
reject replies that leak them (and dead letters can name the input); they are never rendered
into prompts.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from llark.errors import LlarkError
from llark.music import ChordSegment, MusicLabelError, note_name, parse_chord, spell_key

#: General MIDI program names, 1-based as MusicNet writes them (1 = Acoustic Grand Piano).
GM_PROGRAMS: tuple[str, ...] = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano", "honky-tonk piano",
    "electric piano", "electric piano", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music box", "vibraphone", "marimba", "xylophone", "tubular bells",
    "dulcimer",
    "drawbar organ", "percussive organ", "rock organ", "church organ", "reed organ", "accordion",
    "harmonica", "tango accordion",
    "nylon-string guitar", "steel-string guitar", "jazz guitar", "clean electric guitar",
    "muted electric guitar", "overdriven guitar", "distortion guitar", "guitar harmonics",
    "acoustic bass", "fingered electric bass", "picked electric bass", "fretless bass",
    "slap bass", "slap bass", "synth bass", "synth bass",
    "violin", "viola", "cello", "contrabass", "tremolo strings", "pizzicato strings",
    "orchestral harp", "timpani",
    "string ensemble", "string ensemble", "synth strings", "synth strings", "choir", "voice",
    "synth voice", "orchestra hit",
    "trumpet", "trombone", "tuba", "muted trumpet", "french horn", "brass section", "synth brass",
    "synth brass",
    "soprano sax", "alto sax", "tenor sax", "baritone sax", "oboe", "english horn", "bassoon",
    "clarinet",
    "piccolo", "flute", "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle",
    "ocarina",
    "square lead synth", "sawtooth lead synth", "calliope", "chiff lead", "charang", "voice lead",
    "fifths lead", "bass lead",
    "new age pad", "warm pad", "polysynth pad", "choir pad", "bowed pad", "metallic pad",
    "halo pad", "sweep pad",
    "rain effect", "soundtrack effect", "crystal effect", "atmosphere effect", "brightness effect",
    "goblins effect", "echoes effect", "sci-fi effect",
    "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle bell", "agogo", "steel drums", "woodblock", "taiko drum", "melodic tom", "synth drum",
    "reverse cymbal",
    "guitar fret noise", "breath noise", "seashore", "bird tweet", "telephone ring", "helicopter",
    "applause", "gunshot",
)
assert len(GM_PROGRAMS) == 128

#: An annotated key, tempo, meter or chord timeline is stated as a fact (by the template, in
#: the LLM's facts, and accepted by grounding) only when its confidence is at least this; below
#: it the writers say "no clear key" or make no claim. The confidences are calibrated
#: probabilities (issue 13, docs/annotate.md), so 0.5 means "more likely right than wrong".
DEFAULT_MIN_CONFIDENCE = 0.5


class FactsError(LlarkError, ValueError):
    """A clip's metadata or annotation cannot be turned into facts (NaN tempo, bad window...)."""


def program_name(program: int) -> str:
    """MusicNet's 1-based General MIDI program → a readable instrument name."""
    if not 1 <= program <= 128:
        raise FactsError(f"General MIDI program {program} is outside 1..128")
    return GM_PROGRAMS[program - 1]


def midi_note_name(pitch: int) -> str:
    """``60`` → ``"C4"``, ``70`` → ``"Bb4"`` (scientific pitch notation, MIDI 60 = middle C;
    :func:`llark.music.note_name`'s neutral spelling)."""
    return f"{note_name(pitch % 12)}{pitch // 12 - 1}"


#: One chord of the timeline: a Harte label over seconds from the start of the clip.


@dataclass(frozen=True)
class NoteSummary:
    """What a score-aligned transcription says about the excerpt, in a few numbers."""

    n_notes: int
    lowest: str                                   # "C2"
    highest: str                                  # "A6"
    instruments: tuple[tuple[str, int], ...]      # (name, notes), most notes first
    notes_per_s: float

    @classmethod
    def from_notes(cls, notes: Iterable[tuple[float, float, int, int]], duration_s: float
                   ) -> "NoteSummary | None":
        """``notes``: ``(start_s, end_s, program, pitch_midi)``; ``None`` when there are none."""
        items = list(notes)
        if not items:
            return None
        pitches = [p for _s, _e, _prog, p in items]
        per_instrument: Counter[str] = Counter(program_name(prog) for _s, _e, prog, _p in items)
        ranked = tuple(sorted(per_instrument.items(), key=lambda kv: (-kv[1], kv[0])))
        return cls(len(items), midi_note_name(min(pitches)), midi_note_name(max(pitches)), ranked,
                   round(len(items) / max(duration_s, 1e-6), 2))


@dataclass(frozen=True)
class ClipFacts:
    """The typed input of every instruction writer (template or LLM) for one clip."""

    clip_id: str
    dataset: str
    duration_s: float
    source_id: str = ""
    audio_uri: str = ""                  # where the audio is (for leak checks and dead letters)
    title: str = ""
    artist: str = ""
    album: str = ""
    tags: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    caption: str = ""
    aspects: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    instruments_complete: bool = False   # True when ``instruments`` lists everything that plays
    composer: str = ""
    composition: str = ""
    movement: str = ""
    ensemble: str = ""
    tempo_bpm: float = 0.0               # 0 = unknown
    tempo_confidence: float = 0.0
    meter: int = 0                       # beats per bar; 0 = unknown
    meter_confidence: float = 0.0
    key: str = ""                        # "F# minor", "Bb major"; "" = unknown / no key
    key_confidence: float = 0.0
    chords: tuple[ChordSegment, ...] = ()
    chords_confidence: float = 0.0
    notes: NoteSummary | None = None
    is_silent: bool = False

    @property
    def audio_name(self) -> str:
        """Base name of the audio file (``"000002.mp3"``), never rendered into a prompt."""
        return self.audio_uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def __post_init__(self) -> None:
        for name in ("duration_s", "tempo_bpm", "tempo_confidence", "meter_confidence",
                     "key_confidence", "chords_confidence"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise FactsError(f"{self.clip_id}: {name} = {value!r} (must be finite and >= 0)")
        if self.duration_s <= 0:
            raise FactsError(f"{self.clip_id}: duration_s = {self.duration_s} (must be > 0)")
        if self.meter < 0:
            raise FactsError(f"{self.clip_id}: meter = {self.meter} (beats per bar, >= 0)")
        try:
            spell_key(self.key)
        except MusicLabelError as exc:
            raise FactsError(f"{self.clip_id}: key {self.key!r} cannot be read ({exc})") from None
        for span in self.chords:
            if not (math.isfinite(span.start_s) and math.isfinite(span.end_s)) \
                    or span.end_s < span.start_s:
                raise FactsError(f"{self.clip_id}: chord {span.label!r} spans "
                                 f"{span.start_s}..{span.end_s} s")
            try:
                parse_chord(span.label)
            except MusicLabelError as exc:
                raise FactsError(f"{self.clip_id}: chord {span.label!r} cannot be read "
                                 f"({exc})") from None

    # What may be stated as a fact (one rule for the template, the prompts and grounding).

    def clear_key(self, min_confidence: float) -> str:
        """The key in musicians' spelling when it is clear enough to state, else ``""``."""
        return spell_key(self.key) if self.key and self.key_confidence >= min_confidence else ""

    def clear_tempo(self, min_confidence: float) -> float:
        """The tempo when it is clear enough to state, else 0."""
        return self.tempo_bpm if self.tempo_bpm > 0 and \
            self.tempo_confidence >= min_confidence else 0.0

    def clear_meter(self, min_confidence: float) -> int:
        """Beats per bar when clear enough to state, else 0."""
        return self.meter if self.meter > 0 and self.meter_confidence >= min_confidence else 0

    def clear_chords(self, min_confidence: float) -> bool:
        """May the chord timeline be named?"""
        return self.chords_confidence >= min_confidence and \
            any(c.label not in ("N", "X") for c in self.chords)
