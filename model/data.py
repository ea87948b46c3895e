"""Streaming the Parquet shard set into training samples, resumably.

A shard set is checked first (``_index.json`` present, same schema version, ``training_row``
records, sizes and optionally sha256 of every shard). The unit of reading is one row group.
Every epoch the row groups are put in a seeded order and dealt round-robin to the
``ranks x workers`` global workers (when there are fewer row groups than workers, every worker
reads every row group and keeps every ``total``-th row instead). Each worker keeps a shuffle
buffer of rows (at most one epoch of its own rows); every sample is one row's embedding with one of its conversations, the family
drawn by the configured weights renormalised over the families the clip has, then a
conversation of that family uniformly.

Resuming: each sample carries its worker's :class:`WorkerPosition` *after* that sample (epoch,
unit in the epoch's plan, row in the unit, the shuffle buffer as row references, the RNG
state). The trainer keeps the position of the last sample it consumed from every worker and
saves them in checkpoints; a restored stream re-reads only the row groups that hold the
buffered rows and the current row group, and continues with exactly the samples the
uninterrupted run would have produced. No sample is replayed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from llark import storage
from llark.errors import ShardError
from model.masking import IGNORE_INDEX, PromptError, build_example
from pipelines.schema import (EMBEDDING_DTYPE, FAMILIES, INDEX_FILE, SCHEMA_VERSION, ShardIndex,
                              read_index, verify_shards)

# columns the trainer reads (the clip's metadata and annotation are left on disk)
TRAIN_COLUMNS = ["id", "split", "conversations", "n_frames", "dim", "embedding"]


# --------------------------------------------------------------------------- shard set

@dataclass(frozen=True)
class ShardSet:
    """A checked shard set: its index and the row-group layout of every shard."""

    folder: Path | str          # a str for a gs:// or s3:// set
    index: ShardIndex
    paths: tuple[Path | str, ...]
    row_groups: tuple[tuple[int, ...], ...]   # rows of each row group, per shard
    encoder: str
    audio_dim: int
    frame_rate_hz: float

    @property
    def units(self) -> list[tuple[int, int]]:
        """Every (shard, row group) pair in stored order."""
        return [(s, g) for s, groups in enumerate(self.row_groups) for g in range(len(groups))]

    @property
    def total_rows(self) -> int:
        return sum(sum(g) for g in self.row_groups)


def open_shard_set(folder: str | Path, verify_checksums: bool = True) -> ShardSet:
    """Check a shard set and read its layout; :class:`ShardError` says what is wrong.

    ``folder`` may be a ``gs://``/``s3://`` prefix: the index and every Parquet footer are read
    there (range reads) and sizes are checked; the sha256 of each shard is checked only for a
    local set, since hashing a remote one would download every shard whole (the stores keep
    their own per-object checksums)."""
    remote = storage.is_remote(folder)
    folder = str(folder).rstrip("/") if remote else Path(folder)
    if not (storage.exists(folder) if remote else folder.is_dir()):
        raise ShardError(f"{folder}: not a folder of shards")
    index = read_index(folder, record="training_row")
    if verify_checksums and not remote:
        verify_shards(folder, index)
    paths, layouts = [], []
    for entry in index.shards:
        path = storage.join(folder, entry.path) if remote else folder / entry.path
        if not storage.is_file(path):
            raise ShardError(f"{path}: listed in {INDEX_FILE} but missing")
        size = storage.size(path)
        if size != entry.bytes:
            raise ShardError(f"{path}: {size} bytes, index says {entry.bytes} "
                             "(truncated or replaced); rebuild the shard set")
        try:
            meta = open_shard(path).metadata
        except (OSError, ValueError) as exc:   # pyarrow raises ArrowInvalid (a ValueError)
            raise ShardError(f"{path}: not a readable Parquet file ({exc}); rebuild the shard "
                             "set") from exc
        version = (meta.schema.to_arrow_schema().metadata or {}).get(b"llark_schema_version")
        if version is not None and version.decode() != SCHEMA_VERSION:
            raise ShardError(f"{path}: schema version {version.decode()}, this code reads "
                             f"{SCHEMA_VERSION}; rebuild the shard set")
        if meta.num_rows != entry.rows:
            raise ShardError(f"{path}: {meta.num_rows} rows, index says {entry.rows}")
        paths.append(path)
        layouts.append(tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups)))
    if not any(sum(g) for g in layouts):
        raise ShardError(f"{folder}: the shard set holds no rows")
    first = next(i for i, g in enumerate(layouts) if sum(g))
    head = open_shard(paths[first]).read_row_group(0, columns=["encoder", "dim",
                                                                   "frame_rate_hz"])
    return ShardSet(folder, index, tuple(paths), tuple(layouts), str(head["encoder"][0]),
                    int(head["dim"][0]), float(head["frame_rate_hz"][0]))


# --------------------------------------------------------------------------- positions

@dataclass
class WorkerPosition:
    """Where one global data worker is in its stream; JSON-able, saved in checkpoints."""

    worker: int                              # logical worker index on its rank
    epoch: int = 0
    unit: int = 0                            # index into this worker's plan for the epoch
    row: int = 0                             # index into that unit's row order
    buffer: list[list[int]] = field(default_factory=list)   # [shard, row group, row] refs
    rng: dict[str, Any] = field(default_factory=dict)       # numpy bit-generator state
    samples: int = 0                         # samples this worker has produced
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> count

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorkerPosition":
        return cls(**json.loads(json.dumps(d)))          # a deep copy: never share the saved one


@dataclass
class StreamState:
    """The data position of one rank: each logical worker's position and who comes next."""

    num_workers: int
    next_worker: int = 0
    workers: dict[int, dict[str, Any]] = field(default_factory=dict)

    def update(self, worker: int, position: dict[str, Any]) -> None:
        self.workers[worker] = position
        self.next_worker = (worker + 1) % max(self.num_workers, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"num_workers": self.num_workers, "next_worker": self.next_worker,
                "workers": {str(k): v for k, v in self.workers.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StreamState":
        return cls(int(d["num_workers"]), int(d["next_worker"]),
                   {int(k): v for k, v in d["workers"].items()})

    @property
    def skipped(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for pos in self.workers.values():
            for reason, n in pos.get("skipped", {}).items():
                out[reason] = out.get(reason, 0) + n
        return out


# --------------------------------------------------------------------------- reading

def open_shard(path: str | Path) -> pq.ParquetFile:
    """The one place a shard file is opened (every read of the trainer goes through here).

    A ``gs://``/``s3://`` shard is opened through :func:`llark.storage.open_input`: the footer
    and then each row group's column chunks are fetched with range requests, never the whole
    file. A local shard is memory-mapped: Parquet decodes a row group straight from the page
    cache instead of reading it into a fresh buffer first (see the reader section of
    docs/benchmarks.md). Shards must not be rewritten in place while a run reads them (the
    shard stage writes new files; sizes are checked when the set is opened)."""
    if storage.is_remote(path):
        return pq.ParquetFile(storage.open_input(path))
    return pq.ParquetFile(path, memory_map=True)


@dataclass
class Row:
    """One clip as the trainer uses it; ``frames`` may be a view into its row group's buffer."""

    id: str
    split: str
    conversations: list[dict[str, Any]]
    frames: np.ndarray                       # (n_frames, dim) float16
    owned: bool = False                      # frames are this row's own copy, not a view

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)

    def detached(self) -> "Row":
        """This row with its own copy of the frames (when it must outlive its row group).

        The copy goes to memory from Arrow's pool (the allocator the row groups come from),
        which reuses the memory of rows already consumed (``benchmarks/train_reader.py`` times
        it against ``ndarray.copy``: docs/benchmarks.md)."""
        if self.owned:
            return self
        out = np.frombuffer(pa.allocate_buffer(self.frames.nbytes), dtype=self.frames.dtype)
        out = out.reshape(self.frames.shape)
        np.copyto(out, self.frames)
        return Row(self.id, self.split, self.conversations, out, owned=True)


@dataclass(frozen=True)
class RowGroup:
    """One row group of a shard: the small columns as Python values, the embeddings as one
    uint8 NumPy view over each Arrow data buffer plus its offsets (nothing is copied)."""

    path: Path | str
    group: int
    ids: list[str]
    splits: list[str]
    conversations: list[list[dict[str, Any]]]
    n_frames: np.ndarray                      # (N,) int
    dims: np.ndarray                          # (N,) int
    chunks: tuple[tuple[np.ndarray, np.ndarray], ...]   # (data bytes, offsets) per Arrow chunk
    chunk_starts: np.ndarray                  # (n_chunks + 1,) first row of each chunk

    def __len__(self) -> int:
        return len(self.ids)

    def frames(self, i: int) -> np.ndarray:
        """Row ``i``'s embedding, ``(n_frames, dim)`` float16, a view (no copy)."""
        c = int(np.searchsorted(self.chunk_starts, i, side="right")) - 1
        data, offsets = self.chunks[c]
        j = i - int(self.chunk_starts[c])
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        n, d = int(self.n_frames[i]), int(self.dims[i])
        if hi - lo != n * d * EMBEDDING_DTYPE.itemsize:
            raise ShardError(f"{self.path}: row group {self.group}, clip {self.ids[i]}: embedding "
                             f"holds {hi - lo} bytes, shape ({n}, {d}) needs "
                             f"{n * d * EMBEDDING_DTYPE.itemsize}; rebuild the shard set")
        frames = data[lo:hi].view(EMBEDDING_DTYPE).reshape(n, d)
        frames.flags.writeable = False          # other rows share the buffer
        return frames

    def row(self, i: int) -> Row:
        return Row(self.ids[i], self.splits[i], self.conversations[i] or [], self.frames(i))


def _binary_views(column: pa.ChunkedArray) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...],
                                                      np.ndarray]:
    """NumPy views over the data and offsets buffers of a (large_)binary column's chunks."""
    chunks, starts = [], [0]
    for chunk in column.chunks:
        if chunk.null_count:
            raise ShardError("embedding column has null values")
        _, off_buf, data_buf = chunk.buffers()
        off_type = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        offsets = np.frombuffer(off_buf, dtype=off_type)
        offsets = offsets[chunk.offset: chunk.offset + len(chunk) + 1]
        data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
                else np.zeros(0, dtype=np.uint8))
        chunks.append((data, offsets))
        starts.append(starts[-1] + len(chunk))
    return tuple(chunks), np.asarray(starts, dtype=np.int64)


def read_row_group(path: Path | str, group: int) -> RowGroup:
    """Row group ``group`` of the shard at ``path``, zero-copy for the embeddings."""
    try:
        table = open_shard(path).read_row_group(group, columns=TRAIN_COLUMNS)
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: row group {group} cannot be read ({exc}); the shard is "
                         "corrupt, rebuild the shard set") from exc
    chunks, starts = _binary_views(table.column("embedding"))
    return RowGroup(path if storage.is_remote(path) else Path(path), group,
                    table.column("id").to_pylist(),
                    table.column("split").to_pylist(), table.column("conversations").to_pylist(),
                    table.column("n_frames").to_numpy(), table.column("dim").to_numpy(),
                    chunks, starts)


# --------------------------------------------------------------------------- sampling

def choose_conversation(conversations: Sequence[dict], weights: dict[str, float],
                        rng: np.random.Generator) -> dict | None:
    """One conversation: the family by weight (renormalised over the families the clip has),
    then uniformly within the family. ``None`` when no family with a positive weight is there."""
    by_family: dict[str, list[dict]] = {}
    for conv in conversations:
        by_family.setdefault(conv["family"], []).append(conv)
    present = [f for f in FAMILIES if by_family.get(f) and weights.get(f, 0.0) > 0]
    if not present:
        return None
    p = np.array([weights[f] for f in present], dtype=np.float64)
    family = present[int(rng.choice(len(present), p=p / p.sum()))] if len(present) > 1 else present[0]
    options = by_family[family]
    return options[int(rng.integers(len(options)))] if len(options) > 1 else options[0]


@dataclass(frozen=True)
class StreamConfig:
    """How a :class:`ShardStream` reads (everything but the tokenizer)."""

    seed: int = 0
    shuffle_buffer: int = 64                # most rows per worker's buffer (0 = no shuffling)
    shuffle_buffer_bytes: int = 256 << 20   # most embedding bytes of one rank's buffers
    family_weights: dict[str, float] = field(default_factory=lambda: {
        "mir": 0.3, "caption": 0.15, "reasoning": 0.55})
    splits: tuple[str, ...] = ()
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0
    system_prompt: str = ""
    max_length: int = 0
    max_audio_frames: int = 0
    audio_pool: int = 1                     # frames averaged into one audio token
    loop: bool = True                       # start a new epoch when one ends (training)


def pool_frames(frames: np.ndarray, k: int) -> np.ndarray:
    """Average every ``k`` consecutive frames (the last group may be shorter): (T, D) →
    (ceil(T / k), D), same dtype; ``k = 1`` returns ``frames`` itself. The one place frames
    are pooled, for training and for answering alike."""
    if k <= 1 or len(frames) == 0:
        return frames
    t, d = frames.shape
    full = t // k
    x = frames.astype(np.float32)
    head = x[: full * k].reshape(full, k, d).mean(axis=1)                 # (T // k, D)
    if t % k:
        head = np.concatenate([head, x[full * k:].mean(axis=0, keepdims=True)])
    return head.astype(frames.dtype)


@dataclass
class Sample:
    """One training sample as a data worker produces it."""

    input_ids: list[int]
    labels: list[int]
    audio: np.ndarray                       # (n_frames, dim) float16
    clip_id: str
    conversation_id: str
    family: str
    worker: int
    position: dict[str, Any]


class ShardStream(IterableDataset):
    """An endless (or one-pass) stream of :class:`Sample` over a :class:`ShardSet`."""

    def __init__(self, shard_set: ShardSet, tokenizer: Any, cfg: StreamConfig,
                 resume: StreamState | None = None) -> None:
        super().__init__()
        self.shard_set = shard_set
        self.tokenizer = tokenizer
        self.cfg = cfg
        n_workers = max(cfg.num_workers, 1)
        if resume is not None and resume.num_workers != n_workers:
            raise ShardError(f"the data position was saved with {resume.num_workers} worker(s) "
                             f"per rank, this run has {n_workers}; resume with num_workers="
                             f"{resume.num_workers}")
        self.resume = resume

    # ------------------------------------------------------------ planning
    @property
    def total_workers(self) -> int:
        return self.cfg.world_size * max(self.cfg.num_workers, 1)

    def plan(self, epoch: int, global_worker: int) -> list[tuple[int, int, np.ndarray]]:
        """This worker's ``(shard, row group, row order)`` list for an epoch (deterministic)."""
        units = self.shard_set.units
        total = self.total_workers
        shuffle = self.cfg.shuffle_buffer > 0
        order = (np.random.default_rng([self.cfg.seed, epoch]).permutation(len(units))
                 if shuffle else np.arange(len(units)))

        def rows(s: int, g: int) -> np.ndarray:
            n = self.shard_set.row_groups[s][g]
            if not shuffle:
                return np.arange(n)
            return np.random.default_rng([self.cfg.seed, epoch, s, g]).permutation(n)

        if len(units) >= total:
            mine = [units[i] for i in order[global_worker::total]]
            return [(s, g, rows(s, g)) for s, g in mine]
        out, offset = [], 0                 # fewer row groups than workers: stride over rows
        for i in order:
            s, g = units[i]
            r = rows(s, g)
            keep = r[(offset + np.arange(len(r))) % total == global_worker]
            offset += len(r)
            if len(keep):
                out.append((s, g, keep))
        return out

    # ------------------------------------------------------------ reading
    def _read(self, shard: int, group: int) -> RowGroup:
        return read_row_group(self.shard_set.paths[shard], group)

    def _row(self, data: RowGroup, i: int) -> Row:
        row = data.row(i)
        if row.frames.shape[1] != self.shard_set.audio_dim:
            raise ShardError(f"{row.id}: embedding dim {row.frames.shape[1]}, the shard set's "
                             f"first row has {self.shard_set.audio_dim}; one set must use one "
                             "encoder")
        return row

    # ------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        slot = info.id if info is not None else 0
        n_local = info.num_workers if info is not None else 1
        if n_local != max(self.cfg.num_workers, 1):
            raise ShardError(f"ShardStream was configured for {self.cfg.num_workers} workers but "
                             f"runs in {n_local}; pass the DataLoader's num_workers to StreamConfig")
        offset = self.resume.next_worker if self.resume is not None else 0
        logical = (slot + offset) % n_local           # exact round-robin order after a resume
        saved = self.resume.workers.get(logical) if self.resume is not None else None
        if saved is not None:
            pos = WorkerPosition.from_dict(saved)
        else:
            rng = np.random.default_rng([self.cfg.seed, 1_000_003, self.cfg.rank, logical])
            pos = WorkerPosition(worker=logical, rng=rng.bit_generator.state)
        return self._stream(pos, self.cfg.rank * n_local + logical)

    @property
    def buffer_bytes(self) -> int:
        """Most embedding bytes one worker's shuffle buffer holds (the rank's share / workers)."""
        return max(1, self.cfg.shuffle_buffer_bytes // max(self.cfg.num_workers, 1))

    def _stream(self, pos: WorkerPosition, global_worker: int) -> Iterator[Sample]:
        cfg = self.cfg
        rng = np.random.default_rng()
        rng.bit_generator.state = pos.rng
        splits = set(cfg.splits)
        # the shuffle buffer: references in ``buffer``, rows in ``cache``. A row taken from the
        # current row group views that group's Arrow buffer (no copy); rows still buffered when
        # the reader moves on are copied out, so that at most one row group is held by views
        cache: dict[tuple[int, int, int], Row] = {}
        by_unit: dict[tuple[int, int], list[int]] = {}
        for s, g, r in pos.buffer:        # refill a restored buffer from the groups it names
            by_unit.setdefault((s, g), []).append(r)
        for (s, g), rows in by_unit.items():
            data = self._read(s, g)
            for r in rows:
                cache[(s, g, r)] = self._row(data, r).detached()
            del data
        buffer = [tuple(ref) for ref in pos.buffer]
        refs: dict[tuple[int, int, int], int] = {}
        for ref in buffer:
            refs[ref] = refs.get(ref, 0) + 1
        held = sum(cache[ref].nbytes for ref in buffer)     # bytes of the buffered embeddings

        def take(ref: tuple[int, int, int]) -> Row:
            refs[ref] -= 1
            if refs[ref] == 0:
                del refs[ref]
                return cache.pop(ref)
            return cache[ref]

        epoch_samples, epoch_start_buffer = 0, len(buffer)

        while True:
            plan = self.plan(pos.epoch, global_worker)
            # a restored position may be anywhere in its epoch, even after its last row: only a
            # pass over a whole epoch can show that a worker has no usable row
            whole_epoch = pos.unit == 0 and pos.row == 0
            # never buffer more than one epoch of this worker's rows: a small set is not read
            # several times over before its first sample
            capacity = max(1, min(cfg.shuffle_buffer, sum(len(o) for _, _, o in plan)))
            while pos.unit < len(plan):
                s, g, order = plan[pos.unit]
                data = self._read(s, g)
                while pos.row < len(order):
                    r = int(order[pos.row])
                    pos.row += 1
                    row = self._row(data, r)
                    if splits and row.split not in splits:
                        self._skip(pos, "split_not_selected")
                        continue
                    cache[(s, g, r)] = row     # a row can sit in the buffer twice (small sets)
                    refs[(s, g, r)] = refs.get((s, g, r), 0) + 1
                    buffer.append((s, g, r))
                    held += row.nbytes
                    if len(buffer) < capacity and held < self.buffer_bytes:
                        continue
                    j = int(rng.integers(len(buffer))) if cfg.shuffle_buffer > 0 else 0
                    ref = buffer.pop(j)
                    taken = take(ref)
                    held -= taken.nbytes
                    sample = self._make(taken, rng, pos)
                    if sample is None:
                        continue
                    epoch_samples += 1
                    yield self._finish(sample, pos, buffer, rng)
                for ref in refs:               # leaving the group: copy out what stays
                    if ref[0] == s and ref[1] == g:
                        cache[ref] = cache[ref].detached()
                del data
                pos.unit += 1
                pos.row = 0
            if not cfg.loop:
                while buffer:                    # drain: one pass, nothing left behind
                    j = int(rng.integers(len(buffer))) if cfg.shuffle_buffer > 0 else 0
                    ref = buffer.pop(j)
                    taken = take(ref)
                    held -= taken.nbytes
                    sample = self._make(taken, rng, pos)
                    if sample is not None:
                        yield self._finish(sample, pos, buffer, rng)
                return
            if whole_epoch and epoch_samples == 0 and len(buffer) <= epoch_start_buffer:
                raise ShardError(
                    f"data worker {global_worker} of {self.total_workers} found no usable row in a "
                    f"whole epoch of {self.shard_set.folder} (splits {sorted(splits) or 'all'}, "
                    f"skipped {pos.skipped}); use fewer ranks/workers or check the splits")
            pos.epoch += 1
            pos.unit = 0
            epoch_samples, epoch_start_buffer = 0, len(buffer)

    @staticmethod
    def _skip(pos: WorkerPosition, reason: str) -> None:
        pos.skipped[reason] = pos.skipped.get(reason, 0) + 1

    def _make(self, row: Row, rng: np.random.Generator, pos: WorkerPosition) -> Sample | None:
        cfg = self.cfg
        conv = choose_conversation(row.conversations, cfg.family_weights, rng)
        if conv is None:
            self._skip(pos, "no_conversation_in_weighted_families")
            return None
        frames = row.frames                                       # (T, D) float16, a view
        if cfg.max_audio_frames:
            frames = frames[: cfg.max_audio_frames]
        frames = pool_frames(frames, cfg.audio_pool)              # (ceil(T / k), D)
        turns = [(t["role"], t["content"]) for t in conv["turns"]]
        try:
            ex = build_example(self.tokenizer, turns, len(frames), cfg.system_prompt,
                               cfg.max_length)
        except PromptError:
            self._skip(pos, "malformed_conversation")
            return None
        if ex.n_supervised == 0:
            self._skip(pos, "no_answer_left_after_truncation")
            return None
        return Sample(ex.input_ids, ex.labels, frames[: ex.n_audio], row.id,
                      conv["id"], conv["family"], pos.worker, {})

    def _finish(self, sample: Sample, pos: WorkerPosition, buffer: list[tuple[int, int, int]],
                rng: np.random.Generator) -> Sample:
        """Stamp the worker's position after ``sample`` on it: a constant number of Python
        operations per sample. The buffer's references are immutable ``(shard, group, row)``
        tuples, so a shallow copy of the list (one pointer copy per buffered row, in C) is a
        faithful snapshot; the RNG state is a fresh dict on every read. JSON-able as it is
        (tuples are written as lists; :meth:`WorkerPosition.from_dict` reads either)."""
        pos.samples += 1
        pos.buffer = buffer                      # the live list: only read when the stream starts
        pos.rng = rng.bit_generator.state
        sample.position = {"worker": pos.worker, "epoch": pos.epoch, "unit": pos.unit,
                           "row": pos.row, "buffer": buffer.copy(), "rng": pos.rng,
                           "samples": pos.samples, "skipped": dict(pos.skipped)}
        return sample


# --------------------------------------------------------------------------- batches

@dataclass
class Batch:
    """A padded batch. Text is padded on ``padding_side``; audio frames on the right."""

    input_ids: torch.Tensor        # (B, L) long
    attention_mask: torch.Tensor   # (B, L) long
    labels: torch.Tensor           # (B, L) long, IGNORE_INDEX where unsupervised
    audio: torch.Tensor            # (B, T_max, D) float16, zero-padded
    audio_lengths: torch.Tensor    # (B,) long
    clip_ids: list[str]
    conversation_ids: list[str]
    families: list[str]
    worker: int = 0
    position: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "Batch":
        moved = {k: getattr(self, k).to(device, non_blocking=True) for k in
                 ("input_ids", "attention_mask", "labels", "audio", "audio_lengths")}
        return Batch(**moved, clip_ids=self.clip_ids, conversation_ids=self.conversation_ids,
                     families=self.families, worker=self.worker, position=self.position)

    def pin_memory(self) -> "Batch":
        for k in ("input_ids", "attention_mask", "labels", "audio", "audio_lengths"):
            setattr(self, k, getattr(self, k).pin_memory())
        return self

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(samples: Sequence[Sample], pad_id: int, padding_side: str = "right") -> Batch:
    """Pad a list of samples into a :class:`Batch`."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    b = len(samples)
    length = max(len(s.input_ids) for s in samples)
    frames = max(len(s.audio) for s in samples)
    dim = samples[0].audio.shape[1]
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)     # (B, L)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)  # (B, L)
    mask = torch.zeros((b, length), dtype=torch.long)                 # (B, L)
    # (B, T, D) in memory from Arrow's pool (reused, not freshly faulted in; see Row.detached):
    # every row is written once, the padding zeroed
    audio = np.frombuffer(pa.allocate_buffer(b * frames * dim * EMBEDDING_DTYPE.itemsize),
                          dtype=EMBEDDING_DTYPE).reshape(b, frames, dim)
    lengths = torch.zeros(b, dtype=torch.long)                        # (B,)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        sl = slice(length - n, length) if padding_side == "left" else slice(0, n)
        input_ids[i, sl] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, sl] = torch.tensor(s.labels, dtype=torch.long)
        mask[i, sl] = 1
        audio[i, : len(s.audio)] = s.audio                           # float16 at memcpy speed
        audio[i, len(s.audio):] = 0
        lengths[i] = len(s.audio)
    last = samples[-1]
    return Batch(input_ids, mask, labels, torch.from_numpy(audio), lengths, [s.clip_id for s in samples],
                 [s.conversation_id for s in samples], [s.family for s in samples],
                 last.worker, last.position)


@dataclass(frozen=True)
class Collator:
    """Picklable ``collate_fn`` for DataLoader workers."""

    pad_id: int
    padding_side: str = "right"

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        return collate(samples, self.pad_id, self.padding_side)


def make_loader(stream: ShardStream, batch_size: int, pad_id: int,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``stream`` (its workers are the stream's ``num_workers``)."""
    n = stream.cfg.num_workers
    return torch.utils.data.DataLoader(
        stream, batch_size=batch_size, collate_fn=Collator(pad_id), num_workers=n,
        pin_memory=pin_memory, prefetch_factor=4 if n else None,
        persistent_workers=False, multiprocessing_context="fork" if n and os.name == "posix" else None)


def read_rows(shard_set: ShardSet, columns: list[str] | None = None,
              splits: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Every row of the set in stored order, one row group at a time (for inference)."""
    for s, path in enumerate(shard_set.paths):
        pf = open_shard(path)
        for g in range(pf.metadata.num_row_groups):
            data = pf.read_row_group(g, columns=columns).to_pydict()
            n = len(next(iter(data.values())))
            for i in range(n):
                row = {k: v[i] for k, v in data.items()}
                if splits and row.get("split") not in set(splits):
                    continue
                yield row


__all__ = ["ShardSet", "open_shard_set", "WorkerPosition", "StreamState", "StreamConfig",
           "ShardStream", "Sample", "Batch", "collate", "Collator", "make_loader", "read_rows",
           "choose_conversation"]
