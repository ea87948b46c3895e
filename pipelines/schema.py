"""Every record type of the pipeline, their Arrow schemas, IDs and the shard index.

This module is the one contract between stages: ingest writes :class:`Clip`, annotate writes
:class:`AnnotatedClip`, instruct writes :class:`Instruction`, embed writes :class:`Embedding`,
shards writes :class:`TrainingRow`; every stage may write :class:`DeadLetter`. The trainer
(``model/``) reads shards through this module only. It imports pyarrow and numpy, never Beam.

Conventions: field names carry their units (``start_s``, ``tempo_bpm``, ``sample_rate_hz``);
chords are Harte labels (``A:min``, ``Bb:maj``, ``N``) and keys read ``"F# minor"``,
``"Bb major"``, spelled and parsed by :mod:`llark.music` (either spelling reads back); IDs are
``{dataset}:{source_id}`` for a track and ``{dataset}:{source_id}:{start_ms}-{end_ms}`` for a
clip. Source IDs may contain ``-`` and ``:``-free text only; IDs are parsed from the right.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from llark import storage
from llark.errors import ShardError
from llark.music import Beat, ChordSegment   # the music vocabulary's types, stored as they are

SCHEMA_VERSION = "1.0"
INDEX_FILE = "_index.json"
DEAD_LETTER_DIR = "_dead_letter"
#: ``{set}/_skipped/{stage}/part-*.jsonl``: one :class:`Skipped` note per record or file a stage
#: skipped (the skip manifest; kept by the commit, shown by ``llark inspect``).
SKIPPED_DIR = "_skipped"
DATASETS = ("musiccaps", "magnatagatune", "fma", "musicnet", "folder")
SPLITS = ("train", "validation", "test", "eval")
FAMILIES = ("mir", "caption", "reasoning")


# --------------------------------------------------------------------------- IDs

def track_id(dataset: str, source_id: str) -> str:
    if ":" in source_id:
        raise ValueError(f"source id must not contain ':': {source_id!r}")
    return f"{dataset}:{source_id}"


def clip_id(dataset: str, source_id: str, start_s: float, end_s: float) -> str:
    return f"{track_id(dataset, source_id)}:{round(start_s * 1000)}-{round(end_s * 1000)}"


def parse_clip_id(cid: str) -> tuple[str, str, float, float]:
    """``"fma:000002:0-23777"`` → ``("fma", "000002", 0.0, 23.777)`` (never splits the source id)."""
    dataset, _, rest = cid.partition(":")
    source_id, _, window = rest.rpartition(":")
    start_ms, _, end_ms = window.partition("-")
    if not dataset or not source_id or not start_ms.isdigit() or not end_ms.isdigit():
        raise ValueError(f"not a clip id: {cid!r}")
    return dataset, source_id, int(start_ms) / 1000, int(end_ms) / 1000


# --------------------------------------------------------------------------- small types

def _tuple(items: Any, make: Any = None) -> tuple:
    if items is None:
        return ()
    return tuple(make(i) for i in items) if make else tuple(items)


@dataclass(frozen=True)
class NoteEvent:
    """One note of a score-aligned transcription (MusicNet).

    In a :class:`Clip`, ``start_s``/``end_s`` are the note's true onset and offset in window
    time (seconds from the clip's ``start_s``): negative for a note that began before the
    window, past the clip's length for one held beyond its end. ``start_beat``/``end_beat``
    are the score's beats of the same whole note.
    """

    start_s: float
    end_s: float
    program: int          # General MIDI program, 1-based as in MusicNet (1 = acoustic piano)
    pitch_midi: int
    start_beat: float
    end_beat: float
    note_value: str

    @classmethod
    def from_row(cls, r: dict) -> "NoteEvent":
        return cls(float(r["start_s"]), float(r["end_s"]), int(r["program"]), int(r["pitch_midi"]),
                   float(r["start_beat"]), float(r["end_beat"]), str(r["note_value"]))


@dataclass(frozen=True)
class Turn:
    role: str             # "user" or "assistant" (system prompts are added by the trainer)
    content: str

    @classmethod
    def from_row(cls, r: dict) -> "Turn":
        return cls(str(r["role"]), str(r["content"]))


NOTE_TYPE = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("program", pa.int32()),
                       ("pitch_midi", pa.int32()), ("start_beat", pa.float64()),
                       ("end_beat", pa.float64()), ("note_value", pa.string())])
BEAT_TYPE = pa.struct([("time_s", pa.float64()), ("beat_number", pa.int32())])
CHORD_TYPE = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("label", pa.string())])
TURN_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])


def _row(obj: Any) -> dict:
    """Dataclass → plain dict with lists (what pyarrow and JSON take)."""
    def fix(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [fix(i) for i in v]
        if isinstance(v, dict):
            return {k: fix(i) for k, i in v.items()}
        return v
    return fix(asdict(obj))


# --------------------------------------------------------------------------- clip

@dataclass(frozen=True)
class Clip:
    """One window of one track, with the track's metadata as typed fields."""

    id: str
    dataset: str
    source_id: str
    split: str
    audio_uri: str
    start_s: float
    end_s: float
    sample_rate_hz: int               # of the source file
    channels: int = 1                 # of the source file
    track_duration_s: float = 0.0
    title: str = ""
    artist: str = ""
    album: str = ""
    tags: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    caption: str = ""
    aspects: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    composer: str = ""
    composition: str = ""
    movement: str = ""
    ensemble: str = ""
    notes: tuple[NoteEvent, ...] = ()
    rms_dbfs: float | None = None     # loudness of the window, measured at ingest

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError(f"{self.id}: end_s {self.end_s} <= start_s {self.start_s}")
        if self.split not in SPLITS:
            raise ValueError(f"{self.id}: split {self.split!r} not in {SPLITS}")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_row(self) -> dict:
        return _row(self)

    @classmethod
    def from_row(cls, r: dict) -> "Clip":
        return cls(
            id=r["id"], dataset=r["dataset"], source_id=r["source_id"], split=r["split"],
            audio_uri=r["audio_uri"], start_s=float(r["start_s"]), end_s=float(r["end_s"]),
            sample_rate_hz=int(r["sample_rate_hz"]), channels=int(r.get("channels") or 1),
            track_duration_s=float(r.get("track_duration_s") or 0.0),
            title=r.get("title") or "", artist=r.get("artist") or "", album=r.get("album") or "",
            tags=_tuple(r.get("tags")), genres=_tuple(r.get("genres")),
            caption=r.get("caption") or "", aspects=_tuple(r.get("aspects")),
            instruments=_tuple(r.get("instruments")), composer=r.get("composer") or "",
            composition=r.get("composition") or "", movement=r.get("movement") or "",
            ensemble=r.get("ensemble") or "", notes=_tuple(r.get("notes"), NoteEvent.from_row),
            rms_dbfs=None if r.get("rms_dbfs") is None else float(r["rms_dbfs"]),
        )


#: The track metadata a clip carries as typed fields. Readers (``TrackTask``) and instruct's
#: ``ClipFacts`` declare the same names; ``tests/test_schema.py`` keeps the three in step.
CLIP_METADATA_FIELDS = ("title", "artist", "album", "tags", "genres", "caption", "aspects",
                        "instruments", "composer", "composition", "movement", "ensemble")

CLIP_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("source_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("audio_uri", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("sample_rate_hz", pa.int32(), nullable=False),
    pa.field("channels", pa.int32()),
    pa.field("track_duration_s", pa.float64()),
    pa.field("title", pa.string()),
    pa.field("artist", pa.string()),
    pa.field("album", pa.string()),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("genres", pa.list_(pa.string())),
    pa.field("caption", pa.string()),
    pa.field("aspects", pa.list_(pa.string())),
    pa.field("instruments", pa.list_(pa.string())),
    pa.field("composer", pa.string()),
    pa.field("composition", pa.string()),
    pa.field("movement", pa.string()),
    pa.field("ensemble", pa.string()),
    pa.field("notes", pa.list_(NOTE_TYPE)),
    pa.field("rms_dbfs", pa.float64()),
]
CLIP_SCHEMA = pa.schema(CLIP_FIELDS, metadata={"llark_schema_version": SCHEMA_VERSION,
                                               "llark_record": "clip"})


# --------------------------------------------------------------------------- annotation

@dataclass(frozen=True)
class Annotation:
    """Tempo, beats, meter, key and chords of one clip window, with a confidence per field.

    Times are seconds from the start of the clip window. ``backends_json`` keeps every
    backend's raw answer (a JSON object keyed by backend name) so nothing is thrown away.
    """

    clip_id: str
    backend: str                      # "consensus", "madmom" or "essentia"
    tempo_bpm: float
    tempo_confidence: float
    beats: tuple[Beat, ...]
    downbeats_s: tuple[float, ...]
    meter: int                        # beats per bar; 0 when unknown
    meter_confidence: float
    key: str                          # "F# minor"; "" when no key (silence)
    key_confidence: float
    chords: tuple[ChordSegment, ...]
    chords_confidence: float
    is_silent: bool = False
    backends_json: str = "{}"

    def to_row(self) -> dict:
        return _row(self)

    @classmethod
    def from_row(cls, r: dict) -> "Annotation":
        return cls(
            clip_id=r["clip_id"], backend=r["backend"], tempo_bpm=float(r["tempo_bpm"]),
            tempo_confidence=float(r["tempo_confidence"]),
            beats=_tuple(r.get("beats"), Beat.from_row),
            downbeats_s=_tuple(r.get("downbeats_s"), float), meter=int(r["meter"]),
            meter_confidence=float(r["meter_confidence"]), key=r.get("key") or "",
            key_confidence=float(r["key_confidence"]),
            chords=_tuple(r.get("chords"), ChordSegment.from_row),
            chords_confidence=float(r["chords_confidence"]), is_silent=bool(r.get("is_silent")),
            backends_json=r.get("backends_json") or "{}",
        )


ANNOTATION_TYPE = pa.struct([
    ("clip_id", pa.string()), ("backend", pa.string()), ("tempo_bpm", pa.float64()),
    ("tempo_confidence", pa.float64()), ("beats", pa.list_(BEAT_TYPE)),
    ("downbeats_s", pa.list_(pa.float64())), ("meter", pa.int32()),
    ("meter_confidence", pa.float64()), ("key", pa.string()), ("key_confidence", pa.float64()),
    ("chords", pa.list_(CHORD_TYPE)), ("chords_confidence", pa.float64()),
    ("is_silent", pa.bool_()), ("backends_json", pa.string()),
])


@dataclass(frozen=True)
class AnnotatedClip:
    """A clip and its annotation; stored as the clip's columns plus an ``annotation`` struct."""

    clip: Clip
    annotation: Annotation

    @property
    def id(self) -> str:
        return self.clip.id

    def to_row(self) -> dict:
        row = self.clip.to_row()
        row["annotation"] = self.annotation.to_row()
        return row

    @classmethod
    def from_row(cls, r: dict) -> "AnnotatedClip":
        return cls(Clip.from_row(r), Annotation.from_row(r["annotation"]))


ANNOTATED_CLIP_SCHEMA = pa.schema(
    CLIP_FIELDS + [pa.field("annotation", ANNOTATION_TYPE, nullable=False)],
    metadata={"llark_schema_version": SCHEMA_VERSION, "llark_record": "annotated_clip"})


# --------------------------------------------------------------------------- instruction

@dataclass(frozen=True)
class Instruction:
    """One conversation about one clip (a Q&A pair, a caption request, a reasoning exchange)."""

    id: str                           # f"{clip_id}:{family}:{n}"
    clip_id: str
    dataset: str
    family: str                       # "mir", "caption" or "reasoning"
    turns: tuple[Turn, ...]
    backend: str                      # "template" or "openai"
    model: str
    prompt_version: str
    validation_notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.id}: family {self.family!r} not in {FAMILIES}")
        if not self.turns:
            raise ValueError(f"{self.id}: a conversation needs at least one turn")

    def to_row(self) -> dict:
        return _row(self)

    @classmethod
    def from_row(cls, r: dict) -> "Instruction":
        return cls(id=r["id"], clip_id=r["clip_id"], dataset=r["dataset"], family=r["family"],
                   turns=_tuple(r["turns"], Turn.from_row), backend=r["backend"],
                   model=r.get("model") or "", prompt_version=r["prompt_version"],
                   validation_notes=_tuple(r.get("validation_notes")))


INSTRUCTION_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("family", pa.string(), nullable=False),
    pa.field("turns", pa.list_(TURN_TYPE), nullable=False),
    pa.field("backend", pa.string(), nullable=False),
    pa.field("model", pa.string()),
    pa.field("prompt_version", pa.string(), nullable=False),
    pa.field("validation_notes", pa.list_(pa.string())),
]
INSTRUCTION_SCHEMA = pa.schema(INSTRUCTION_FIELDS, metadata={
    "llark_schema_version": SCHEMA_VERSION, "llark_record": "instruction"})


# --------------------------------------------------------------------------- embedding

EMBEDDING_DTYPE = np.dtype("<f2")


def encode_embedding(frames: np.ndarray) -> bytes:
    """``(n_frames, dim)`` array → little-endian float16 bytes (row-major)."""
    if frames.ndim != 2:
        raise ValueError(f"embedding must be (n_frames, dim), got shape {frames.shape}")
    return np.ascontiguousarray(frames, dtype=EMBEDDING_DTYPE).tobytes()


def decode_embedding(data: bytes, n_frames: int, dim: int) -> np.ndarray:
    """Inverse of :func:`encode_embedding`; checks the byte count against the shape."""
    expected = n_frames * dim * EMBEDDING_DTYPE.itemsize
    if len(data) != expected:
        raise ShardError(f"embedding holds {len(data)} bytes, shape ({n_frames}, {dim}) "
                         f"needs {expected}")
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE).reshape(n_frames, dim)


@dataclass(frozen=True)
class Embedding:
    """The encoder's frames for exactly one clip window, stored once, as float16."""

    clip_id: str
    dataset: str
    encoder: str
    frame_rate_hz: float
    n_frames: int
    dim: int
    embedding: bytes                  # float16, row-major (n_frames, dim)

    def array(self) -> np.ndarray:
        return decode_embedding(self.embedding, self.n_frames, self.dim)

    @classmethod
    def from_array(cls, clip_id: str, dataset: str, encoder: str, frame_rate_hz: float,
                   frames: np.ndarray) -> "Embedding":
        return cls(clip_id, dataset, encoder, float(frame_rate_hz), int(frames.shape[0]),
                   int(frames.shape[1]), encode_embedding(frames))

    def to_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, r: dict) -> "Embedding":
        return cls(r["clip_id"], r["dataset"], r["encoder"], float(r["frame_rate_hz"]),
                   int(r["n_frames"]), int(r["dim"]), bytes(r["embedding"]))


EMBEDDING_COLUMNS = [
    pa.field("encoder", pa.string(), nullable=False),
    pa.field("frame_rate_hz", pa.float64(), nullable=False),
    pa.field("n_frames", pa.int32(), nullable=False),
    pa.field("dim", pa.int32(), nullable=False),
    pa.field("embedding", pa.large_binary(), nullable=False),
]
EMBEDDING_SCHEMA = pa.schema(
    [pa.field("clip_id", pa.string(), nullable=False), pa.field("dataset", pa.string(), nullable=False)]
    + EMBEDDING_COLUMNS,
    metadata={"llark_schema_version": SCHEMA_VERSION, "llark_record": "embedding"})


# --------------------------------------------------------------------------- training row

CONVERSATION_TYPE = pa.struct([
    ("id", pa.string()), ("family", pa.string()), ("turns", pa.list_(TURN_TYPE)),
    ("backend", pa.string()), ("model", pa.string()), ("prompt_version", pa.string()),
    ("validation_notes", pa.list_(pa.string())),
])


@dataclass(frozen=True)
class TrainingRow:
    """One clip in a training shard: its metadata, annotation, embedding (once) and all of its
    conversations. The trainer draws one conversation per sample."""

    clip: Clip
    annotation: Annotation | None
    conversations: tuple[Instruction, ...]
    embedding: Embedding

    @property
    def id(self) -> str:
        return self.clip.id

    def to_row(self) -> dict:
        row = self.clip.to_row()
        row["annotation"] = None if self.annotation is None else self.annotation.to_row()
        row["conversations"] = [
            {"id": c.id, "family": c.family, "turns": _row(c)["turns"], "backend": c.backend,
             "model": c.model, "prompt_version": c.prompt_version,
             "validation_notes": list(c.validation_notes)} for c in self.conversations]
        e = self.embedding
        row.update(encoder=e.encoder, frame_rate_hz=e.frame_rate_hz, n_frames=e.n_frames,
                   dim=e.dim, embedding=e.embedding)
        return row

    @classmethod
    def from_row(cls, r: dict) -> "TrainingRow":
        clip = Clip.from_row(r)
        ann = None if r.get("annotation") is None else Annotation.from_row(r["annotation"])
        convs = tuple(
            Instruction(id=c["id"], clip_id=clip.id, dataset=clip.dataset, family=c["family"],
                        turns=_tuple(c["turns"], Turn.from_row), backend=c["backend"],
                        model=c.get("model") or "", prompt_version=c["prompt_version"],
                        validation_notes=_tuple(c.get("validation_notes")))
            for c in r["conversations"])
        emb = Embedding(clip.id, clip.dataset, r["encoder"], float(r["frame_rate_hz"]),
                        int(r["n_frames"]), int(r["dim"]), bytes(r["embedding"]))
        return cls(clip, ann, convs, emb)


TRAINING_SCHEMA = pa.schema(
    CLIP_FIELDS
    + [pa.field("annotation", ANNOTATION_TYPE), pa.field("conversations", pa.list_(CONVERSATION_TYPE))]
    + EMBEDDING_COLUMNS,
    metadata={"llark_schema_version": SCHEMA_VERSION, "llark_record": "training_row"})


# --------------------------------------------------------------------------- dead letters

@dataclass(frozen=True)
class DeadLetter:
    """A record a stage could not process, with a message a user can act on."""

    stage: str
    id: str
    error_type: str
    message: str
    input_uri: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> "DeadLetter":
        d = json.loads(line)
        return cls(d["stage"], d["id"], d["error_type"], d["message"], d.get("input_uri", ""))


@dataclass(frozen=True)
class Skipped:
    """A record deliberately not written, with the reason it is counted under."""

    stage: str
    id: str
    reason: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


RECORD_SCHEMAS: dict[str, pa.Schema] = {
    "clip": CLIP_SCHEMA,
    "annotated_clip": ANNOTATED_CLIP_SCHEMA,
    "instruction": INSTRUCTION_SCHEMA,
    "embedding": EMBEDDING_SCHEMA,
    "training_row": TRAINING_SCHEMA,
}


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows → table, checked against the declared schema (no silent casts, no extra keys)."""
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise ValueError(f"row {row.get('id', row.get('clip_id'))!r} has unknown fields {extra}")
    return pa.Table.from_pylist(rows, schema=schema)


# --------------------------------------------------------------------------- shard index

@dataclass(frozen=True, slots=True)
class ShardEntry:
    path: str                         # relative to the shard-set folder
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ShardIndex:
    """``_index.json``: written last; without it (or with another version) a set is incomplete."""

    schema_version: str
    record: str                       # key of RECORD_SCHEMAS
    stage: str
    shards: tuple[ShardEntry, ...]
    total_rows: int
    dead_letters: dict[str, int] = field(default_factory=dict)   # error_type -> count
    skipped: dict[str, int] = field(default_factory=dict)        # reason -> count
    counts: dict[str, Any] = field(default_factory=dict)         # stage-specific tallies
    config: dict[str, Any] = field(default_factory=dict)         # the resolved config
    created_at: str = ""
    # a bounded sample per error type / skip reason, chosen on the workers (the commit never
    # reads the dead letters or skip notes themselves): dead letters as dicts, skips as ids
    dead_letter_samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    skipped_samples: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> "ShardIndex":
        d = json.loads(text)
        d["shards"] = tuple(ShardEntry(**s) for s in d["shards"])
        return cls(**d)


def sha256_stream(f: Any, chunk: int = 1 << 20) -> tuple[str, int]:
    """sha256 hex digest and byte count of an open binary file (local or Beam FileSystems)."""
    h = hashlib.sha256()
    size = 0
    while block := f.read(chunk):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """sha256 of a local file or a ``gs://``/``s3://`` object (read once, in chunks)."""
    if storage.is_remote(path):
        with storage.open_input(path) as f:
            return sha256_stream(f, chunk=8 << 20)[0]
    with open(path, "rb") as f:
        return sha256_stream(f)[0]


def read_index(folder: str | Path, record: str | None = None) -> ShardIndex:
    """Read and check a shard set's index (exists, same schema version, right record); the
    folder may be local or a ``gs://``/``s3://`` prefix."""
    path = storage.join(folder, INDEX_FILE)
    if not storage.is_file(path):
        raise ShardError(f"{folder}: no {INDEX_FILE}; the stage that writes it did not finish "
                         "(rerun it)")
    index = ShardIndex.from_json(storage.read_text(path))
    if index.schema_version != SCHEMA_VERSION:
        raise ShardError(f"{folder}: schema version {index.schema_version}, this code reads "
                         f"{SCHEMA_VERSION}; rebuild the set with this version")
    if record is not None and index.record != record:
        raise ShardError(f"{folder}: holds {index.record!r} records, expected {record!r}")
    return index


def verify_shards(folder: str | Path, index: ShardIndex | None = None) -> ShardIndex:
    """Check every shard's size and sha256 against the index; raise with the first mismatch."""
    index = index or read_index(folder)
    for entry in index.shards:
        path = storage.join(folder, entry.path)
        if not storage.is_file(path):
            raise ShardError(f"{path}: listed in {INDEX_FILE} but missing")
        size = storage.size(path)
        if size != entry.bytes:
            raise ShardError(f"{path}: {size} bytes, index says {entry.bytes} (truncated or "
                             "replaced); rebuild the shard set")
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise ShardError(f"{path}: sha256 {digest[:12]}… does not match the index "
                             f"({entry.sha256[:12]}…); the file is corrupt")
    return index


def write_record_set(folder: str | Path, rows: list[dict], record: str, stage: str,
                     rows_per_shard: int | None = None, row_group_size: int | None = None,
                     counts: dict[str, Any] | None = None,
                     dead_letters: dict[str, int] | None = None,
                     skipped: dict[str, int] | None = None,
                     config: dict[str, Any] | None = None) -> ShardIndex:
    """Write ``rows`` as a complete local record set: ``part-NNNNN.parquet`` checked against
    the record's schema, then ``_index.json`` last, exactly as a stage commits one.

    For tests, benchmarks and small tools; Beam stages commit through ``pipelines.stage``.
    """
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    schema = RECORD_SCHEMAS[record]
    step = rows_per_shard or max(1, len(rows))
    entries = []
    for n, start in enumerate(range(0, len(rows), step)):
        chunk = rows[start:start + step]
        path = folder / f"part-{n:05d}.parquet"
        pq.write_table(to_table(chunk, schema), path, row_group_size=row_group_size)
        entries.append(ShardEntry(path.name, len(chunk), path.stat().st_size, sha256_file(path)))
    index = ShardIndex(SCHEMA_VERSION, record, stage, tuple(entries), len(rows),
                       dead_letters=dict(dead_letters or {}), skipped=dict(skipped or {}),
                       counts=dict(counts or {}), config=dict(config or {}))
    (folder / INDEX_FILE).write_text(index.to_json())
    return index
