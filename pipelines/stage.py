"""What every Beam stage shares: options, dead letters, and the commit that makes a stage a
transaction.

A stage writes its records, dead letters and skip notes under ``{output}/_staging/{run_id}/``;
its writers record each file's rows, bytes and sha256 as they write it (``written/``), and the
workers count and sample the dead letters and skips (``notes/``). When the pipeline has
finished, the launcher writes ``_finished.json`` there, then :func:`commit` moves the Parquet
files to ``{output}/part-NNNNN.parquet``, the dead letters to ``{output}/_dead_letter/{stage}/``
and the skip manifest to ``{output}/_skipped/{stage}/``, builds the index from the manifests and
summaries alone (it never opens an output file), and writes ``_index.json`` last. A folder with
an index is complete and a rerun does nothing; a finished but uncommitted staging folder of the
same config is committed by the rerun; anything else is cleaned and redone, so an interrupted
run never leaves duplicates. All file access goes through Beam's ``FileSystems`` so ``gs://`` outputs work
the same as local ones.

Counts come out of the pipeline: DoFns count with :func:`tally` (Beam metrics), dead letters
and skips are counted where they are written, and :func:`run_stage` hands the finished
pipeline's counters (:class:`Tallies`) to the stage's :class:`TallyCounts` and to the commit,
which refuses to mark a set complete while any input is ``unaccounted``. ``--dry_run`` with the
DataflowRunner builds the job, prints its size and writes nothing. Flags neither llark nor Beam
knows are errors naming the nearest real flag (:func:`parse_stage_args`).

Each stage module (``pipelines/<stage>.py``) provides module-level DoFns and a
``build(pipeline, cfg, staging) -> None`` that wires them; :func:`run_stage` does the rest.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import os
import sys
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping


class _QuietBeamNoise(logging.Filter):
    """Drop two harmless Beam warnings that would otherwise open every command's output."""

    NOISE = ("apitools not found", "requested in with_outputs() but not declared")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.NOISE)


logging.getLogger().addFilter(_QuietBeamNoise())

import apache_beam as beam  # noqa: E402  (after the filter, which must see its import warning)
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.io.filesystem import BeamIOError  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.metrics.metric import MetricsFilter  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions  # noqa: E402

from llark.config import to_dict
from llark.dataflow_job import JOB_LINE_PREFIX, write_job_file
from llark.workers import WorkerSettings
from pipelines.dataflow import (
    check_dataflow_workers,
    is_dataflow,
    job_ref,
    wait_until_finished,
    worker_settings,
)
from llark.errors import ConfigError, LlarkError
from pipelines.schema import (
    DEAD_LETTER_DIR,
    INDEX_FILE,
    SCHEMA_VERSION,
    SKIPPED_DIR,
    DeadLetter,
    ShardEntry,
    ShardIndex,
    Skipped,
)

log = logging.getLogger("llark")

STAGING_DIR = "_staging"
DEAD_TAG = "dead_letter"
SKIP_TAG = "skipped"


# --------------------------------------------------------------------------- options

def pipeline_options(beam_args: list[str], default_workers: int | None = None) -> PipelineOptions:
    """Beam options from the pass-through flags; locally the multi-process DirectRunner.

    Beam's default local runner first tries Prism (which downloads a binary); we never rely on
    it: without ``--runner`` the DirectRunner runs with one worker process per core.
    """
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args += ["--runner", "DirectRunner"]
    runner = _flag_value(args, "--runner") or "DirectRunner"
    if runner in ("DirectRunner", "direct"):
        if not any(a.startswith("--direct_running_mode") for a in args):
            args += ["--direct_running_mode", "multi_processing"]
        if not any(a.startswith("--direct_num_workers") for a in args):
            args += ["--direct_num_workers", str(default_workers or os.cpu_count() or 1)]
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        # worker processes log every bundle at INFO; keep the terminal for our summaries
        args += ["--default_sdk_harness_log_level", "ERROR"]
    return PipelineOptions(args, save_main_session=False)


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------- tallies

#: Namespace of every counter a stage keeps (Beam metrics, summed by the runner).
TALLY_NAMESPACE = "llark"
#: Counter-name prefixes: ``dead_letters/<ErrorType>`` and ``skipped/<reason>``.
DEAD_PREFIX = "dead_letters/"
SKIP_PREFIX = "skipped/"

_COUNTERS: dict[str, Any] = {}


def tally(name: str, n: int = 1) -> None:
    """Add ``n`` to the stage counter ``name`` (a Beam metric; ``a/b`` names a group ``a``).

    Call it only once an element's outcome is decided (just before yielding it): counters
    incremented before an exception stay counted even though the element is dead-lettered.
    """
    counter = _COUNTERS.get(name)
    if counter is None:
        counter = _COUNTERS[name] = Metrics.counter(TALLY_NAMESPACE, name)
    counter.inc(n)


@dataclass(frozen=True)
class Tallies:
    """The stage counters of one finished pipeline, as the runner summed them."""

    counters: Mapping[str, int] = field(default_factory=dict)

    def get(self, name: str) -> int:
        return int(self.counters.get(name, 0))

    def group(self, prefix: str) -> dict[str, int]:
        """``{"train": 3, ...}`` from the counters ``<prefix>train`` ..., sorted by key."""
        return {k[len(prefix):]: int(v) for k, v in sorted(self.counters.items())
                if k.startswith(prefix)}

    def total(self, prefix: str) -> int:
        return sum(self.group(prefix).values())

    @property
    def dead_letters(self) -> dict[str, int]:
        return self.group(DEAD_PREFIX)

    @property
    def skipped(self) -> dict[str, int]:
        return self.group(SKIP_PREFIX)


def pipeline_tallies(result: Any) -> Tallies:
    """The ``llark`` counters of a finished pipeline (committed values where the runner has
    them: a retried bundle counts once)."""
    query = result.metrics().query(MetricsFilter().with_namespace(TALLY_NAMESPACE))
    sums: dict[str, int] = {}
    for c in query["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        sums[c.key.metric.name] = sums.get(c.key.metric.name, 0) + int(value or 0)
    return Tallies(sums)


class TallyCounts:
    """Base of the index counts a stage computes from its :class:`Tallies` after the run.

    A stage's ``build`` returns one; :func:`run_stage` calls it with the pipeline's tallies.
    Counts with a non-zero ``unaccounted`` fail the commit.
    """

    def __call__(self, tallies: Tallies) -> dict[str, Any]:
        raise NotImplementedError


# --------------------------------------------------------------------------- dead letters

def element_id(element: Any) -> str:
    """The record ID of whatever a DoFn failed on (dataclass, row dict or ``(key, value)``)."""
    if isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], str):
        return element[0]
    if isinstance(element, dict):
        return str(element.get("id") or element.get("clip_id") or "")
    return str(getattr(element, "id", "") or getattr(element, "clip_id", ""))


def element_uri(element: Any) -> str:
    if isinstance(element, tuple) and len(element) == 2:
        element = element[1]
    if isinstance(element, dict):
        return str(element.get("audio_uri") or "")
    return str(getattr(element, "audio_uri", "") or "")


def _message(exc_repr: str, exc_type: type) -> str:
    """``"AudioNotFoundError('x')"`` → ``"x"`` (Beam hands over ``repr(exc)``)."""
    name = exc_type.__name__
    if exc_repr.startswith(name + "("):
        try:
            args = ast.literal_eval(exc_repr[len(name):])
            return args if isinstance(args, str) else "; ".join(map(str, args))
        except (ValueError, SyntaxError):
            pass
    return exc_repr


def unexpected_error_message(exc_repr: str, tb_lines: list[str]) -> str:
    """The message of a dead letter for an unexpected error (a bug, not a ``LlarkError``): the
    error and where it happened (the traceback's last frame), so that users can report it."""
    where = "".join(tb_lines[-2:]).strip().replace("\n", " | ")
    return f"{exc_repr} (unexpected; at {where})"


class ToDeadLetterFn(beam.DoFn):
    """Turns ``with_exception_handling``'s ``(element, (type, repr, traceback))`` into JSON."""

    def __init__(self, stage: str) -> None:
        self._stage = stage

    def process(self, bad: tuple) -> Iterable[str]:
        element, (exc_type, exc_repr, tb_lines) = bad
        if not issubclass(exc_type, LlarkError):
            exc_repr = unexpected_error_message(exc_repr, tb_lines)
        message = _message(exc_repr, exc_type)
        for record_id, uri in element_records(element):
            tally(DEAD_PREFIX + exc_type.__name__)
            yield DeadLetter(self._stage, record_id, exc_type.__name__, message, uri).to_json()


def element_records(element: Any) -> list[tuple[str, str]]:
    """``(record id, audio uri)`` of each record a failed element held: one, or each clip of
    a :class:`TrackClips` group (so a group that fails leaves one dead letter per clip)."""
    if isinstance(element, TrackClips):
        return [(element_id(r), element_uri(r)) for r in element.rows]
    return [(element_id(element), element_uri(element))]


@dataclass(frozen=True)
class TrackClips:
    """The clip rows of one audio file, gathered so the file is read once for all of them."""

    audio_uri: str
    rows: tuple[dict, ...]


def audio_uri_of(row: dict) -> tuple[str, dict]:
    return str(row["audio_uri"]), row


def _start_s(row: dict) -> float:
    return float(row["start_s"])


def to_track_clips(item: tuple[str, Iterable[dict]]) -> TrackClips:
    uri, rows = item
    return TrackClips(uri, tuple(sorted(rows, key=_start_s)))


def group_by_track(rows: beam.PCollection, label: str = "ByTrack") -> beam.PCollection:
    """Clip rows → one :class:`TrackClips` per audio file (remote audio is then read once per
    track, not once per clip)."""
    return (rows | f"{label}:Key" >> beam.Map(audio_uri_of)
            | f"{label}:Group" >> beam.GroupByKey()
            | f"{label}:Gather" >> beam.Map(to_track_clips))


class CountDeadFn(beam.DoFn):
    """Counts the dead letters (JSON) a DoFn emitted directly, by error type."""

    def process(self, line: str) -> Iterable[str]:
        tally(DEAD_PREFIX + json.loads(line)["error_type"])
        yield line


class CountSkippedFn(beam.DoFn):
    """Counts skip notes (JSON) by reason."""

    def process(self, line: str) -> Iterable[str]:
        tally(SKIP_PREFIX + json.loads(line)["reason"])
        yield line


def write_dead_letters(lines: beam.PCollection, label: str, staging: str,
                       counted: bool = False) -> None:
    """Dead letters (JSON lines), counted by type on the way (``counted``: already counted where
    they were made, by :class:`ToDeadLetterFn`) → inside :func:`run_stage`, the stage's one
    dead-letter file and summary (:func:`_write_notes`); otherwise (a pipeline built by hand)
    ``{staging}/dead/{label}-*.jsonl``."""
    name = label.replace(" ", "_").replace(":", "-")
    if not counted:
        lines = lines | f"{label}:Count" >> beam.ParDo(CountDeadFn())
    sink = _NOTE_SINKS.get(staging)
    if sink is not None:          # inside run_stage: one file and one summary per stage
        sink[DEAD_NOTES].append(lines)
        return
    # skip_if_empty: no file for no lines (Beam's S3 writer cannot finish an empty object: a
    # multipart upload with no part is refused with MalformedXML, by moto and by S3 alike)
    lines | f"{label}:Write" >> beam.io.WriteToText(f"{staging}/dead/{name}",
                                                     file_name_suffix=".jsonl",
                                                     skip_if_empty=True)


def dead_letter_json(stage: str, element: Any, exc: LlarkError) -> str:
    """A dead letter built directly (for failures a DoFn detects without raising)."""
    return DeadLetter(stage, element_id(element), type(exc).__name__, str(exc),
                      element_uri(element)).to_json()


def skipped_json(stage: str, record_id: str, reason: str) -> str:
    return Skipped(stage, record_id, reason).to_json()


def with_dead_letters(pcoll: beam.PCollection, label: str, fn: beam.DoFn, stage: str,
                      staging: str) -> beam.PCollection:
    """``pcoll | ParDo(fn)`` whose failures go to the stage's dead-letter files.

    Returns the good outputs. ``fn`` may also yield ``TaggedOutput(SKIP_TAG, skipped_json(...))``
    and ``TaggedOutput(DEAD_TAG, dead_letter_json(...))``.
    """
    results = (pcoll | label >> beam.ParDo(fn).with_outputs(SKIP_TAG, DEAD_TAG, main="main")
               .with_exception_handling(use_subprocess=False, dead_letter_tag="failed"))
    write_dead_letters(results["failed"] | f"{label}:ToDeadLetter"
                       >> beam.ParDo(ToDeadLetterFn(stage)), f"{label}:Failed", staging,
                       counted=True)
    write_dead_letters(results[DEAD_TAG], f"{label}:Direct", staging)
    skipped = results[SKIP_TAG] | f"{label}:CountSkipped" >> beam.ParDo(CountSkippedFn())
    sink = _NOTE_SINKS.get(staging)
    if sink is not None:
        sink[SKIP_NOTES].append(skipped)
    else:
        skipped | f"{label}:WriteSkipped" >> beam.io.WriteToText(
            f"{staging}/skipped/{label.replace(' ', '_')}", file_name_suffix=".jsonl",
            skip_if_empty=True)
    return results["main"]


# --------------------------------------------------------------------------- writers

#: ``{staging}/written/*.jsonl``: one :class:`WrittenFile` line per data file a writer closed.
WRITTEN_DIR = "written"
#: ``{staging}/notes/{dead,skipped}.jsonl``: per error type / skip reason, a count and a sample.
NOTES_DIR = "notes"
DEAD_NOTES, SKIP_NOTES = "dead", "skipped"
#: ``{staging}/_finished.json``: the job finished; its counters, counts and config. A staging
#: folder holding it is committed by the next run instead of being redone.
FINISHED_FILE = "_finished.json"
#: Counter of the rows the writers wrote (checked against their manifests at commit).
WRITER_ROWS = "llark_writer/rows"
#: Examples kept per error type / skip reason, and the length their texts are cut to.
SAMPLE_SIZE = 5
SAMPLE_TEXT = 300


class HashingWriter(io.RawIOBase):
    """A write-only stream that passes bytes on to ``raw`` and keeps their sha256 and count,
    so a writer knows its file's checksum and size when it closes it (nothing is read back)."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:       # type: ignore[override]
        view = memoryview(data)
        self._raw.write(view)
        self._hash.update(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if not self.closed:
            self._raw.flush()

    def close(self) -> None:
        if not self.closed:
            super().close()           # flushes first
            self._raw.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True)
class WrittenFile:
    """What a writer hands on for each file it wrote: its path relative to the staging folder,
    rows, bytes and sha256, computed as it wrote. The commit builds the index from these."""

    path: str
    rows: int
    bytes: int
    sha256: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "WrittenFile":
        return cls(**json.loads(line))


class WriteParquetFn(beam.DoFn):
    """Records (objects with ``to_row``, or row dicts) → one Parquet file per bundle under
    ``{staging}/data/``, row groups of about ``row_group_bytes``; yields the file's
    :class:`WrittenFile` line when the bundle ends. A retried bundle's file is never named in a
    committed manifest, so the commit ignores it (and removes it with the staging folder)."""

    def __init__(self, staging: str, schema: Any, row_group_bytes: int = 64 << 20,
                 batch_rows: int = 64) -> None:
        self._staging = staging
        self._schema = schema
        self._group_bytes = row_group_bytes
        self._batch_rows = batch_rows

    def start_bundle(self) -> None:
        self._stream: HashingWriter | None = None
        self._writer: Any = None
        self._rel = ""
        self._rows: list[dict] = []
        self._batches: list[Any] = []
        self._batch_bytes = 0
        self._written = 0

    def process(self, record: Any) -> None:
        if self._stream is None:
            import pyarrow.parquet as pq

            self._rel = f"data/part-{uuid.uuid4().hex}.parquet"
            self._stream = HashingWriter(FileSystems.create(_join(self._staging, self._rel)))
            self._writer = pq.ParquetWriter(self._stream, self._schema, compression="none",
                                            use_compliant_nested_type=False)
        self._rows.append(record if isinstance(record, dict) else record.to_row())
        if len(self._rows) >= self._batch_rows:
            self._flush_rows()
        if self._batch_bytes >= self._group_bytes:
            self._flush_group()
        tally(WRITER_ROWS)

    def _flush_rows(self) -> None:
        import pyarrow as pa

        if self._rows:
            batch = pa.RecordBatch.from_pylist(self._rows, schema=self._schema)
            self._batches.append(batch)
            self._batch_bytes += batch.nbytes
            self._written += len(self._rows)
            self._rows = []

    def _flush_group(self) -> None:
        import pyarrow as pa

        if self._batches:
            self._writer.write_table(pa.Table.from_batches(self._batches, schema=self._schema))
            self._batches, self._batch_bytes = [], 0

    def finish_bundle(self) -> Iterable[Any]:
        if self._stream is None:
            return
        from apache_beam.transforms.window import GlobalWindows

        self._flush_rows()
        self._flush_group()
        self._writer.close()
        self._stream.close()
        done = WrittenFile(self._rel, self._written, self._stream.size, self._stream.sha256)
        self._stream = None
        yield GlobalWindows.windowed_value(done.to_json())


def write_manifest(lines: beam.PCollection, staging: str, label: str) -> None:
    """:class:`WrittenFile` lines → ``{staging}/written/{label}.jsonl`` (one file)."""
    lines | f"{label}:Manifest" >> beam.io.WriteToText(
        _join(staging, WRITTEN_DIR, _file_label(label)), file_name_suffix=".jsonl",
        num_shards=1, shard_name_template="", skip_if_empty=True)


def _file_label(label: str) -> str:
    return label.replace(" ", "_").replace(":", "-").replace("/", "-")


def write_records(pcoll: beam.PCollection, schema: Any, staging: str,
                  label: str = "WriteRecords", row_group_mb: int = 64) -> None:
    """Records (objects with ``to_row``) → Parquet under ``{staging}/data/``, with the files'
    rows, sizes and checksums in ``{staging}/written/`` (computed on the workers)."""
    written = pcoll | label >> beam.ParDo(WriteParquetFn(staging, schema, row_group_mb << 20))
    write_manifest(written, staging, label)


# --------------------------------------------------------------------------- notes

#: While :func:`run_stage` builds a stage: staging folder → its dead-letter and skip-note
#: PCollections, written once per stage by :func:`_write_notes` (one file each + a summary).
_NOTE_SINKS: dict[str, dict[str, list[beam.PCollection]]] = {}


def _short(text: Any) -> str:
    text = str(text)
    return text if len(text) <= SAMPLE_TEXT else text[:SAMPLE_TEXT] + "…"


def dead_note_key(line: str) -> tuple[str, str]:
    """A dead letter → ``(error_type, its shortened JSON)``."""
    d = json.loads(line)
    short = {k: _short(v) for k, v in d.items()}
    return str(d["error_type"]), json.dumps(short, ensure_ascii=False, sort_keys=True)


def skip_note_key(line: str) -> tuple[str, str]:
    """A skip note → ``(reason, the skipped record's id)``."""
    d = json.loads(line)
    return str(d["reason"]), _short(d["id"])


class NoteSummaryFn(beam.CombineFn):
    """Per key: how many notes, and the :data:`SAMPLE_SIZE` smallest of them (a deterministic,
    bounded sample, merged on the workers)."""

    def create_accumulator(self) -> list:
        return [0, []]

    def add_input(self, acc: list, item: str) -> list:
        acc[0] += 1
        acc[1] = _smallest(acc[1] + [item])
        return acc

    def merge_accumulators(self, accs: Iterable[list]) -> list:
        count, sample = 0, []
        for n, s in accs:
            count += n
            sample = _smallest(sample + s)
        return [count, sample]

    def extract_output(self, acc: list) -> list:
        return acc


def _smallest(items: list[str]) -> list[str]:
    return sorted(set(items))[:SAMPLE_SIZE]


def note_summary_json(item: tuple[str, list]) -> str:
    key, (count, sample) = item
    return json.dumps({"key": key, "count": count, "sample": sample}, ensure_ascii=False)


def _write_notes(pipeline: beam.Pipeline, staging: str,
                 sinks: Mapping[str, list[beam.PCollection]]) -> None:
    """A stage's dead letters → ``{staging}/dead/all.jsonl``, its skip notes →
    ``{staging}/skipped/all.jsonl`` (the skip manifest), and per type / reason a count and a
    sample → ``{staging}/notes/{dead,skipped}.jsonl``: all made on the workers."""
    for kind, key in ((DEAD_NOTES, dead_note_key), (SKIP_NOTES, skip_note_key)):
        pcolls = sinks.get(kind) or []
        if not pcolls:
            continue
        label = f"Notes:{kind}"
        lines = (pcolls[0] if len(pcolls) == 1
                 else tuple(pcolls) | f"{label}:Flatten" >> beam.Flatten())
        lines | f"{label}:Write" >> beam.io.WriteToText(
            _join(staging, kind, "all"), file_name_suffix=".jsonl", num_shards=1,
            shard_name_template="", skip_if_empty=True)
        (lines | f"{label}:Key" >> beam.Map(key)
         | f"{label}:Summarize" >> beam.CombinePerKey(NoteSummaryFn())
         | f"{label}:ToJson" >> beam.Map(note_summary_json)
         | f"{label}:WriteSummary" >> beam.io.WriteToText(
             _join(staging, NOTES_DIR, kind), file_name_suffix=".jsonl", num_shards=1,
             shard_name_template="", skip_if_empty=True))


# --------------------------------------------------------------------------- commit

@dataclass(frozen=True)
class StageResult:
    index: ShardIndex | None     # None only for a dry run
    output: str
    skipped_run: bool     # True when the output was already complete
    dry_run: "DryRun | None" = None

    @property
    def error_total(self) -> int:
        return sum(self.index.dead_letters.values()) if self.index is not None else 0


@dataclass(frozen=True)
class DryRun:
    """What ``--dry_run`` built instead of running: the job's size."""

    runner: str
    transforms: int            # transforms in the pipeline proto (composites included)
    proto_bytes: int           # serialized size of the pipeline proto the job would carry


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


def _list(pattern: str) -> list[str]:
    matches = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in matches)


def _read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def _iter_lines(path: str, chunk: int = 1 << 20) -> Iterable[str]:
    """Non-empty lines of a text file, read in chunks (never whole in memory)."""
    rest = b""
    with FileSystems.open(path) as f:
        while block := f.read(chunk):
            *lines, rest = (rest + block).split(b"\n")
            for line in lines:
                if line.strip():
                    yield line.decode("utf-8")
    if rest.strip():
        yield rest.decode("utf-8")


def read_complete_index(output: str) -> ShardIndex | None:
    path = _join(output, INDEX_FILE)
    if not _exists(path):
        return None
    return ShardIndex.from_json(_read_text(path))


def clean_incomplete(output: str) -> int:
    """Remove what an interrupted run left (parts, dead letters, skip notes, staging). Returns
    files removed."""
    doomed = (_list(_join(output, "part-*.parquet")) + _list(_join(output, STAGING_DIR, "**"))
              + _list(_join(output, DEAD_LETTER_DIR, "**"))
              + _list(_join(output, SKIPPED_DIR, "**"))
              + _list(_join(output, REJECTED_INDEX_FILE)))
    if doomed:
        FileSystems.delete(doomed)
    for folder in (_join(output, STAGING_DIR), _join(output, DEAD_LETTER_DIR),
                   _join(output, SKIPPED_DIR)):
        _remove_empty_local_dirs(folder)
    return len(doomed)


def _remove_empty_local_dirs(folder: str) -> None:
    """Object stores have no directories; on a local disk remove the empty ones left behind."""
    if not os.path.isdir(folder):
        return
    for root, dirs, _files in os.walk(folder, topdown=False):
        for d in dirs:
            path = os.path.join(root, d)
            if not os.listdir(path):
                os.rmdir(path)
    if not os.listdir(folder):
        os.rmdir(folder)


REJECTED_INDEX_FILE = "_index.rejected.json"


@dataclass(frozen=True)
class NoteSummary:
    """Per error type (dead letters) or reason (skips): the count and the workers' sample."""

    counts: dict[str, int]
    samples: dict[str, list[str]]


def read_note_summary(staging: str, kind: str) -> NoteSummary:
    """``{staging}/notes/{kind}.jsonl`` (absent: nothing of that kind was written)."""
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    path = _join(staging, NOTES_DIR, f"{kind}.jsonl")
    if _exists(path):
        for line in _iter_lines(path):
            d = json.loads(line)
            counts[d["key"]] = counts.get(d["key"], 0) + int(d["count"])
            samples[d["key"]] = _smallest(samples.get(d["key"], []) + list(d["sample"]))
    return NoteSummary(dict(sorted(counts.items())), dict(sorted(samples.items())))


def _sizes(pattern: str) -> dict[str, int]:
    """File name → size of the files matching ``pattern`` (one listing; no file is read)."""
    return {m.path.rstrip("/").rsplit("/", 1)[-1]: int(m.size_in_bytes)
            for m in FileSystems.match([pattern])[0].metadata_list}


def _move_parts(output: str, staging: str) -> list[ShardEntry]:
    """Move the files the writers' manifests name to ``{output}/part-NNNNN.parquet`` and return
    their index entries, from the manifests alone. The staged files are not even listed (on an
    object store a listing costs ~1 KB per object); only ``{output}/part-*.parquet`` is, which
    is empty unless an earlier, interrupted commit moved some already: those are found in place
    (by name and size) and not moved again."""
    written = [WrittenFile.from_json(line)
               for path in _list(_join(staging, WRITTEN_DIR, "*.jsonl"))
               for line in _iter_lines(path)]
    written.sort(key=lambda w: w.path)
    placed = _sizes(_join(output, "part-*.parquet"))
    sources, destinations, entries = [], [], []
    for n, w in enumerate(written):
        name = f"part-{n:05d}.parquet"
        if placed.get(name) != w.bytes:
            sources.append(_join(staging, w.path))
            destinations.append(_join(output, name))
        entries.append(ShardEntry(name, w.rows, w.bytes, w.sha256))
    if sources:
        try:
            FileSystems.rename(sources, destinations)
        except BeamIOError as exc:
            raise UnaccountedError(f"{staging}: files named by the writers' manifests could not "
                                   f"be moved into place (a bug; please report it): {exc}") \
                from exc
    return entries


def _move_notes(output: str, staging: str, stage: str) -> None:
    """The stage's one dead-letter file and its skip manifest go to ``_dead_letter/{stage}/``
    and ``_skipped/{stage}/`` (renamed, not read)."""
    for kind, folder in ((DEAD_NOTES, DEAD_LETTER_DIR), (SKIP_NOTES, SKIPPED_DIR)):
        src = _join(staging, kind, "all.jsonl")
        if _exists(src):
            dest = _join(output, folder, stage, "part-00000.jsonl")
            if "://" not in dest:     # object stores need no folder
                os.makedirs(os.path.dirname(dest), exist_ok=True)
            FileSystems.rename([src], [dest])


def write_finished(staging: str, stage: str, tallies: Tallies, counts: Mapping[str, Any],
                   cfg: Any) -> None:
    """Record that the job of ``staging`` finished, with what the commit needs (the pipeline's
    counters are gone once the launcher is): a rerun commits such a staging folder."""
    _write_text(_join(staging, FINISHED_FILE), json.dumps({
        "stage": stage, "tallies": dict(tallies.counters), "counts": dict(counts),
        "config": _config_dict(cfg),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        sort_keys=True, default=str))


def _config_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(to_dict(cfg), default=str)) if cfg is not None else {}


def finished_staging(output: str) -> tuple[str, dict[str, Any]] | None:
    """The staging folder of an earlier run whose job finished but was not committed, and its
    :data:`FINISHED_FILE`; ``None`` when there is none."""
    for path in reversed(_list(_join(output, STAGING_DIR, "*", FINISHED_FILE))):
        try:
            marker = json.loads(_read_text(path))
        except ValueError:        # a torn write: not finished
            continue
        return path[:-len(FINISHED_FILE)].rstrip("/"), marker
    return None


def commit(stage: str, record: str, output: str, staging: str, cfg: Any,
           counts: dict[str, Any] | None = None, max_error_rate: float = 1.0,
           inputs_count: int | None = None, tallies: Tallies | None = None) -> ShardIndex:
    """Move staged files into place and write ``_index.json`` last, reading only what the
    workers wrote about their output (never the output itself).

    Parts: rows, sizes and sha256 come from the writers' manifests (``{staging}/written/``).
    Dead letters and skip notes: one file each, renamed to ``_dead_letter/{stage}/`` and
    ``_skipped/{stage}/``; their counts per type / reason and a bounded sample come from the
    workers' summaries (``{staging}/notes/``) and must equal the pipeline's counters
    (``tallies``; without them the summaries are the counts). A commit interrupted half-way is
    resumed by the next run (files already moved are found in place).

    When more than ``max_error_rate`` of the inputs were dead-lettered, or when the counts
    leave inputs ``unaccounted`` (neither written, skipped nor dead-lettered), the set is not
    marked complete: the index goes to ``_index.rejected.json`` (parts and dead letters stay for
    inspection), so a rerun redoes the stage instead of reporting it done.
    """
    entries = _move_parts(output, staging)
    total = sum(e.rows for e in entries)
    dead, skips = read_note_summary(staging, DEAD_NOTES), read_note_summary(staging, SKIP_NOTES)
    _move_notes(output, staging, stage)
    if tallies is None:
        tallies = Tallies({**{DEAD_PREFIX + k: v for k, v in dead.counts.items()},
                           **{SKIP_PREFIX + k: v for k, v in skips.counts.items()},
                           WRITER_ROWS: total})
    dead_counts, skip_counts = tallies.dead_letters, tallies.skipped
    for what, counted, summed in (("dead letters", dead_counts, dead.counts),
                                  ("skip notes", skip_counts, skips.counts),
                                  ("rows", {"": tallies.get(WRITER_ROWS)}, {"": total})):
        if {k: v for k, v in counted.items() if v} != {k: v for k, v in summed.items() if v}:
            raise UnaccountedError(
                f"[{stage}] the pipeline counted {what} {counted} but its writers wrote "
                f"{summed} under {staging}/ (a bug; please report it)")

    index = ShardIndex(
        schema_version=SCHEMA_VERSION, record=record, stage=stage, shards=tuple(entries),
        total_rows=total, dead_letters=dict(sorted(dead_counts.items())),
        skipped=dict(sorted(skip_counts.items())), counts=counts or {},
        config=to_dict(cfg) if cfg is not None else {},
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        dead_letter_samples={k: [json.loads(x) for x in v] for k, v in dead.samples.items()},
        skipped_samples=skips.samples)
    n_dead = sum(dead_counts.values())
    n_in = inputs_count if inputs_count is not None else index.counts.get("inputs")
    unaccounted = int(index.counts.get("unaccounted", 0) or 0)
    if n_in and n_dead / n_in > max_error_rate:
        _write_text(_join(output, REJECTED_INDEX_FILE), index.to_json())
        _remove_staging(output, staging)
        raise ErrorRateExceeded(error_rate_message(stage, output, n_dead, n_in, max_error_rate,
                                                   dead_counts))
    if unaccounted:
        _write_text(_join(output, REJECTED_INDEX_FILE), index.to_json())
        _remove_staging(output, staging)
        raise UnaccountedError(
            f"[{stage}] {unaccounted} input(s) were neither written, skipped nor dead-lettered "
            f"(counts: {json.dumps(index.counts, sort_keys=True)}); the output is NOT marked "
            "complete (a bug; please report it)")
    _write_text(_join(output, INDEX_FILE), index.to_json())
    _remove_staging(output, staging)
    return index


def _remove_staging(output: str, staging: str) -> None:
    """Delete a committed staging folder: the finished marker first (a half-deleted folder is
    never taken for a finished job), then the plan, retried bundles' files, manifests, notes."""
    marker = _join(staging, FINISHED_FILE)
    if _exists(marker):
        FileSystems.delete([marker])
    leftovers = _list(_join(staging, "**"))
    if leftovers:
        FileSystems.delete(leftovers)
    _remove_empty_local_dirs(_join(output, STAGING_DIR))


def percent(part: int, whole: int) -> str:
    """``part / whole`` with one decimal (``99.5%``); never rounds a partial share to ``0.0%``
    or ``100.0%`` (``<0.1%``, ``>99.9%``)."""
    if whole <= 0:
        return "n/a"
    text = f"{100.0 * part / whole:.1f}%"
    if 0 < part < whole and text == "100.0%":
        return ">99.9%"
    if 0 < part and text == "0.0%":
        return "<0.1%"
    return text


def error_rate_message(stage: str, output: str, dead: int, inputs: int, max_error_rate: float,
                       dead_counts: Mapping[str, int]) -> str:
    """What went wrong when too many inputs failed, and what to do about it."""
    by_type = ", ".join(f"{et}={n}" for et, n in sorted(dead_counts.items(),
                                                       key=lambda kv: (-kv[1], kv[0])))
    return (f"[{stage}] {dead} of {inputs} inputs failed ({percent(dead, inputs)}), above "
            f"--max-error-rate {max_error_rate:g} ({100 * max_error_rate:.1f}%); "
            f"the output is NOT marked complete. Dead letters by type: {by_type}; see "
            f"{output}/{DEAD_LETTER_DIR}/{stage}/ and {output}/{REJECTED_INDEX_FILE}, or run "
            f"`llark inspect {output}`. If these failures are expected (a partial download: "
            f"MusicCaps videos disappear from YouTube), rerun with --max-error-rate 1 to commit "
            f"what the other {inputs - dead} input(s) gave")


class ErrorRateExceeded(LlarkError):
    """Too many inputs of a stage were dead-lettered; the output is left incomplete."""


class UnaccountedError(LlarkError):
    """Some inputs of a stage were neither written, skipped nor dead-lettered."""


def run_stage(stage: str, record: str, output: str, cfg: Any, beam_args: list[str],
              build: Callable[[beam.Pipeline, str],
                              dict[str, Any] | Callable[[], dict[str, Any]] | TallyCounts
                              | None],
              force: bool = False, max_error_rate: float = 1.0,
              inputs_count: int | None = None,
              after_job: Callable[[str], None] | None = None, model_copies: int = 0,
              job_file: str = "") -> StageResult:
    """Run ``build`` as one transaction into ``output``; print a summary; check the error rate.

    ``build(pipeline, staging)`` wires the pipeline and may return stage counts for the index:
    a dict, a :class:`TallyCounts` (called with the pipeline's counters), or a no-argument
    callable called after the pipeline has finished and before the commit.

    ``after_job(staging)``, when given, is called once the job has finished and its
    :data:`FINISHED_FILE` is written, just before the commit: the point from which a launcher
    that stops loses nothing (the tests stop the process there).

    With ``--dry_run`` (Beam's TestOptions; DataflowRunner only) the job is built, its size is
    printed and nothing is written: ``build`` stages what it must (e.g. the task plan) in a local
    temporary folder that is removed afterwards, and the output is never touched.

    On Dataflow a run without a worker image is refused (:func:`check_dataflow_workers`), the
    dry run prints the stage's workers (``model_copies``: the model copies per VM the stage
    loads, 0 for none shared), and once the job is submitted its id is printed as a
    ``[stage] dataflow job: {json}`` line and written to ``job_file`` (when given) for an
    orchestrator to cancel it (:class:`pipelines.dataflow.JobRef`).
    """
    output = output.rstrip("/")
    options = pipeline_options(beam_args)
    FileSystems.set_options(options)      # s3:// in the launcher: --s3_endpoint_url etc.
    workers = worker_settings(options, model_copies)
    if is_dataflow(options):
        check_dataflow_workers(stage, workers)
    dry_run = bool(options.view_as(TestOptions).dry_run)
    if dry_run:
        return _dry_run(stage, output, options, build, workers)
    existing = read_complete_index(output)
    if existing is not None and not force:
        print(f"[{stage}] {output} is complete ({existing.total_rows} rows); nothing to do "
              "(use --force to redo)", file=sys.stderr)
        leftovers = _list(_join(output, STAGING_DIR, "**"))   # a commit stopped after its index
        if leftovers:
            FileSystems.delete(leftovers)
            _remove_empty_local_dirs(_join(output, STAGING_DIR))
        return StageResult(existing, output, True)
    if existing is not None:
        # --force: the index goes first, so a run killed mid-way never leaves an index that
        # names parts already deleted
        FileSystems.delete([_join(output, INDEX_FILE)])
    elif not force:
        resumed = _commit_finished(stage, record, output, cfg, max_error_rate, inputs_count)
        if resumed is not None:
            return resumed
    rejected = _exists(_join(output, REJECTED_INDEX_FILE))
    removed = clean_incomplete(output)
    if existing is not None:
        print(f"[{stage}] --force: removed the complete output of an earlier run "
              f"({existing.total_rows} rows; {removed + 1} files with its {INDEX_FILE})",
              file=sys.stderr)
    elif removed:
        what = (f"whose output was rejected ({REJECTED_INDEX_FILE})" if rejected
                else "that did not finish")
        print(f"[{stage}] removed {removed} files of an earlier run {what}", file=sys.stderr)
    staging = _join(output, STAGING_DIR, uuid.uuid4().hex[:12])
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    pipeline = beam.Pipeline(options=options)
    counts = _build(pipeline, staging, build)
    run = pipeline.run()
    report_job(stage, run, options, job_file)
    wait_until_finished(stage, run, options)
    tallies = pipeline_tallies(run)
    if isinstance(counts, TallyCounts):
        counts = counts(tallies)
    elif callable(counts):
        # Counts that need the finished run, read from what was staged.
        counts = counts()
    # From here on the job's work survives this process: a rerun commits it (see commit)
    write_finished(staging, stage, tallies, counts or {}, cfg)
    if after_job is not None:
        after_job(staging)
    index = commit(stage, record, output, staging, cfg, counts, max_error_rate, inputs_count,
                   tallies)
    result = StageResult(index, output, False)
    print_summary(stage, result)
    return result


def _build(pipeline: beam.Pipeline, staging: str, build: Callable) -> Any:
    """``build(pipeline, staging)``, then the stage's dead letters and skip notes, gathered
    from every step, written once (:func:`_write_notes`)."""
    _NOTE_SINKS[staging] = {DEAD_NOTES: [], SKIP_NOTES: []}
    try:
        counts = build(pipeline, staging)
        _write_notes(pipeline, staging, _NOTE_SINKS[staging])
    finally:
        _NOTE_SINKS.pop(staging, None)
    return counts


def _commit_finished(stage: str, record: str, output: str, cfg: Any, max_error_rate: float,
                     inputs_count: int | None) -> StageResult | None:
    """Commit the staging of an earlier run whose job finished but whose launcher stopped
    before (or while) committing it; ``None`` when there is none to commit (or it was made
    with another config, and is redone)."""
    found = finished_staging(output)
    if found is None:
        return None
    if _exists(_join(output, REJECTED_INDEX_FILE)):
        # its commit already refused it (and stopped before removing the staging): redo it
        return None
    staging, marker = found
    if marker.get("stage") != stage or marker.get("config") != _config_dict(cfg):
        print(f"[{stage}] the finished but uncommitted job in {staging} ran with another "
              "config; redoing it", file=sys.stderr)
        return None
    print(f"[{stage}] the job in {staging} finished at {marker.get('finished_at')} but was "
          "not committed (the launcher stopped); committing it instead of redoing it",
          file=sys.stderr)
    index = commit(stage, record, output, staging, cfg, marker.get("counts") or {},
                   max_error_rate, inputs_count, Tallies(marker.get("tallies") or {}))
    result = StageResult(index, output, False)
    print_summary(stage, result)
    return result


def report_job(stage: str, result: Any, options: PipelineOptions, job_file: str) -> None:
    """Print the submitted Dataflow job (one parseable line) and write it to ``job_file``;
    nothing for other runners."""
    ref = job_ref(result, options)
    if ref is None:
        return
    if job_file:
        write_job_file(job_file, ref)
    print(f"[{stage}] {JOB_LINE_PREFIX}{ref.to_json()}", file=sys.stderr, flush=True)


def _dry_run(stage: str, output: str, options: PipelineOptions, build: Callable,
             workers: WorkerSettings) -> StageResult:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if runner not in ("DataflowRunner", "dataflow"):
        raise ConfigError(f"--dry_run builds a Dataflow job without submitting it; it needs "
                          f"--runner DataflowRunner (got {runner})")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    staging = tempfile.mkdtemp(prefix=f"llark-{stage}-dry-run-")
    try:
        pipeline = beam.Pipeline(options=options)
        _build(pipeline, staging, build)
        run = pipeline.run()
        proto = run.job.proto_pipeline
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    dry = DryRun(runner, len(proto.components.transforms), proto.ByteSize())
    print(f"[{stage}] dry run ({runner}): {dry.transforms} transforms, pipeline proto "
          f"{dry.proto_bytes} bytes; job not submitted, nothing written to {output}",
          file=sys.stderr)
    print(f"[{stage}] workers: {workers.describe()}", file=sys.stderr)
    return StageResult(None, output, False, dry)


def print_summary(stage: str, result: StageResult) -> None:
    idx = result.index
    if idx is None:
        return
    lines = [f"[{stage}] wrote {idx.total_rows} {idx.record} rows in {len(idx.shards)} "
             f"shard(s) to {result.output}"]
    for key, value in sorted(idx.counts.items()):
        lines.append(f"  {key}: {value}")
    for reason, n in idx.skipped.items():
        lines.append(f"  skipped ({reason}): {n}")
    for et, n in idx.dead_letters.items():
        lines.append(f"  dead letters ({et}): {n}")
    if idx.dead_letters:
        lines.append(f"  dead letters in {result.output}/{DEAD_LETTER_DIR}/{stage}/")
    print("\n".join(lines), file=sys.stderr)


# --------------------------------------------------------------------------- reading inputs

def read_input_rows(pipeline: beam.Pipeline, input_dir: str, record: str,
                    label: str = "ReadInput") -> beam.PCollection:
    """Rows (dicts) of one or more complete shard sets (``input_dir`` may list several folders
    separated by commas, e.g. one per dataset). Refuses sets without an index, of another
    schema version or of another record type, in the driver, before any worker starts."""
    folders = [d.strip().rstrip("/") for d in input_dir.split(",") if d.strip()]
    if not folders:
        raise LlarkError("no input folder given")
    patterns = []
    for folder in folders:
        index = read_complete_index(folder)
        if index is None:
            raise LlarkError(f"{folder}: no {INDEX_FILE}; run the stage that produces it first")
        if index.schema_version != SCHEMA_VERSION:
            raise LlarkError(f"{folder}: schema version {index.schema_version}, this code reads "
                             f"{SCHEMA_VERSION}; rebuild it with this version")
        if index.record != record:
            raise LlarkError(f"{folder}: holds {index.record!r} records, expected {record!r}")
        if index.shards:
            patterns.append(_join(folder, "part-*.parquet"))
    if not patterns:
        return pipeline | label >> beam.Create([])
    reads = [pipeline | f"{label}:{n}" >> beam.io.ReadFromParquet(pat)
             for n, pat in enumerate(patterns)]
    return reads[0] if len(reads) == 1 else tuple(reads) | f"{label}:Flatten" >> beam.Flatten()


def count_input_rows(input_dir: str) -> int:
    """Total rows of the (comma-separated) input sets, from their indexes."""
    total = 0
    for folder in (d.strip().rstrip("/") for d in input_dir.split(",") if d.strip()):
        index = read_complete_index(folder)
        total += index.total_rows if index is not None else 0
    return total


# --------------------------------------------------------------------------- command line

@dataclass(frozen=True)
class StageArgs:
    """What every stage command takes besides its own config."""

    force: bool
    max_error_rate: float
    beam_args: list[str]
    job_file: str = ""
    """Where to write the submitted runner job (``--job-file``; ``""``: nowhere)."""


def parse_stage_args(cls: type, argv: list[str] | None, prog: str, description: str
                     ) -> tuple[Any, StageArgs]:
    """Flags of ``cls`` (a config dataclass) + ``--config YAML``, ``--force``,
    ``--max-error-rate``; the other flags go to Beam's ``PipelineOptions``.

    A flag that neither llark nor any of Beam's option classes knows is an error naming the
    nearest real flag (Beam itself would drop it with a warning).
    """
    import argparse

    from llark.config import add_arguments, from_args

    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False,
                                     epilog="Other flags go to Beam (e.g. --runner DataflowRunner "
                                            "--project P --region R --temp_location gs://...; "
                                            "--dry_run builds the Dataflow job and only prints "
                                            "its size).")
    parser.add_argument("--config", help="YAML file with config keys (flags override it)")
    parser.add_argument("--force", action="store_true", help="redo even if the output is complete")
    parser.add_argument("--max-error-rate", type=float, default=0.5,
                        help="fail the run when more than this fraction of inputs dead-letter "
                             "(default: %(default)s)")
    parser.add_argument("--job-file", default="",
                        help="write the submitted Dataflow job (JSON: job_id, project, region, "
                             "endpoint) to this local file, for an orchestrator that cancels "
                             "it when its task is killed")
    add_arguments(parser, cls)
    ns, beam_args = parser.parse_known_args(argv)
    beam_args = _bare_dry_run(beam_args)
    try:
        rest = beam_leftovers(beam_args)
    except argparse.ArgumentError as exc:
        parser.error(f"Beam option: {exc}")
    unknown = [a.split("=", 1)[0] for a in rest if a.startswith("--") and a != "--"]
    if unknown:
        ours = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
        hints = [f"{flag} (did you mean {nearest_flag(flag, ours + sorted(beam_flag_names()))}?)"
                 for flag in unknown]
        parser.error("unknown option(s), neither llark's nor Beam's: " + "; ".join(hints))
    if rest:
        # a word no flag takes: Beam would drop it with a warning, and the run would go on
        # without what the user meant (a typo'd value, a single-dash flag, a path)
        bad = rest[0]
        why = ("single-dash arguments are not flags here (llark's and Beam's flags start "
               "with --)" if bad.startswith("-") and bad != "-" else
               f"{prog} takes no positional arguments (is a flag missing before it?)")
        parser.error(f"unexpected argument {bad!r}: {why}")
    cfg = from_args(cls, ns, ns.config)
    # The launcher's own file access (input indexes, task plans, the commit) goes through Beam's
    # FileSystems before any pipeline exists; s3:// needs the options there (endpoint, keys).
    FileSystems.set_options(pipeline_options(beam_args))
    return cfg, StageArgs(ns.force, ns.max_error_rate, beam_args, ns.job_file)


def _bare_dry_run(args: list[str]) -> list[str]:
    """``--dry_run`` alone means ``--dry_run=True`` (Beam's flag otherwise wants a value)."""
    out = []
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else "--"
        out.append("--dry_run=True" if a == "--dry_run" and nxt.startswith("--") else a)
    return out


def _beam_parser() -> Any:
    """The parser Beam itself builds from every registered options class (no abbreviations),
    handed over by ``PipelineOptions.get_all_options``' public ``add_extra_args_fn`` hook."""
    parsers: list[Any] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    parser = parsers[0]
    parser.exit_on_error = False          # a bad value raises ArgumentError; we name it
    return parser


def beam_flag_names() -> set[str]:
    """Every Beam option as ``--name`` (the public option names of ``get_all_options``)."""
    return {f"--{name}" for name in PipelineOptions([]).get_all_options()}


def beam_leftovers(beam_args: list[str]) -> list[str]:
    """What of ``beam_args`` no Beam option takes: unknown ``--flags`` (and their values),
    single-dash words, stray positionals; parsed exactly as the pipeline will parse them."""
    _known, rest = _beam_parser().parse_known_args(beam_args)
    return rest


def unknown_beam_flags(beam_args: list[str]) -> list[str]:
    """The ``--flags`` of ``beam_args`` that no Beam options class knows."""
    return [a.split("=", 1)[0] for a in beam_leftovers(beam_args) if a.startswith("--")]


def nearest_flag(flag: str, candidates: list[str]) -> str:
    """The candidate closest to ``flag``, comparing with ``-`` and ``_`` alike."""
    import difflib

    def norm(s: str) -> str:
        return s.lstrip("-").replace("-", "_")

    by_norm = {norm(c): c for c in reversed(candidates)}
    best = difflib.get_close_matches(norm(flag), list(by_norm), n=1, cutoff=0.0)
    return by_norm[best[0]] if best else candidates[0]
