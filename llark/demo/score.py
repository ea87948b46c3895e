"""The score renderer: real compositions from the music21 corpus, rendered with FluidSynth.

Pieces come from the corpus that ships inside the ``music21`` package, limited to the Bach
chorales, the Essen folk songs and Ryan's Mammoth Collection (:data:`SOURCES`; the rest of
that corpus is held out for acceptance). Every label comes from the score:

* **key**: the key signature plus the final bass note (the lowest note sounding at the end):
  the signature's major tonic → major, its relative minor → minor, anything else is a modal
  ending and the piece is refused (:class:`ScoreRejected`, reason ``"modal"``);
* **meter**: the time signature; only 3/4 and 4/4 without changes are kept (the bar lengths
  the beat trackers model), beats are quarter notes;
* **beats and downbeats**: from the bar lines (a pickup or a bar split at a fermata is
  numbered from its place in the bar, music21's ``paddingLeft``);
* **chords** (pieces with two parts or more): ``chordify()`` reduced to Harte labels:
  major / minor triads → ``R:maj`` / ``R:min``, dominant sevenths → ``R:7`` (scored as major
  by mir_eval's majmin), every other sonority → ``X`` (not scored). Monophonic tunes have no
  chord labels.

:func:`render` writes a humanised MIDI file (onset jitter, a phrase-level dynamic swell,
bar accents, per-note velocity noise, slightly detached articulation) at a constant tempo
with General MIDI programs that suit the piece (:data:`PROGRAMS`), renders it with the
``fluidsynth`` command through a chosen soundfont (:func:`soundfonts`) and cuts the first
``seconds``. The labels are the score's, on the un-jittered grid of that tempo.

music21, mido and the ``fluidsynth`` program are needed only here (``make system-deps``
installs FluidSynth and the Debian GM soundfonts).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from llark.music import chord_label as harte_label
from llark.music import key_name, note_name
from llark.errors import LlarkError

#: Corpus folders the development set may use (the rest of the corpus is held out).
SOURCES: Final[dict[str, str]] = {"bach": "bach", "essen": "essenFolksong",
                                  "ryans": "ryansMammoth"}
#: Soundfonts from Debian packages, tried in this order.
SOUNDFONT_PATHS: Final[tuple[str, ...]] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",          # fluid-soundfont-gm
    "/usr/share/sounds/sf2/TimGM6mb.sf2",            # timgm6mb-soundfont
    "/usr/share/sounds/sf3/MuseScore_General.sf3",   # musescore-general-soundfont
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
)
#: General MIDI programs per kind of piece: a list of ensembles, one program per part
#: (top voice first; the last program repeats for further parts).
PROGRAMS: Final[dict[str, tuple[tuple[int, ...], ...]]] = {
    # chorales: organ, strings, choir, brass, woodwinds
    "bach": ((19,), (40, 41, 42, 43), (52,), (56, 60, 57, 58), (73, 68, 71, 70), (48,)),
    # folk songs: flute, recorder, accordion, violin, clarinet, piano, nylon guitar, oboe
    "essen": ((73,), (74,), (21,), (40,), (71,), (0,), (24,), (68,)),
    # fiddle tunes: violin, fiddle, flute, accordion, piano, banjo, piccolo, harmonica
    "ryans": ((40,), (110,), (73,), (21,), (0,), (105,), (72,), (22,)),
}
METERS: Final[dict[str, int]] = {"4/4": 4, "3/4": 3}
#: Drum-kit accompaniments (General MIDI channel 10): per beat of the bar (1-based), the kit
#: pieces struck on the beat, then those struck on the eighth after it. Kick 36, snare 38,
#: closed hi-hat 42, pedal hi-hat 44, ride 51. Kick and snare mark the quarter-note beat (the
#: score's beat, the label), as a drummer accompanying the tune would.
DRUM_PATTERNS: Final[dict[str, dict[int, dict[int, tuple[tuple[int, ...], tuple[int, ...]]]]]] = {
    "rock": {4: {1: ((36, 42), (42,)), 2: ((38, 42), (42,)), 3: ((36, 42), (42,)),
                 4: ((38, 42), (42,))},
             3: {1: ((36, 42), (42,)), 2: ((38, 42), (42,)), 3: ((38, 42), (42,))}},
    "ride": {4: {1: ((36, 51), ()), 2: ((38, 51, 44), (51,)), 3: ((36, 51), ()),
                 4: ((38, 51, 44), (51,))},
             3: {1: ((36, 51), ()), 2: ((44, 51), ()), 3: ((44, 51), ())}},
    "quarters": {4: {1: ((36,), ()), 2: ((38,), ()), 3: ((36,), ()), 4: ((38,), ())},
                 3: {1: ((36,), ()), 2: ((38,), ()), 3: ((38,), ())}},
}
TICKS_PER_QUARTER: Final[int] = 480


class ScoreRejected(LlarkError, ValueError):
    """A piece the development set cannot use; ``reason`` is a short counted category
    (``"meter"``, ``"modal"``, ``"no_key"``, ``"empty"``, ``"parse"``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class ScoreNote:
    """One note: onset and duration in quarter notes from the start, MIDI pitch, part."""

    onset_q: float
    duration_q: float
    pitch: int
    part: int


@dataclass(frozen=True)
class ScoreFacts:
    """What a score says: its notes and its labels, in quarter notes."""

    id: str
    source: str                                       # a key of SOURCES
    key: str                                          # "Bb major" (llark.music spelling)
    meter: int                                        # 3 or 4 (quarter-note beats per bar)
    beats_q: tuple[tuple[float, int], ...]            # (offset, 1-based number in the bar)
    chords_q: tuple[tuple[float, float, str], ...]    # (start, end, Harte); () = unknown
    notes: tuple[ScoreNote, ...]
    n_parts: int
    end_q: float


@dataclass(frozen=True)
class RenderSpec:
    """How one rendering of a piece sounds."""

    tempo_bpm: float              # quarter notes per minute
    soundfont: str                # path of a .sf2/.sf3 file
    programs: tuple[int, ...]     # GM program per part (the last repeats)
    seed: int                     # humanisation seed
    seconds: float = 24.0         # length of the cut (shorter pieces stay shorter)
    sample_rate_hz: int = 44100
    timing_jitter_s: float = 0.012   # std of the onset jitter
    velocity: int = 80               # mean MIDI velocity
    drums: str = ""                  # a key of DRUM_PATTERNS; "" = no drum kit


@dataclass(frozen=True)
class RenderedScore:
    """Audio of one rendering and its labels in seconds."""

    id: str
    audio: np.ndarray                                 # (n,) float32 mono
    sample_rate_hz: int
    key: str
    meter: int
    tempo_bpm: float
    beats: tuple[tuple[float, int], ...]              # (time_s, number)
    chords: tuple[tuple[float, float, str], ...]      # () = unknown (monophonic)
    spec: RenderSpec


# --------------------------------------------------------------------------- reading

def corpus_paths(source: str) -> list[Path]:
    """The corpus files of one source (sorted)."""
    from music21 import corpus

    if source not in SOURCES:
        raise ValueError(f"source must be one of {tuple(SOURCES)}, got {source!r}")
    folder = f"/corpus/{SOURCES[source]}/"
    exts = (".mxl", ".xml", ".krn") if source == "bach" else (".abc",)
    return sorted(p for p in corpus.getCorePaths()
                  if folder in str(p).replace("\\", "/") and p.suffix in exts)


def chord_label(pitch_classes: set[int], chord: Any, key: str) -> str:
    """A chordify sonority → Harte spelled in ``key``: ``R:maj`` / ``R:min`` / ``R:7``
    (dominant seventh), ``X`` for any other sonority (passing notes, diminished, unisons)."""
    if len(pitch_classes) < 3:
        return "X"
    root = chord.root().pitchClass
    if chord.isMajorTriad():
        return harte_label(root, "maj", key)
    if chord.isMinorTriad():
        return harte_label(root, "min", key)
    if chord.isDominantSeventh():
        return harte_label(root, "7", key)
    return "X"


def _merge(chords: list[tuple[float, float, str]]) -> tuple[tuple[float, float, str], ...]:
    out: list[tuple[float, float, str]] = []
    for s, e, lab in chords:
        if out and out[-1][2] == lab and abs(out[-1][1] - s) < 1e-6:
            out[-1] = (out[-1][0], e, lab)
        elif e > s:
            out.append((s, e, lab))
    return tuple(out)


def read_score(score: Any, piece_id: str, source: str) -> ScoreFacts:
    """A parsed music21 score → its notes and labels. Raises :class:`ScoreRejected`."""
    from music21 import key as m21key
    from music21 import meter as m21meter
    from music21 import note as m21note
    from music21 import stream as m21stream

    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    flat = score.flatten()
    sigs = {ts.ratioString for ts in flat.getElementsByClass(m21meter.TimeSignature)}
    if len(sigs) != 1:
        raise ScoreRejected("meter", f"{piece_id}: time signatures {sorted(sigs)}")
    sig = sigs.pop()
    if sig not in METERS:
        raise ScoreRejected("meter", f"{piece_id}: time signature {sig}")
    meter = METERS[sig]
    keysigs = {k.sharps for k in flat.getElementsByClass(m21key.KeySignature)}
    if len(keysigs) != 1:
        raise ScoreRejected("no_key", f"{piece_id}: key signatures {sorted(keysigs)}")
    sharps = keysigs.pop()

    notes: list[ScoreNote] = []
    for pi, part in enumerate(parts):
        for n in part.flatten().notes:
            if n.duration.quarterLength <= 0:
                continue                      # grace notes
            pitches = [n.pitch] if isinstance(n, m21note.Note) else list(n.pitches)
            for p in pitches:
                notes.append(ScoreNote(float(n.offset), float(n.duration.quarterLength),
                                       int(p.midi), pi))
    if len(notes) < 8:
        raise ScoreRejected("empty", f"{piece_id}: {len(notes)} notes")
    notes.sort(key=lambda x: (x.onset_q, x.part, x.pitch))
    end_q = max(n.onset_q + n.duration_q for n in notes)

    # key: signature + final bass note
    last_onset = max(n.onset_q for n in notes)
    final = [n for n in notes if n.onset_q + n.duration_q >= end_q - 1e-6 or
             n.onset_q == last_onset]
    bass_pc = min(final, key=lambda n: n.pitch).pitch % 12
    major_tonic = (7 * sharps) % 12
    minor_tonic = (major_tonic + 9) % 12
    if bass_pc == major_tonic:
        key = key_name(major_tonic, "major")
    elif bass_pc == minor_tonic:
        key = key_name(minor_tonic, "minor")
    else:
        raise ScoreRejected("modal", f"{piece_id}: final bass {note_name(bass_pc)} with "
                            f"{sharps} sharps")

    # beats from the bar lines of the first part
    beats: list[tuple[float, int]] = []
    measures = list(parts[0].getElementsByClass(m21stream.Measure))
    if not measures:
        raise ScoreRejected("meter", f"{piece_id}: no bars")
    for m in measures:
        # A bar may be split (a pickup, or a chorale's bar broken at a fermata): its
        # paddingLeft says where in the bar it starts; beats sit on whole bar positions.
        start, length = float(m.offset), float(m.duration.quarterLength)
        pad = float(m.paddingLeft or 0.0)
        first = int(np.ceil(pad - 1e-6))
        for pos in range(first, meter):
            t = start + pos - pad
            if t >= start + length - 1e-6 or t >= end_q - 1e-6:
                break
            if not beats or t > beats[-1][0] + 1e-6:
                beats.append((t, pos + 1))

    chords: tuple[tuple[float, float, str], ...] = ()
    if len(parts) >= 2:
        raw = []
        for c in score.chordify().flatten().notes:
            pcs = {p.pitchClass for p in c.pitches}
            s = float(c.offset)
            raw.append((s, s + float(c.duration.quarterLength), chord_label(pcs, c, key)))
        chords = _merge(sorted(raw))
    return ScoreFacts(id=piece_id, source=source, key=key, meter=meter, beats_q=tuple(beats),
                      chords_q=chords, notes=tuple(notes), n_parts=len(parts), end_q=end_q)


def load_piece(source: str, path: Path, number: int | None = None) -> ScoreFacts:
    """Parse one corpus file (``number`` picks one tune of an ABC collection)."""
    from music21 import converter

    piece_id = f"{source}:{path.stem}" + (f"#{number}" if number is not None else "")
    try:
        score = (converter.parse(str(path), number=number) if number is not None
                 else converter.parse(str(path)))
    except Exception as exc:  # noqa: BLE001 - music21 raises many unrelated types on bad files
        raise ScoreRejected("parse", f"{piece_id}: {type(exc).__name__}: {exc}") from exc
    if score is None:
        raise ScoreRejected("parse", f"{piece_id}: no score")
    if hasattr(score, "scores") and not hasattr(score, "parts"):
        raise ScoreRejected("parse", f"{piece_id}: a collection, pass number=")
    return read_score(score, piece_id, source)


# --------------------------------------------------------------------------- rendering

def soundfonts() -> tuple[str, ...]:
    """The GM soundfonts installed here (see :data:`SOUNDFONT_PATHS`)."""
    return tuple(p for p in SOUNDFONT_PATHS if Path(p).is_file())


def humanised_midi(facts: ScoreFacts, spec: RenderSpec, path: Path) -> None:
    """Write ``facts`` as a type-1 MIDI file at ``spec.tempo_bpm`` with humanised timing and
    dynamics (one track and channel per part; channel 9, drums, is skipped for the parts and
    carries the drum kit when ``spec.drums`` names one, :func:`drum_events`)."""
    import mido

    rng = np.random.default_rng(spec.seed)
    q_per_s = spec.tempo_bpm / 60.0
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=int(round(60e6 / spec.tempo_bpm)), time=0))
    mid.tracks.append(meta)
    swell_period_q = float(rng.uniform(8.0, 16.0)) * facts.meter
    swell_phase = float(rng.uniform(0, 2 * np.pi))
    articulation = float(rng.uniform(0.85, 0.98))
    for part in range(facts.n_parts):
        channel = part if part < 9 else part + 1
        program = spec.programs[min(part, len(spec.programs) - 1)]
        part_gain = 1.0 if part == 0 else 0.85
        events: list[tuple[int, int, mido.Message]] = []
        for n in (x for x in facts.notes if x.part == part):
            jitter_q = float(rng.normal(0.0, spec.timing_jitter_s)) * q_per_s
            on = max(0, int(round((n.onset_q + jitter_q) * TICKS_PER_QUARTER)))
            off = max(on + 1, int(round((n.onset_q + n.duration_q * articulation)
                                        * TICKS_PER_QUARTER)))
            accent = 10.0 if abs(n.onset_q % facts.meter) < 1e-6 else 0.0
            swell = 14.0 * np.sin(2 * np.pi * n.onset_q / swell_period_q + swell_phase)
            vel = int(np.clip(spec.velocity * part_gain + swell + accent
                              + rng.normal(0.0, 6.0), 20, 127))
            events.append((on, 1, mido.Message("note_on", channel=channel, note=n.pitch,
                                                velocity=vel)))
            events.append((off, 0, mido.Message("note_off", channel=channel, note=n.pitch,
                                                 velocity=0)))
        events.sort(key=lambda e: (e[0], e[1]))
        track = mido.MidiTrack()
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        now = 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    if spec.drums:
        events = drum_events(facts, spec, rng)
        track = mido.MidiTrack()
        now = 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))


def drum_events(facts: ScoreFacts, spec: RenderSpec, rng: np.random.Generator
                ) -> list[tuple[int, int, Any]]:
    """``(tick, 0 = off / 1 = on, message)`` of the drum kit on channel 9 (GM channel 10):
    :data:`DRUM_PATTERNS` on every beat of the score (its bar numbering, so pickups keep
    their place in the bar), with the parts' timing jitter and velocity noise."""
    import mido

    if spec.drums not in DRUM_PATTERNS:
        raise ValueError(f"drums must be one of {sorted(DRUM_PATTERNS)} or '', got {spec.drums!r}")
    pattern = DRUM_PATTERNS[spec.drums][facts.meter]
    q_per_s = spec.tempo_bpm / 60.0
    events: list[tuple[int, int, Any]] = []
    for q, number in facts.beats_q:
        on_beat, after = pattern.get(number, ((), ()))
        for offset_q, notes in ((0.0, on_beat), (0.5, after)):
            for note in notes:
                jitter_q = float(rng.normal(0.0, spec.timing_jitter_s)) * q_per_s
                on = max(0, int(round((q + offset_q + jitter_q) * TICKS_PER_QUARTER)))
                accent = 12.0 if note in (36, 38) else 0.0
                vel = int(np.clip(spec.velocity * 0.8 + accent - 8.0 * (offset_q > 0)
                                  + rng.normal(0.0, 6.0), 20, 127))
                events.append((on, 1, mido.Message("note_on", channel=9, note=note, velocity=vel)))
                events.append((on + TICKS_PER_QUARTER // 8, 0,
                               mido.Message("note_off", channel=9, note=note, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def fluidsynth(midi: Path, soundfont: str, out_wav: Path, sample_rate_hz: int) -> None:
    """Render ``midi`` with the ``fluidsynth`` command (no audio driver, no shell)."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise FileNotFoundError("the fluidsynth program is missing (make system-deps)")
    cmd = [exe, "-ni", "-q", "-g", "0.5", "-r", str(sample_rate_hz), "-F", str(out_wav),
           soundfont, str(midi)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 or not out_wav.is_file():
        raise RuntimeError(f"fluidsynth failed ({done.returncode}): {done.stderr[-500:]}")


def cut_seconds(facts: ScoreFacts, tempo_bpm: float, seconds: float) -> float:
    """Length of the rendering's cut: ``seconds``, or the whole piece when shorter."""
    return min(seconds, facts.end_q * 60.0 / tempo_bpm)


def timed_labels(facts: ScoreFacts, tempo_bpm: float, seconds: float
                 ) -> tuple[tuple[tuple[float, int], ...], tuple[tuple[float, float, str], ...]]:
    """The score's beats ``(time_s, number)`` and chords ``(start_s, end_s, label)`` at
    ``tempo_bpm`` inside the first ``seconds``."""
    s_per_q = 60.0 / tempo_bpm
    beats = tuple((round(q * s_per_q, 4), n) for q, n in facts.beats_q if q * s_per_q < seconds)
    chords = tuple((round(s * s_per_q, 4), round(min(e * s_per_q, seconds), 4), lab)
                   for s, e, lab in facts.chords_q if s * s_per_q < seconds)
    return beats, chords


def render(facts: ScoreFacts, spec: RenderSpec) -> RenderedScore:
    """Render one piece and cut the first ``spec.seconds``; labels in seconds."""
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="llark-score-") as tmp:
        midi, wav = Path(tmp) / "piece.mid", Path(tmp) / "piece.wav"
        humanised_midi(facts, spec, midi)
        fluidsynth(midi, spec.soundfont, wav, spec.sample_rate_hz)
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    seconds = cut_seconds(facts, spec.tempo_bpm, spec.seconds)
    audio = audio[:int(round(seconds * sr))]
    if audio.size < int(round(seconds * sr)):
        audio = np.pad(audio, (0, int(round(seconds * sr)) - audio.size))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = (audio * (0.7 / peak)).astype(np.float32)
    beats, chords = timed_labels(facts, spec.tempo_bpm, seconds)
    drums = f"+{spec.drums}" if spec.drums else ""
    return RenderedScore(id=f"{facts.id}@{spec.tempo_bpm:.0f}bpm{drums}", audio=audio,
                         sample_rate_hz=int(sr), key=facts.key, meter=facts.meter,
                         tempo_bpm=spec.tempo_bpm, beats=beats, chords=chords, spec=spec)
