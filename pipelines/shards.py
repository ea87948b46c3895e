"""Shards: clips + annotations + instructions + embeddings → the trainer's Parquet shards.

    llark shards --clips DIR[,DIR...] --annotations DIR --instructions DIR --embeddings DIR
                 --output DIR [--target-shard-mb N] [--row-group-mb N] [--splits train,...]
                 [Beam flags]
    python -m pipelines.shards ...   (the same)

One :class:`pipelines.schema.TrainingRow` per clip: the clip's metadata, its annotation, **all**
of its conversations and its embedding, stored **once**. The join is a Beam ``CoGroupByKey`` on
the clip id over the four inputs, so it runs on any runner at any size (nothing is collected
in the driver).

Which clips become rows (each clip id is counted under exactly one outcome, never dropped
silently):

=============================== ============================================================
outcome                          when
=============================== ============================================================
row                              clip record + embedding + at least one conversation; an
                                 annotation is attached when there is one (counted in
                                 ``rows_without_annotation`` when not: the trainer needs audio
                                 and a conversation, not an annotation)
skipped ``no_instructions``      clip + embedding, no conversation
skipped ``no_embedding``         clip + conversations, no embedding
skipped ``no_embedding_no_instructions`` clip only (maybe an annotation)
skipped ``no_clip_record``       embedding / conversations / annotation for an id no clip set
                                 holds (e.g. inputs from different ingest runs)
skipped ``split_excluded``       the clip's split is not in ``--splits``
dead letter ``ShardError``       ambiguous or inconsistent inputs: an id with two clip records,
                                 embeddings or annotations; an embedding from another encoder
                                 than the embeddings index names; an embedding whose frame
                                 count does not cover the clip's window; corrupt bytes
=============================== ============================================================

Shard files. Beam's ``WriteToParquet`` decides file sizes itself, so this stage writes its own:
the driver estimates the output size from the input indexes and picks ``K = ceil(estimate /
target)`` shards; each row goes to shard ``sha1(clip id) mod K`` (stable across runs and
workers); a ``GroupByKey`` gathers a shard's rows and :class:`WriteShardFn` streams them into
one Parquet file, one row group at a time (``--row-group-mb`` of rows buffered, then written),
so a worker never holds more than one row group of a shard. Shards come out near the target
(hash balance; compression) and ``_index.json`` records their true sizes. The embedding column
is stored uncompressed, without statistics or dictionary (float16 activations do not compress,
and statistics would copy megabytes of bytes into the footer); every other column uses zstd.
Rows within a shard are in no particular order (the trainer shuffles).

``_index.json`` (written last by :func:`pipelines.stage.commit`): schema version, rows and
sha256 per shard, the resolved config, skips by reason, dead letters by type, and counts:
inputs per set, ``rows``, ``conversations`` (and per family), ``rows_without_annotation``,
``shards``, the encoder, frame rate and dimension of the embeddings. All of them come from the
pipeline's counters (:func:`pipelines.stage.tally`), none from re-reading rows; every clip
record of the inputs must reach the join and end as a row, a skip or a dead letter
(``unaccounted`` = 0), or the run fails.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import sys
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from llark.config import doc
from llark.errors import ConfigError, LlarkError, ShardError
from pipelines.schema import (
    SPLITS,
    TRAINING_SCHEMA,
    Annotation,
    Clip,
    Embedding,
    Instruction,
    TrainingRow,
    to_table,
)
from pipelines.stage import (
    DEAD_PREFIX,
    SKIP_TAG,
    Tallies,
    TallyCounts,
    count_input_rows,
    parse_stage_args,
    read_complete_index,
    read_input_rows,
    WRITER_ROWS,
    HashingWriter,
    WrittenFile,
    run_stage,
    skipped_json,
    tally,
    with_dead_letters,
    write_manifest,
)

STAGE = "shards"
FRAME_RATE_TOLERANCE = 1e-6
#: Columns small enough for Parquet statistics and dictionaries (handy for filters).
STAT_COLUMNS = ("id", "dataset", "source_id", "split", "start_s", "end_s", "encoder",
                "frame_rate_hz", "n_frames", "dim")


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class ShardsConfig:
    """Configuration of ``llark shards`` (flags, or keys of a ``--config`` YAML file)."""

    clips: str = doc("clip records (ingest output): one or more folders, comma-separated",
                     default="")
    annotations: str = doc("annotated clip records (annotate output), comma-separated; empty: "
                           "rows carry no annotation", default="")
    instructions: str = doc("instruction records (instruct output), comma-separated",
                            default="")
    embeddings: str = doc("embedding records (embed output), comma-separated; all made by one "
                          "encoder", default="")
    output: str = doc("folder for the shards: part-*.parquet, _index.json, _dead_letter/",
                      default="")
    target_shard_mb: int = doc("aimed-for size of one shard file in MB", default=256)
    row_group_mb: int = doc("rows are buffered and written in row groups of about this many "
                            "MB (writers and readers hold one row group at a time; at most "
                            "--target-shard-mb)", default=64)
    splits: tuple[str, ...] = doc("splits to include (comma-separated); empty: all",
                                  default=())

    def __post_init__(self) -> None:
        for name in ("clips", "instructions", "embeddings", "output"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} is required")
        if self.target_shard_mb < 1:
            raise ConfigError(f"--target-shard-mb must be >= 1, got {self.target_shard_mb}")
        if self.row_group_mb < 1:
            raise ConfigError(f"--row-group-mb must be >= 1, got {self.row_group_mb}")
        bad = set(self.splits) - set(SPLITS)
        if bad:
            raise ConfigError(f"--splits: unknown {sorted(bad)}; known: {', '.join(SPLITS)}")


# --------------------------------------------------------------------------- driver-side facts

def _folders(spec: str) -> list[str]:
    return [d.strip().rstrip("/") for d in spec.split(",") if d.strip()]


@dataclass(frozen=True)
class EmbeddingSpec:
    """What the embeddings index(es) say every embedding must be."""

    encoder: str
    frame_rate_hz: float
    dim: int


def embedding_spec(embeddings: str) -> EmbeddingSpec | None:
    """The encoder of the embedding set(s); an error when sets disagree. ``None`` when the
    indexes do not record it (then each row is only checked against its clip)."""
    specs = set()
    for folder in _folders(embeddings):
        index = read_complete_index(folder)
        if index is None:
            raise LlarkError(f"{folder}: no _index.json; run llark embed first")
        c = index.counts
        if "encoder" in c and "dim" in c and "frame_rate_hz" in c:
            specs.add(EmbeddingSpec(str(c["encoder"]), float(c["frame_rate_hz"]), int(c["dim"])))
    if len(specs) > 1:
        raise LlarkError(f"embedding sets {embeddings} were made by different encoders "
                         f"({sorted(s.encoder for s in specs)}); a shard set needs one")
    return specs.pop() if specs else None


def input_bytes(*specs: str) -> int:
    """Total bytes of the input sets' shards, from their indexes (an output-size estimate)."""
    total = 0
    for spec in specs:
        for folder in _folders(spec):
            index = read_complete_index(folder)
            total += sum(s.bytes for s in index.shards) if index is not None else 0
    return total


def shard_of(clip_id: str, n_shards: int) -> int:
    """Stable shard number of a clip (the same on every worker and every run)."""
    digest = hashlib.sha1(clip_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_shards


# --------------------------------------------------------------------------- keying (no closures)

def key_clip(row: dict) -> tuple[str, dict]:
    return row["id"], row


def key_annotation(row: dict) -> tuple[str, dict]:
    return row["id"], row["annotation"]


def key_by_clip_id(row: dict) -> tuple[str, dict]:
    return row["clip_id"], row


# --------------------------------------------------------------------------- join

def join_clip(clip_id: str, clips: list[dict], annotations: list[dict],
              instructions: list[dict], embeddings: list[dict],
              spec: EmbeddingSpec | None, splits: tuple[str, ...]
              ) -> TrainingRow | str:
    """The pure join of one clip id: a :class:`TrainingRow`, or the skip reason (str).

    Raises :class:`ShardError` for ambiguous or inconsistent inputs.
    """
    if not clips:
        return "no_clip_record"
    for what, items in (("clip records", clips), ("embeddings", embeddings),
                        ("annotations", annotations)):
        if len(items) > 1:
            raise ShardError(f"{clip_id}: {len(items)} {what} for one clip (inputs overlap: "
                             "was a set passed twice, or two runs merged?)")
    clip = Clip.from_row(clips[0])
    if splits and clip.split not in splits:
        return "split_excluded"
    if not embeddings and not instructions:
        return "no_embedding_no_instructions"
    if not embeddings:
        return "no_embedding"
    if not instructions:
        return "no_instructions"
    emb = Embedding.from_row(embeddings[0])
    if spec is not None and (emb.encoder != spec.encoder or emb.dim != spec.dim
                             or abs(emb.frame_rate_hz - spec.frame_rate_hz) > FRAME_RATE_TOLERANCE):
        raise ShardError(f"{clip_id}: embedding by {emb.encoder} ({emb.dim}-d at "
                         f"{emb.frame_rate_hz} Hz), but the embeddings index names "
                         f"{spec.encoder} ({spec.dim}-d at {spec.frame_rate_hz} Hz)")
    want = max(1, math.ceil(clip.duration_s * emb.frame_rate_hz - 1e-6))
    if emb.n_frames != want:
        raise ShardError(f"{clip_id}: embedding has {emb.n_frames} frames but the clip window "
                         f"{clip.start_s:.3f}-{clip.end_s:.3f}s needs {want} at "
                         f"{emb.frame_rate_hz} Hz (embedded from another window? re-run embed)")
    emb.array()                                  # raises ShardError on a wrong byte count
    ann = Annotation.from_row(annotations[0]) if annotations else None
    convs = tuple(sorted((Instruction.from_row(r) for r in instructions), key=lambda c: c.id))
    return TrainingRow(clip, ann, convs, emb)


class JoinFn(beam.DoFn):
    """``(clip_id, {clip, annotation, instructions, embedding})`` → ``(shard, row dict)``,
    or a counted skip; inconsistent inputs raise (→ dead letters)."""

    def __init__(self, spec: EmbeddingSpec | None, splits: tuple[str, ...], n_shards: int
                 ) -> None:
        self._spec = spec
        self._splits = splits
        self._n = n_shards

    def process(self, element: tuple[str, dict]) -> Iterable[Any]:
        clip_id, groups = element
        clips = list(groups["clip"])
        if clips:
            # counted before the join: a key that fails is dead-lettered, and still reached it
            tally("keys_with_clip")
            tally("clip_records_joined", len(clips))
        out = join_clip(clip_id, clips, list(groups["annotation"]),
                        list(groups["instructions"]), list(groups["embedding"]),
                        self._spec, self._splits)
        if isinstance(out, str):
            yield beam.pvalue.TaggedOutput(SKIP_TAG, skipped_json(STAGE, clip_id, out))
            return
        yield shard_of(clip_id, self._n), out.to_row()


# --------------------------------------------------------------------------- writing

@functools.lru_cache(maxsize=1)
def column_options() -> tuple[dict[str, str], list[str]]:
    """Per-leaf-column compression (zstd; the embedding uncompressed) and the leaf columns
    that get statistics and dictionaries (small scalar ones only)."""
    buf = io.BytesIO()
    pq.write_table(TRAINING_SCHEMA.empty_table(), buf)
    buf.seek(0)
    leaves = [c.path for c in pq.ParquetFile(buf).schema]
    compression = {leaf: ("NONE" if leaf == "embedding" else "ZSTD") for leaf in leaves}
    small = [leaf for leaf in leaves if leaf in STAT_COLUMNS]
    return compression, small


def row_bytes(row: dict) -> int:
    """Rough in-memory size of a training row (the embedding dominates)."""
    text = sum(len(c["content"]) for conv in row["conversations"] for c in conv["turns"])
    return len(row["embedding"]) + text + 2048


def open_shard_writer(stream: Any) -> pq.ParquetWriter:
    compression, small = column_options()
    return pq.ParquetWriter(stream, TRAINING_SCHEMA, compression=compression,
                            use_dictionary=small, write_statistics=small,
                            data_page_size=1 << 20)


class WriteShardFn(beam.DoFn):
    """``(shard, rows)`` → ``{staging}/data/part-{shard:05d}.parquet``, a row group at a time;
    the shard's statistics go to the pipeline's counters."""

    def __init__(self, staging: str, row_group_mb: int) -> None:
        self._staging = staging
        self._group_bytes = row_group_mb << 20

    def process(self, element: tuple[int, Iterable[dict]]) -> Iterable[str]:
        shard, rows = element
        rel = f"data/part-{shard:05d}.parquet"
        path = FileSystems.join(self._staging, rel)
        buffer: list[dict] = []
        buffered = n_rows = 0
        # checksum and size as written: the commit reads the manifest, not the shard
        with HashingWriter(FileSystems.create(path)) as stream:
            writer = open_shard_writer(stream)
            for row in rows:
                buffer.append(row)
                buffered += row_bytes(row)
                tally("rows")
                tally(WRITER_ROWS)
                n_rows += 1
                tally("rows_without_annotation", int(row["annotation"] is None))
                tally("conversations", len(row["conversations"]))
                for conv in row["conversations"]:
                    tally(f"conversations_by_family/{conv['family']}")
                if buffered >= self._group_bytes:
                    writer.write_table(to_table(buffer, TRAINING_SCHEMA), row_group_size=len(buffer))
                    tally("row_groups")
                    buffer, buffered = [], 0
            if buffer:
                writer.write_table(to_table(buffer, TRAINING_SCHEMA), row_group_size=len(buffer))
                tally("row_groups")
            writer.close()
        tally("shards")
        yield WrittenFile(rel, n_rows, stream.size, stream.sha256).to_json()


# --------------------------------------------------------------------------- pipeline

@dataclass(frozen=True)
class ShardsCounts(TallyCounts):
    """The index counts: the inputs' sizes from their indexes, the rest from the counters."""

    inputs_clips: int
    inputs_annotations: int
    inputs_instructions: int
    inputs_embeddings: int
    planned_shards: int
    estimated_bytes: int
    spec: EmbeddingSpec | None

    def __call__(self, tallies: Tallies) -> dict[str, Any]:
        skipped = tallies.skipped
        rows, dead = tallies.get("rows"), tallies.total(DEAD_PREFIX)
        ended = rows + sum(skipped.values()) - skipped.get("no_clip_record", 0) + dead
        counts: dict[str, Any] = {
            "inputs_clips": self.inputs_clips,
            "inputs_annotations": self.inputs_annotations,
            "inputs_instructions": self.inputs_instructions,
            "inputs_embeddings": self.inputs_embeddings,
            "planned_shards": self.planned_shards,
            "estimated_bytes": self.estimated_bytes,
            "rows": rows, "row_groups": tallies.get("row_groups"),
            "rows_without_annotation": tallies.get("rows_without_annotation"),
            "conversations": tallies.get("conversations"), "shards": tallies.get("shards"),
            # clip records that never reached the join + clip ids with no outcome
            "unaccounted": (self.inputs_clips - tallies.get("clip_records_joined"))
                           + (tallies.get("keys_with_clip") - ended),
        }
        for fam, n in tallies.group("conversations_by_family/").items():
            counts[f"conversations_{fam}"] = n
        if self.spec is not None:
            counts.update(encoder=self.spec.encoder, frame_rate_hz=self.spec.frame_rate_hz,
                          dim=self.spec.dim)
        return counts


def build_shards(pipeline: beam.Pipeline, cfg: ShardsConfig, staging: str) -> ShardsCounts:
    spec = embedding_spec(cfg.embeddings)
    estimate = input_bytes(cfg.clips, cfg.instructions, cfg.embeddings, cfg.annotations)
    n_shards = max(1, math.ceil(estimate / (cfg.target_shard_mb << 20)))
    inputs: dict[str, beam.PCollection] = {
        "clip": read_input_rows(pipeline, cfg.clips, "clip", "ReadClips")
        | "KeyClips" >> beam.Map(key_clip),
        "instructions": read_input_rows(pipeline, cfg.instructions, "instruction",
                                        "ReadInstructions")
        | "KeyInstructions" >> beam.Map(key_by_clip_id),
        "embedding": read_input_rows(pipeline, cfg.embeddings, "embedding", "ReadEmbeddings")
        | "KeyEmbeddings" >> beam.Map(key_by_clip_id),
    }
    if cfg.annotations:
        inputs["annotation"] = (read_input_rows(pipeline, cfg.annotations, "annotated_clip",
                                                "ReadAnnotations")
                                | "KeyAnnotations" >> beam.Map(key_annotation))
    else:
        inputs["annotation"] = pipeline | "NoAnnotations" >> beam.Create([])
    joined = inputs | "JoinByClip" >> beam.CoGroupByKey()
    rows = with_dead_letters(joined, "Join", JoinFn(spec, cfg.splits, n_shards), STAGE, staging)
    written = (rows
               | "GroupByShard" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(WriteShardFn(staging, min(cfg.row_group_mb,
                                                                        cfg.target_shard_mb))))
    write_manifest(written, staging, "WriteShards")
    return ShardsCounts(
        inputs_clips=count_input_rows(cfg.clips),
        inputs_annotations=count_input_rows(cfg.annotations) if cfg.annotations else 0,
        inputs_instructions=count_input_rows(cfg.instructions),
        inputs_embeddings=count_input_rows(cfg.embeddings),
        planned_shards=n_shards, estimated_bytes=estimate, spec=spec)


class ShardsBuild:
    """``build(pipeline, staging)`` for :func:`pipelines.stage.run_stage` (no closures)."""

    def __init__(self, cfg: ShardsConfig) -> None:
        self.cfg = cfg

    def __call__(self, pipeline: beam.Pipeline, staging: str) -> ShardsCounts:
        return build_shards(pipeline, self.cfg, staging)


def run(argv: list[str] | None = None) -> int:
    """``llark shards``; returns 0 on success, 1 on a config error or a failed run."""
    try:
        cfg, args = parse_stage_args(ShardsConfig, argv, "llark shards",
                                     "Join clips, annotations, instructions and embeddings "
                                     "into the trainer's Parquet shards.")
        result = run_stage(STAGE, "training_row", cfg.output, cfg, args.beam_args,
                           ShardsBuild(cfg), force=args.force,
                           max_error_rate=args.max_error_rate,
                           inputs_count=count_input_rows(cfg.clips),
                           job_file=args.job_file)
    except LlarkError as exc:
        print(f"llark shards: error: {exc}", file=sys.stderr)
        return 1
    idx = result.index
    if idx is None:           # a dry run
        return 0
    sizes = [s.bytes / 2**20 for s in idx.shards]
    if sizes and not result.skipped_run:
        print(f"[{STAGE}] shard sizes {min(sizes):.1f}-{max(sizes):.1f} MB "
              f"(target {cfg.target_shard_mb} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Beam pickles this module's DoFns by their
    # module path, and worker processes cannot import "__main__".
    from pipelines.shards import run as _run

    raise SystemExit(_run())
