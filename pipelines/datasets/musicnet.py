"""MusicNet: ``musicnet_metadata.csv``, ``{train,test}_data/<id>.wav``, ``{train,test}_labels/``.

Layout (``--metadata`` moves the metadata file, ``--audio-dir`` the folder holding the four
``{train,test}_{data,labels}`` folders)::

    <data-dir>/musicnet_metadata.csv     # id,composer,composition,movement,ensemble,source,
                                         # transcriber,catalog_name,seconds
    <data-dir>/train_data/<id>.wav       # 44.1 kHz
    <data-dir>/train_labels/<id>.csv     # start_time,end_time,instrument,note,start_beat,
    <data-dir>/test_data/<id>.wav        # end_beat,note_value
    <data-dir>/test_labels/<id>.csv

The split is the folder the recording is in. Label times are sample indices at 44.1 kHz;
``instrument`` is a 1-based General MIDI program (1 = piano, 41 = violin, 43 = cello). Each
clip carries the instruments that play in its window (GM names, by program number) and the
note events that overlap the window, shifted to window time with their true onset and offset:
``start_s`` is negative for a note that began before the window and ``end_s`` may pass the
window's end (``start_beat``/``end_beat`` are the same whole note's score beats).

``seconds`` is the recording's length; ingest compares it with what decodes (a shorter file is a
``TruncatedAudioError``, see :mod:`pipelines.ingest`). A wav in ``{train,test}_data/`` without a
metadata row is counted as skipped (``audio_without_metadata``), as is any other file in those
folders (``not_audio:.<ext>``, see :func:`pipelines.datasets.common.orphans`).
"""

from __future__ import annotations

from typing import Iterator

from llark.errors import AudioNotFoundError, LlarkError, MetadataError
from pipelines.datasets.common import (
    BadRow,
    ReaderOptions,
    SkippedFile,
    TrackTask,
    bad_row,
    basename,
    check_source_id,
    csv_rows,
    dedupe,
    join,
    list_files,
    orphans,
    parse_float,
    read_text,
)
from pipelines.datasets.gm import program_name
from pipelines.schema import NoteEvent, track_id

DATASET = "musicnet"
METADATA_FILE = "musicnet_metadata.csv"
COLUMNS = ("id", "composer", "composition", "movement", "ensemble", "source", "transcriber",
           "catalog_name", "seconds")
LABEL_COLUMNS = ("start_time", "end_time", "instrument", "note", "start_beat", "end_beat",
                 "note_value")
LABEL_SAMPLE_RATE_HZ = 44100
SPLIT_FOLDERS = (("train", "train_data", "train_labels"), ("test", "test_data", "test_labels"))


def read_tasks(data_dir: str, opts: ReaderOptions
               ) -> Iterator[TrackTask | BadRow | SkippedFile]:
    """One task per metadata row (the split is the folder its wav is in), then a
    :class:`SkippedFile` per wav no row names."""
    meta = opts.metadata or join(data_dir, METADATA_FILE)
    base = opts.audio_dir or data_dir
    text = read_text(meta, f"MusicNet metadata ({METADATA_FILE})")
    where_is: dict[str, list[str]] = {}
    found: list[str] = []
    for split, data_folder, _ in SPLIT_FOLDERS:
        for path in list_files(join(base, data_folder, "*")):
            found.append(path)
            if path.endswith(".wav"):
                where_is.setdefault(basename(path)[:-len(".wav")], []).append(split)
    items = list(_read(text, basename(meta), base, where_is))
    listed = {t.source_id for t in items if isinstance(t, TrackTask)}
    listed |= {t.id.split(":", 1)[1] for t in items if isinstance(t, BadRow)}
    named = [p for p in found if p.endswith(".wav") and basename(p)[:-len(".wav")] in listed]
    return dedupe(items + list(orphans(DATASET, base, named, found)))


def _read(text: str, name: str, base: str, where_is: dict[str, list[str]]
          ) -> Iterator[TrackTask | BadRow]:
    rows = iter(csv_rows(text, ",", name))
    header = next(rows, None)
    if header is None:
        raise MetadataError(f"{name} is empty; expected the header {','.join(COLUMNS)}")
    columns = [c.strip() for c in header.values]
    missing = [c for c in ("id", "composer", "composition", "movement", "ensemble")
               if c not in columns]
    if missing:
        raise MetadataError(f"{name}: missing column(s) {missing}; found {columns}")
    pos = {c: i for i, c in enumerate(columns)}
    for row in rows:
        where = f"{name} line {row.line}"
        rid = row.values[pos["id"]].strip() if len(row.values) > pos["id"] else ""
        try:
            if len(row.values) != len(columns):
                raise MetadataError(f"row has {len(row.values)} fields, the header has "
                                    f"{len(columns)}")
            check_source_id(rid, "id")
            if not rid.isdigit():
                raise MetadataError(f"id {rid!r} is not a MusicNet recording number")
            splits = where_is.get(rid, [])
            if len(splits) > 1:
                raise MetadataError(f"recording {rid} is in both train_data/ and test_data/")
            if not splits:
                raise AudioNotFoundError(
                    f"no {rid}.wav in {join(base, 'train_data')} or {join(base, 'test_data')}")
            seconds = None
            if "seconds" in pos and row.values[pos["seconds"]].strip():
                seconds = parse_float(row.values[pos["seconds"]], "seconds")
                if seconds <= 0:
                    raise MetadataError(f"seconds is {seconds:g}; a recording's length must be > 0")
            split = splits[0]
            data_folder, labels_folder = (f"{split}_data", f"{split}_labels")
            yield TrackTask(
                id=track_id(DATASET, rid), dataset=DATASET, source_id=rid, split=split,
                audio_uri=join(base, data_folder, f"{rid}.wav"),
                labels_uri=join(base, labels_folder, f"{rid}.csv"), row=where,
                composer=row.values[pos["composer"]].strip(),
                composition=row.values[pos["composition"]].strip(),
                movement=row.values[pos["movement"]].strip(),
                ensemble=row.values[pos["ensemble"]].strip(), expected_duration_s=seconds)
        except LlarkError as exc:
            audio = join(base, "train_data", f"{rid}.wav") if isinstance(
                exc, AudioNotFoundError) else ""
            yield bad_row(DATASET, exc, where, source_id=rid if rid.isdigit() else "",
                          row_key=f"{name}#L{row.line}", audio_uri=audio)


def parse_labels(text: str, name: str) -> tuple[NoteEvent, ...]:
    """A MusicNet label file → note events in track seconds, sorted by onset.

    ``name`` is how errors name the file (ingest passes its full path). Raises
    :class:`MetadataError` naming the file and line for a missing column or a bad value.
    """
    rows = iter(csv_rows(text, ",", name))
    header = next(rows, None)
    columns = [c.strip() for c in header.values] if header else []
    missing = [c for c in LABEL_COLUMNS if c not in columns]
    if missing:
        raise MetadataError(f"{name}: missing label column(s) {missing}; found {columns}")
    pos = {c: i for i, c in enumerate(columns)}
    notes = []
    for row in rows:
        try:
            v = {c: row.values[pos[c]].strip() for c in LABEL_COLUMNS}
            start, end = int(v["start_time"]), int(v["end_time"])
            program, pitch = int(v["instrument"]), int(v["note"])
            start_beat, end_beat = float(v["start_beat"]), float(v["end_beat"])
        except (IndexError, ValueError) as exc:
            raise MetadataError(f"{name} line {row.line}: bad label row {row.values}") from exc
        if end < start or start < 0:
            raise MetadataError(f"{name} line {row.line}: note from sample {start} to {end}")
        if not 0 <= pitch <= 127:
            raise MetadataError(f"{name} line {row.line}: MIDI note {pitch} outside 0..127")
        if not 1 <= program <= 128:
            raise MetadataError(f"{name} line {row.line}: instrument {program} is not a "
                                "General MIDI program (MusicNet numbers them 1..128)")
        notes.append(NoteEvent(start / LABEL_SAMPLE_RATE_HZ, end / LABEL_SAMPLE_RATE_HZ, program,
                               pitch, start_beat, end_beat, v["note_value"]))
    return tuple(sorted(notes, key=lambda n: (n.start_s, n.pitch_midi, n.program)))


def window_notes(notes: tuple[NoteEvent, ...], start_s: float, end_s: float
                 ) -> tuple[tuple[NoteEvent, ...], tuple[str, ...]]:
    """Notes overlapping ``[start_s, end_s)`` shifted to window time, and the GM names of the
    instruments that play in the window (ordered by program number).

    A note keeps its true onset and offset: one that began before the window has a negative
    ``start_s``, one held past the window's end an ``end_s`` beyond its length, so times and
    the score's ``start_beat``/``end_beat`` describe the same note (clip with
    ``max(0, start_s)`` / ``min(length, end_s)`` for the sounding part)."""
    inside = tuple(
        NoteEvent(round(n.start_s - start_s, 6), round(n.end_s - start_s, 6),
                  n.program, n.pitch_midi, n.start_beat, n.end_beat, n.note_value)
        for n in notes if n.start_s < end_s and n.end_s > start_s)
    programs = sorted({n.program for n in inside})
    return inside, tuple(program_name(p) for p in programs)
