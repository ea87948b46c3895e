"""A clip's metadata and annotations as readable text for a prompt.

One fact per line (``Tempo: about 140 BPM (confidence 0.91)``), a chord timeline in seconds,
a note summary for score-aligned datasets. Keys and chords are spelled as musicians write
them (``Bb major``; chords in the clip's key). A key, tempo, meter or chord timeline below the
confidence threshold (:data:`annotate.instruct.facts.DEFAULT_MIN_CONFIDENCE`) is not shown at
all: the line says there is no clear key (tempo, meter, chords), marked LOW so the writer
states none. IDs, file names and URIs are never rendered.
"""

from __future__ import annotations

from annotate.instruct.facts import DEFAULT_MIN_CONFIDENCE, ChordSegment, ClipFacts
from annotate.instruct.music import readable_chord
from llark.music import spell_key

MAX_CHORD_LINES = 24
MIN_CHORD_S = 0.25          # shorter chord segments are folded into their neighbours


def fmt_conf(value: float) -> str:
    return f"{value:.2f}"


def _unclear(phrase: str, conf: float, instead: str = "do not state one") -> str:
    return f"{phrase} (confidence {fmt_conf(conf)}: LOW, {instead})"


def chord_timeline(chords: tuple[ChordSegment, ...]) -> list[ChordSegment]:
    """Merge repeats and fold segments shorter than :data:`MIN_CHORD_S` into the previous one."""
    out: list[ChordSegment] = []
    for span in chords:
        if out and (span.label == out[-1].label or span.end_s - span.start_s < MIN_CHORD_S):
            out[-1] = ChordSegment(out[-1].start_s, span.end_s, out[-1].label)
        else:
            out.append(span)
    return out


def render_facts(facts: ClipFacts, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> str:
    """The facts block of a prompt (plain text, one fact per line)."""
    lines = [f"Excerpt length: {facts.duration_s:.0f} seconds"]
    if facts.is_silent:
        lines.append("The excerpt is silent.")
    if facts.title:
        lines.append(f"Title: {facts.title}")
    if facts.artist:
        lines.append(f"Artist: {facts.artist}")
    if facts.album:
        lines.append(f"Album: {facts.album}")
    if facts.composer:
        lines.append(f"Composer: {facts.composer}")
    if facts.composition:
        work = facts.composition + (f", {facts.movement}" if facts.movement else "")
        lines.append(f"Composition: {work}")
    if facts.ensemble:
        lines.append(f"Ensemble: {facts.ensemble}")
    if facts.genres:
        lines.append(f"Genres: {', '.join(facts.genres)}")
    if facts.tags:
        lines.append(f"Tags: {', '.join(facts.tags)}")
    if facts.caption:
        lines.append(f"Description: {facts.caption.strip()}")
    if facts.aspects:
        lines.append(f"Aspects: {', '.join(facts.aspects)}")
    if facts.instruments:
        suffix = " (complete list of what plays)" if facts.instruments_complete else ""
        lines.append(f"Instruments: {', '.join(facts.instruments)}{suffix}")
    if facts.clear_tempo(min_confidence):
        lines.append(f"Tempo: about {facts.tempo_bpm:.0f} BPM "
                     f"(confidence {fmt_conf(facts.tempo_confidence)})")
    elif facts.tempo_bpm > 0:
        lines.append(f"Tempo: {_unclear('no clear tempo', facts.tempo_confidence)}")
    else:
        lines.append("Tempo: unknown (do not state one)")
    if facts.clear_meter(min_confidence):
        lines.append(f"Meter: {facts.meter} beats per bar "
                     f"(confidence {fmt_conf(facts.meter_confidence)})")
    elif facts.meter > 0:
        lines.append(f"Meter: {_unclear('no clear meter', facts.meter_confidence)}")
    else:
        lines.append("Meter: unknown (do not state one)")
    key = facts.clear_key(min_confidence)
    if key:
        lines.append(f"Key: {key} (confidence {fmt_conf(facts.key_confidence)})")
    elif facts.key:
        lines.append(f"Key: {_unclear('no clear key', facts.key_confidence)}")
    else:
        lines.append("Key: none detected (do not state one)")
    timeline = chord_timeline(facts.chords)
    spelling = spell_key(facts.key) or None        # chords are spelled in the detected key
    if facts.clear_chords(min_confidence):
        lines.append(f"Chords (seconds from the start; confidence "
                     f"{fmt_conf(facts.chords_confidence)}):")
        for span in timeline[:MAX_CHORD_LINES]:
            lines.append(f"  {span.start_s:.1f}-{span.end_s:.1f} "
                         f"{readable_chord(span.label, spelling)}")
        if len(timeline) > MAX_CHORD_LINES:
            lines.append(f"  ... and {len(timeline) - MAX_CHORD_LINES} more chord changes")
    elif any(c.label not in ("N", "X") for c in timeline):
        lines.append(f"Chords: {_unclear('unclear', facts.chords_confidence, 'do not name any')}")
    else:
        lines.append("Chords: none detected (do not name any)")
    if facts.notes is not None:
        n = facts.notes
        per = ", ".join(f"{name} {count}" for name, count in n.instruments)
        lines.append(f"Notes from the score: {n.n_notes} notes from {n.lowest} to {n.highest}, "
                     f"about {n.notes_per_s:g} per second; notes per instrument: {per}")
    return "\n".join(lines)
