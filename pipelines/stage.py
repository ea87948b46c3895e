"""What every Beam stage shares: options, dead letters, and the commit that makes a stage a
transaction.

A stage writes its records, dead letters and skip notes under ``{output}/_staging/{run_id}/``.
When the pipeline has finished, :func:`commit` moves the Parquet files to
``{output}/part-NNNNN.parquet`` and the dead letters to ``{output}/_dead_letter/{stage}/``,
counts everything, and writes ``_index.json`` last. A folder with an index is complete and a
rerun does nothing; a folder without one is cleaned and redone, so an interrupted run never
leaves duplicates. All file access goes through Beam's ``FileSystems`` so ``gs://`` outputs work
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
import datetime as dt
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
    DeadLetter,
    ShardEntry,
    ShardIndex,
    Skipped,
    sha256_stream,
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
    """Dead letters (JSON lines) → ``{staging}/dead/{label}-*.jsonl``, counted by type on the
    way (``counted``: already counted where they were made, by :class:`ToDeadLetterFn`)."""
    name = label.replace(" ", "_").replace(":", "-")
    if not counted:
        lines = lines | f"{label}:Count" >> beam.ParDo(CountDeadFn())
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
    (results[SKIP_TAG] | f"{label}:CountSkipped" >> beam.ParDo(CountSkippedFn())
     | f"{label}:WriteSkipped" >> beam.io.WriteToText(
        f"{staging}/skipped/{label.replace(' ', '_')}", file_name_suffix=".jsonl",
        skip_if_empty=True))
    return results["main"]


def write_records(pcoll: beam.PCollection, schema: Any, staging: str,
                  label: str = "WriteRecords", row_group_mb: int = 64) -> None:
    """Records (objects with ``to_row``) → Parquet under the staging prefix."""
    (pcoll | f"{label}:ToRow" >> beam.Map(_to_row)
     | label >> beam.io.WriteToParquet(f"{staging}/data/part", schema,
                                       file_name_suffix=".parquet",
                                       row_group_buffer_size=row_group_mb << 20,
                                       record_batch_size=64))


def _to_row(record: Any) -> dict:
    return record.to_row()


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


def _sha256(path: str) -> tuple[str, int]:
    with FileSystems.open(path) as f:
        return sha256_stream(f)


def _parquet_rows(path: str) -> int:
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


def read_complete_index(output: str) -> ShardIndex | None:
    path = _join(output, INDEX_FILE)
    if not _exists(path):
        return None
    return ShardIndex.from_json(_read_text(path))


def clean_incomplete(output: str) -> int:
    """Remove what an interrupted run left (parts, dead letters, staging). Returns files removed."""
    doomed = (_list(_join(output, "part-*.parquet")) + _list(_join(output, STAGING_DIR, "**"))
              + _list(_join(output, DEAD_LETTER_DIR, "**"))
              + _list(_join(output, REJECTED_INDEX_FILE)))
    if doomed:
        FileSystems.delete(doomed)
    for folder in (_join(output, STAGING_DIR), _join(output, DEAD_LETTER_DIR)):
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


def commit(stage: str, record: str, output: str, staging: str, cfg: Any,
           counts: dict[str, Any] | None = None, max_error_rate: float = 1.0,
           inputs_count: int | None = None, tallies: Tallies | None = None) -> ShardIndex:
    """Move staged files into place, count them, write ``_index.json`` last.

    Dead letters and skips are counted by the pipeline (``tallies``); the staged dead-letter
    files are gathered into ``_dead_letter/{stage}/`` and must hold exactly as many lines as
    were counted. Without ``tallies`` (a pipeline run elsewhere) the files are counted here.

    When more than ``max_error_rate`` of the inputs were dead-lettered, or when the counts
    leave inputs ``unaccounted`` (neither written, skipped nor dead-lettered), the set is not
    marked complete: the index goes to ``_index.rejected.json`` (parts and dead letters stay for
    inspection), so a rerun redoes the stage instead of reporting it done.
    """
    staged = [p for p in _list(_join(staging, "data", "part*")) if p.endswith(".parquet")]
    entries = []
    total = 0
    sources, destinations = [], []
    for n, path in enumerate(staged):
        dest = _join(output, f"part-{n:05d}.parquet")
        sources.append(path)
        destinations.append(dest)
    if sources:
        FileSystems.rename(sources, destinations)
    for dest in destinations:
        rows = _parquet_rows(dest)
        digest, size = _sha256(dest)
        entries.append(ShardEntry(dest.rsplit("/", 1)[-1], rows, size, digest))
        total += rows

    dead_lines = [line for path in _list(_join(staging, "dead", "*"))
                  for line in _read_text(path).splitlines() if line.strip()]
    if dead_lines:
        _write_text(_join(output, DEAD_LETTER_DIR, stage, "part-00000.jsonl"),
                    "\n".join(sorted(dead_lines)) + "\n")
    if tallies is None:
        tallies = _count_staged_notes(staging, dead_lines)
    dead_counts, skip_counts = tallies.dead_letters, tallies.skipped
    if len(dead_lines) != sum(dead_counts.values()):
        raise UnaccountedError(
            f"[{stage}] the pipeline counted {sum(dead_counts.values())} dead letters but "
            f"{len(dead_lines)} were written under {staging}/dead/ (a bug; please report it)")

    index = ShardIndex(
        schema_version=SCHEMA_VERSION, record=record, stage=stage, shards=tuple(entries),
        total_rows=total, dead_letters=dict(sorted(dead_counts.items())),
        skipped=dict(sorted(skip_counts.items())), counts=counts or {},
        config=to_dict(cfg) if cfg is not None else {},
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    leftovers = _list(_join(staging, "**"))
    if leftovers:
        FileSystems.delete(leftovers)
    _remove_empty_local_dirs(_join(output, STAGING_DIR))
    dead = sum(dead_counts.values())
    n_in = inputs_count if inputs_count is not None else index.counts.get("inputs")
    if n_in and dead / n_in > max_error_rate:
        _write_text(_join(output, REJECTED_INDEX_FILE), index.to_json())
        raise ErrorRateExceeded(error_rate_message(stage, output, dead, n_in, max_error_rate,
                                                   dead_counts))
    unaccounted = int(index.counts.get("unaccounted", 0) or 0)
    if unaccounted:
        _write_text(_join(output, REJECTED_INDEX_FILE), index.to_json())
        raise UnaccountedError(
            f"[{stage}] {unaccounted} input(s) were neither written, skipped nor dead-lettered "
            f"(counts: {json.dumps(index.counts, sort_keys=True)}); the output is NOT marked "
            "complete (a bug; please report it)")
    _write_text(_join(output, INDEX_FILE), index.to_json())
    return index


def _count_staged_notes(staging: str, dead_lines: list[str]) -> Tallies:
    """Tallies from the staged files, for a commit without the pipeline's counters."""
    sums: dict[str, int] = {}
    for line in dead_lines:
        name = DEAD_PREFIX + json.loads(line)["error_type"]
        sums[name] = sums.get(name, 0) + 1
    for path in _list(_join(staging, "skipped", "*")):
        for line in _read_text(path).splitlines():
            if line.strip():
                name = SKIP_PREFIX + json.loads(line)["reason"]
                sums[name] = sums.get(name, 0) + 1
    return Tallies(sums)


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
              inputs_count: int | None = None, model_copies: int = 0,
              job_file: str = "") -> StageResult:
    """Run ``build`` as one transaction into ``output``; print a summary; check the error rate.

    ``build(pipeline, staging)`` wires the pipeline and may return stage counts for the index:
    a dict, a :class:`TallyCounts` (called with the pipeline's counters), or a no-argument
    callable called after the pipeline has finished and before the commit.

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
        return StageResult(existing, output, True)
    if existing is not None:
        # --force: the index goes first, so a run killed mid-way never leaves an index that
        # names parts already deleted
        FileSystems.delete([_join(output, INDEX_FILE)])
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
    counts = build(pipeline, staging)
    run = pipeline.run()
    report_job(stage, run, options, job_file)
    wait_until_finished(stage, run, options)
    tallies = pipeline_tallies(run)
    if isinstance(counts, TallyCounts):
        counts = counts(tallies)
    elif callable(counts):
        # Counts that need the finished run, read from what was staged.
        counts = counts()
    index = commit(stage, record, output, staging, cfg, counts, max_error_rate, inputs_count,
                   tallies)
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
        build(pipeline, staging)
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
