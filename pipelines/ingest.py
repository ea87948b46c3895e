"""Ingest: a dataset as downloaded → clip records (Parquet + ``_index.json``) and dead letters.

    llark ingest --dataset NAME --data-dir DIR --output DIR [--audio-dir DIR]
                 [--clip-seconds S] [--min-clip-seconds S] [--subset ...]
                 [--filename-template ...] [Beam flags]
    python -m pipelines.ingest ...   (the same)

The driver reads the dataset's metadata files (through Beam's ``FileSystems``, so ``gs://`` data
directories work) into one :class:`~pipelines.datasets.common.TrackTask` per audio file, or a
:class:`~pipelines.datasets.common.BadRow` for a row it cannot use, and writes them as a task
plan next to the staged output (:mod:`pipelines.plan`): the workers read the plan, so the job
graph stays the same size whatever the dataset's. :class:`IngestTrackFn` opens each file once
(:func:`pipelines.sources.open_audio`: a local path directly, anything else as bytes), cuts
the track into windows with
:func:`llark.windows.clip_windows`, decodes and resamples every window (which validates the
whole file), measures its loudness and yields one :class:`~pipelines.schema.Clip` per window.

Every input is accounted for: its clips are written, or one dead letter names it (malformed
row, missing / empty / corrupt / truncated / too-short audio). A tail shorter than
``--min-clip-seconds`` is dropped and counted as skipped (``tail_too_short``). The index counts
``inputs`` (metadata rows, plus audio files without a row for ``folder``), ``tracks_ok``,
``clips``, ``dead_letters`` and the clips and tracks per split, all counted by the pipeline
(Beam metrics, :func:`pipelines.stage.tally`); inputs = tracks_ok + dead_letters, and the run
fails when they differ.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, replace
from typing import Any, Iterable

import apache_beam as beam
import numpy as np

from llark.audio import END_TOLERANCE_S, AudioSource, load_audio, probe_audio
from llark.config import doc
from llark.errors import (
    AudioNotFoundError,
    AudioTooShortError,
    ConfigError,
    LlarkError,
    TruncatedAudioError,
)
from llark.windows import DEFAULT_CLIP_SECONDS, DEFAULT_MIN_CLIP_SECONDS, clip_windows
from pipelines.datasets import READERS, read_tasks
from pipelines.datasets.common import (
    BadRow,
    ReaderOptions,
    SkippedFile,
    TrackTask,
    exists,
    read_text,
)
from pipelines.datasets.musicnet import parse_labels, window_notes
from pipelines.schema import CLIP_SCHEMA, Clip, NoteEvent, clip_id
from pipelines.plan import PlanSummary, read_plan, write_plan
from pipelines.sources import open_audio
from pipelines.stage import (
    DEAD_PREFIX,
    DEAD_TAG,
    SKIP_TAG,
    Tallies,
    TallyCounts,
    dead_letter_json,
    parse_stage_args,
    run_stage,
    skipped_json,
    tally,
    with_dead_letters,
    write_records,
)

log = logging.getLogger("llark.ingest")

STAGE = "ingest"
#: A file at most this much longer than a MusicCaps row's window is taken to be the pre-cut
#: clip (used whole) rather than a full-length video that ends early.
PRECUT_SLACK_S = 1.0
#: Loudness floor: digital silence reads as this instead of -inf.
SILENCE_DBFS = -120.0


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class IngestConfig:
    """Configuration of ``llark ingest`` (flags, or keys of a ``--config`` YAML file)."""

    dataset: str = doc("dataset layout to read: musiccaps, magnatagatune, fma, musicnet or folder",
                       default="")
    data_dir: str = doc("the dataset as downloaded (local folder or a Beam filesystem URI, e.g. "
                        "gs://bucket/musiccaps)", default="")
    output: str = doc("folder for the clip records: part-*.parquet, _index.json, _dead_letter/",
                      default="")
    audio_dir: str = doc("where the audio is, when not at the dataset's default place "
                         "(MusicCaps: <data-dir>/audio; FMA: <data-dir>/fma_<subset>; "
                         "MusicNet: the folder holding {train,test}_{data,labels}; "
                         "MagnaTagATune and folder: <data-dir>)", default="")
    metadata: str = doc("the metadata file, when not at the dataset's default place "
                        "(musiccaps-public.csv, annotations_final.csv, fma_metadata/tracks.csv, "
                        "musicnet_metadata.csv, metadata.csv/.jsonl)", default="")
    subset: str = doc("FMA subset: small, medium, large or full (default: the one fma_<subset> "
                      "folder in the data directory)", default="")
    filename_template: str = doc("MusicCaps audio file names under --audio-dir, with {ytid}, "
                                 "{start_s}, {end_s}, {ext} ({ext} tries wav, flac, mp3, ogg, "
                                 "m4a, opus, webm in turn)", default="{ytid}.{ext}")
    clip_seconds: float = doc("window length in seconds (default: the Jukebox context, so the "
                              "encoder sees every sample of a clip)", default=DEFAULT_CLIP_SECONDS)
    min_clip_seconds: float = doc("a last, shorter window is kept when at least this long, else "
                                  "dropped and counted as tail_too_short",
                                  default=DEFAULT_MIN_CLIP_SECONDS)
    sample_rate_hz: int = doc("rate every window is decoded and resampled at, to check it and "
                              "measure its loudness (44100: what the annotators and Jukebox read)",
                              default=44100)
    mtt_split: str = doc("MagnaTagATune folder split: 12-1-3 (0-b train, c validation, d-f test: "
                         "the split most published results use) or 11-2-3 (0-a / b,c / d-f)",
                         default="12-1-3")
    length_tolerance_s: float = doc("a file may decode this much shorter than its metadata says "
                                    "(MusicNet seconds, FMA track/duration, a pre-cut MusicCaps "
                                    "clip) before it counts as truncated", default=1.0)
    keep_shorter_than_metadata: bool = doc("keep a file shorter than its metadata says (counted "
                                           "as skipped shorter_than_metadata) instead of "
                                           "dead-lettering it as TruncatedAudioError",
                                           default=False)

    def __post_init__(self) -> None:
        if self.dataset not in READERS:
            raise ConfigError(f"--dataset {self.dataset!r}: choose one of {sorted(READERS)}")
        if not self.data_dir:
            raise ConfigError("--data-dir is required")
        if not self.output:
            raise ConfigError("--output is required")
        if not (0 < self.min_clip_seconds <= self.clip_seconds < math.inf):
            raise ConfigError(f"need 0 < --min-clip-seconds ({self.min_clip_seconds}) <= "
                              f"--clip-seconds ({self.clip_seconds})")
        if not 1000 <= self.sample_rate_hz <= 384000:
            raise ConfigError(f"--sample-rate-hz {self.sample_rate_hz} is outside 1000..384000")
        if self.subset not in ("", "small", "medium", "large", "full"):
            raise ConfigError(f"--subset {self.subset!r}: choose small, medium, large or full")
        if self.dataset == "musiccaps":
            from pipelines.datasets.musiccaps import check_template

            check_template(self.filename_template)
        from pipelines.datasets.magnatagatune import check_split_scheme

        check_split_scheme(self.mtt_split)
        if not 0 <= self.length_tolerance_s < math.inf:
            raise ConfigError(f"--length-tolerance-s {self.length_tolerance_s} must be >= 0")

    def reader_options(self) -> ReaderOptions:
        return ReaderOptions(audio_dir=self.audio_dir, metadata=self.metadata,
                             subset=self.subset, filename_template=self.filename_template,
                             mtt_split=self.mtt_split)

    def window_params(self) -> "WindowParams":
        return WindowParams(self.clip_seconds, self.min_clip_seconds, self.sample_rate_hz,
                            self.length_tolerance_s, self.keep_shorter_than_metadata)


@dataclass(frozen=True)
class WindowParams:
    """What the per-track work needs of the config (small; shipped to every worker)."""

    clip_seconds: float = DEFAULT_CLIP_SECONDS
    min_clip_seconds: float = DEFAULT_MIN_CLIP_SECONDS
    sample_rate_hz: int = 44100
    length_tolerance_s: float = 1.0           # see IngestConfig.length_tolerance_s
    keep_shorter_than_metadata: bool = False  # see IngestConfig.keep_shorter_than_metadata


# --------------------------------------------------------------------------- pure core

@dataclass(frozen=True)
class TrackClips:
    """What one track yields: its clips, the tail window that was too short (if any), the
    span the metadata promises but the file lacks (kept with ``keep_shorter_than_metadata``),
    and the note labels that start at or after the decoded end (never heard in any clip)."""

    clips: tuple[Clip, ...]
    dropped_tail: tuple[float, float] | None = None
    missing_span: tuple[float, float] | None = None
    labels_past_end: tuple[NoteEvent, ...] = ()


def rms_dbfs(audio: np.ndarray) -> float:
    """Loudness of ``audio`` (float, full scale 1.0) in dBFS, floored at ``SILENCE_DBFS``."""
    if audio.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return round(max(20.0 * math.log10(rms) if rms > 0 else SILENCE_DBFS, SILENCE_DBFS), 2)


def track_span(task: TrackTask, duration_s: float, where: str) -> tuple[float, float]:
    """``(offset_s, length_s)`` of the part of the file that is the track.

    The whole file, except for a MusicCaps row: a file reaching ``window_end_s`` is the full
    video and is cut there; a file about as long as the window is the pre-cut clip, used whole.
    """
    if task.window_start_s is None or task.window_end_s is None:
        return 0.0, duration_s
    start, end = task.window_start_s, task.window_end_s
    if duration_s >= end - END_TOLERANCE_S:
        return start, end - start
    if duration_s <= (end - start) + PRECUT_SLACK_S:
        return 0.0, duration_s
    raise TruncatedAudioError(
        f"{where}: {duration_s:.3f}s long, so neither the full video (which reaches the row's "
        f"end_s={end:g}) nor the {end - start:g}s clip cut from it")


def expected_length(task: TrackTask, duration_s: float) -> float | None:
    """How long the metadata says the part of the file ingest uses is, or ``None``.

    MusicCaps: a pre-cut clip (a file not reaching ``end_s``) should hold the whole window;
    a full video reaches ``end_s`` by :func:`track_span`'s rule. Other datasets: the reader's
    ``expected_duration_s``.
    """
    if task.window_start_s is not None and task.window_end_s is not None:
        if duration_s >= task.window_end_s - END_TOLERANCE_S:
            return None
        return task.window_end_s - task.window_start_s
    return task.expected_duration_s


def check_length(task: TrackTask, duration_s: float, audio_uri: str, params: WindowParams
                 ) -> tuple[float, float] | None:
    """``None`` when the file is as long as its metadata says (within
    ``params.length_tolerance_s``); else the missing span ``(decoded end, expected end)`` when
    ``params.keep_shorter_than_metadata``, or :class:`TruncatedAudioError` naming both lengths."""
    expected = expected_length(task, duration_s)
    if expected is None or duration_s >= expected - params.length_tolerance_s:
        return None
    if params.keep_shorter_than_metadata:
        return (math.floor(duration_s * 1000) / 1000, math.floor(expected * 1000) / 1000)
    where = f" ({task.row})" if task.row else ""
    raise TruncatedAudioError(
        f"{audio_uri}: decodes to {duration_s:.3f}s but the metadata{where} says "
        f"{expected:.3f}s (tolerance {params.length_tolerance_s:g}s): a truncated download? "
        "Download it again, or pass --keep-shorter-than-metadata to keep what there is")


def track_clips(task: TrackTask, source: AudioSource, audio_uri: str, params: WindowParams,
                notes: tuple[NoteEvent, ...] | None = None) -> TrackClips:
    """Cut one track into windows, decode + resample each (validating the file), measure it.

    ``source`` is a local path or the file's bytes; ``audio_uri`` is what the clips record.
    ``notes`` (MusicNet) are the track's note events in track time. Raises the typed errors of
    :mod:`llark.audio`, and :class:`AudioTooShortError` when no window is long enough.
    """
    info = probe_audio(source)
    missing = check_length(task, info.duration_s, audio_uri, params)
    offset, length = track_span(task, info.duration_s, audio_uri)
    windows, dropped = clip_windows(length, params.clip_seconds, params.min_clip_seconds, offset)
    if not windows:
        raise AudioTooShortError(
            f"{audio_uri}: {length:.3f}s of audio, shorter than --min-clip-seconds "
            f"{params.min_clip_seconds:g}")
    clips = []
    for start, end in windows:
        audio, _sr = load_audio(source, params.sample_rate_hz, start, end)   # (n,) float32
        if notes is None:
            clip_notes, instruments = (), None
        else:
            clip_notes, instruments = window_notes(notes, start, end)
        clips.append(task.make_clip(audio_uri, start, end, info.sample_rate_hz, info.channels,
                                    round(info.duration_s, 6), rms_dbfs(audio), clip_notes,
                                    instruments))
    tail = None
    if dropped:
        tail = (windows[-1][1], offset + math.floor(length * 1000 + 1e-6) / 1000)
    past_end = tuple(n for n in notes or () if n.start_s >= info.duration_s)
    return TrackClips(tuple(clips), tail, missing, past_end)


# --------------------------------------------------------------------------- Beam glue

def resolve_audio(task: TrackTask) -> str:
    """The first of the task's candidate URIs that exists; :class:`AudioNotFoundError` if none."""
    for uri in task.audio_candidates:
        if exists(uri):
            return uri
    tried = task.audio_candidates
    if len(tried) == 1:
        raise AudioNotFoundError(f"audio file not found: {tried[0]} (listed at {task.row})")
    raise AudioNotFoundError(f"no audio file for {task.id} (listed at {task.row}); tried "
                             + ", ".join(tried))


def load_notes(task: TrackTask) -> tuple[NoteEvent, ...] | None:
    if not task.labels_uri:
        return None
    text = read_text(task.labels_uri, f"MusicNet labels of {task.id}")
    return parse_labels(text, task.labels_uri)


def ingest_file(task: TrackTask, uri: str, params: WindowParams) -> TrackClips:
    """The work for one task whose audio is ``uri`` (already resolved)."""
    notes = load_notes(task)
    return track_clips(task, open_audio(uri), uri, params, notes)


def ingest_task(task: TrackTask, params: WindowParams) -> TrackClips:
    """Everything one worker does for one task, without Beam (used by the DoFn and benchmarks)."""
    return ingest_file(task, resolve_audio(task), params)


#: Skip reasons of the notes ingest writes besides ``tail_too_short``.
SHORTER_THAN_METADATA = "shorter_than_metadata"
LABELS_PAST_END = "labels_past_decoded_end"


def note_id(task: TrackTask, note: NoteEvent) -> str:
    """``musicnet:1788:note:41:72@93.500`` (program, pitch, onset in track seconds)."""
    return f"{task.id}:note:{note.program}:{note.pitch_midi}@{note.start_s:.3f}"


def skip_notes(task: TrackTask, result: TrackClips) -> list[str]:
    """The skip notes (JSON) of one track's result: a dropped tail, the span a file shorter
    than its metadata lacks, and each label past the decoded end."""
    out = []
    if result.dropped_tail is not None:
        out.append(skipped_json(STAGE, clip_id(task.dataset, task.source_id,
                                               *result.dropped_tail), "tail_too_short"))
    if result.missing_span is not None:
        out.append(skipped_json(STAGE, clip_id(task.dataset, task.source_id,
                                               *result.missing_span), SHORTER_THAN_METADATA))
    out += [skipped_json(STAGE, note_id(task, n), LABELS_PAST_END)
            for n in result.labels_past_end]
    return out


class IngestTrackFn(beam.DoFn):
    """TrackTask → Clips; BadRow → its dead letter; SkippedFile, a too-short tail, a file
    shorter than its metadata (kept) and labels past the decoded end → skip notes.

    A missing file raises :class:`AudioNotFoundError`, which ``with_dead_letters`` turns into a
    dead letter; a failure after the file was found is dead-lettered here, with ``input_uri``
    the file that was read (MusicCaps tries several names).
    """

    def __init__(self, params: WindowParams) -> None:
        self._params = params

    def process(self, task: TrackTask | BadRow | SkippedFile) -> Iterable[Any]:
        if isinstance(task, BadRow):
            yield beam.pvalue.TaggedOutput(DEAD_TAG, dead_letter_json(STAGE, task, task.error()))
            return
        if isinstance(task, SkippedFile):
            yield beam.pvalue.TaggedOutput(SKIP_TAG, skipped_json(STAGE, task.id, task.reason))
            return
        uri = resolve_audio(task)
        try:
            result = ingest_file(task, uri, self._params)
        except LlarkError as exc:
            read = replace(task, audio_uri=uri, alt_audio_uris=())
            yield beam.pvalue.TaggedOutput(DEAD_TAG, dead_letter_json(STAGE, read, exc))
            return
        count_track(task, result)
        yield from result.clips
        for note in skip_notes(task, result):
            yield beam.pvalue.TaggedOutput(SKIP_TAG, note)


def count_track(task: TrackTask, result: TrackClips) -> None:
    """The pipeline's counters for one ingested track (see :class:`IngestCounts`)."""
    n = len(result.clips)
    tally("tracks_ok")
    tally("clips", n)
    tally(f"tracks_by_split/{task.split}")
    tally(f"clips_by_split/{task.split}", n)


def build_ingest(pipeline: beam.Pipeline, plan: PlanSummary, params: WindowParams,
                 staging: str) -> None:
    """Wire the task plan → clips (Parquet) + dead letters + skip notes under ``staging``."""
    clips = with_dead_letters(read_plan(pipeline, plan), "Ingest", IngestTrackFn(params), STAGE,
                              staging)
    write_records(clips, CLIP_SCHEMA, staging)


@dataclass(frozen=True)
class IngestCounts(TallyCounts):
    """The index counts, from the plan and the pipeline's counters (nothing is re-read)."""

    inputs: int
    rejected_rows: int            # BadRows: rows the readers already knew to be unusable

    def __call__(self, tallies: Tallies) -> dict[str, Any]:
        tracks_ok = tallies.get("tracks_ok")
        dead = tallies.total(DEAD_PREFIX)
        return {
            "inputs": self.inputs,
            "rejected_rows": self.rejected_rows,
            "tracks_ok": tracks_ok,
            "clips": tallies.get("clips"),
            "dead_letters": dead,
            "unaccounted": self.inputs - tracks_ok - dead,
            "clips_by_split": tallies.group("clips_by_split/"),
            "tracks_by_split": tallies.group("tracks_by_split/"),
        }


@dataclass(frozen=True)
class IngestBuild:
    """``build(pipeline, staging)`` for :func:`pipelines.stage.run_stage` (no closures)."""

    cfg: IngestConfig

    def __call__(self, pipeline: beam.Pipeline, staging: str) -> IngestCounts:
        tasks = read_tasks(self.cfg.dataset, self.cfg.data_dir, self.cfg.reader_options())
        plan = write_plan(tasks, staging)
        print(f"[{STAGE}] {self.cfg.dataset}: {plan.inputs} inputs from {self.cfg.data_dir} "
              f"({plan.bad_rows} row(s) rejected while reading the metadata go to the dead "
              f"letters; {plan.skipped_files} file(s) that are not inputs are counted as "
              f"skipped); task plan: {plan.files} file(s) under {staging}/", file=sys.stderr)
        build_ingest(pipeline, plan, self.cfg.window_params(), staging)
        return IngestCounts(plan.inputs, plan.bad_rows)


def run(argv: list[str] | None = None) -> int:
    """``llark ingest``; returns 0 on success, 1 on a config/metadata error or a failed run."""
    try:
        cfg, args = parse_stage_args(IngestConfig, argv, "llark ingest",
                                     "Read a dataset as downloaded into clip records.")
        run_stage(STAGE, "clip", cfg.output, cfg, args.beam_args, IngestBuild(cfg),
                           force=args.force, max_error_rate=args.max_error_rate,
                           job_file=args.job_file)
    except LlarkError as exc:
        print(f"llark ingest: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Beam pickles this module's DoFns by their
    # module path, and worker processes cannot import "__main__".
    from pipelines.ingest import run as _run

    raise SystemExit(_run())
