"""Ingest: a dataset as downloaded → clip records (Parquet + ``_index.json``) and dead letters.

    llark ingest --dataset NAME --data-dir DIR --output DIR [--audio-dir DIR]
                 [--clip-seconds S] [--min-clip-seconds S] [--subset ...]
                 [--filename-template ...] [Beam flags]
    python -m pipelines.ingest ...   (the same)

The driver reads the dataset's metadata files (through Beam's ``FileSystems``, so ``gs://`` data
directories work) into one :class:`~pipelines.datasets.common.TrackTask` per audio file, or a
:class:`~pipelines.datasets.common.BadRow` for a row it cannot use. The pipeline spreads the
tasks over the workers; :class:`IngestTrackFn` opens each file (a local path directly, anything
else as bytes through ``FileSystems``), cuts the track into windows with
:func:`llark.windows.clip_windows`, decodes and resamples every window (which validates the
whole file), measures its loudness and yields one :class:`~pipelines.schema.Clip` per window.

Every input is accounted for: its clips are written, or one dead letter names it (malformed
row, missing / empty / corrupt / truncated / too-short audio). A tail shorter than
``--min-clip-seconds`` is dropped and counted as skipped (``tail_too_short``). The index counts
``inputs`` (metadata rows, plus audio files without a row for ``folder``), ``tracks_ok``,
``clips``, ``dead_letters`` and the clips and tracks per split; inputs = tracks_ok +
dead_letters.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass
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
    TrackTask,
    basename,
    exists,
    is_uri,
    list_files,
    read_bytes,
    read_text,
)
from pipelines.datasets.musicnet import parse_labels, window_notes
from pipelines.schema import CLIP_SCHEMA, Clip, NoteEvent, clip_id
from pipelines.stage import (
    DEAD_TAG,
    SKIP_TAG,
    dead_letter_json,
    parse_stage_args,
    run_stage,
    skipped_json,
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

    def reader_options(self) -> ReaderOptions:
        return ReaderOptions(audio_dir=self.audio_dir, metadata=self.metadata,
                             subset=self.subset, filename_template=self.filename_template)

    def window_params(self) -> "WindowParams":
        return WindowParams(self.clip_seconds, self.min_clip_seconds, self.sample_rate_hz)


@dataclass(frozen=True)
class WindowParams:
    """What the per-track work needs of the config (small; shipped to every worker)."""

    clip_seconds: float = DEFAULT_CLIP_SECONDS
    min_clip_seconds: float = DEFAULT_MIN_CLIP_SECONDS
    sample_rate_hz: int = 44100


# --------------------------------------------------------------------------- pure core

@dataclass(frozen=True)
class TrackClips:
    """What one track yields: its clips and the tail window that was too short (if any)."""

    clips: tuple[Clip, ...]
    dropped_tail: tuple[float, float] | None = None


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


def track_clips(task: TrackTask, source: AudioSource, audio_uri: str, params: WindowParams,
                notes: tuple[NoteEvent, ...] | None = None) -> TrackClips:
    """Cut one track into windows, decode + resample each (validating the file), measure it.

    ``source`` is a local path or the file's bytes; ``audio_uri`` is what the clips record.
    ``notes`` (MusicNet) are the track's note events in track time. Raises the typed errors of
    :mod:`llark.audio`, and :class:`AudioTooShortError` when no window is long enough.
    """
    info = probe_audio(source)
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
    return TrackClips(tuple(clips), tail)


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


def open_audio(uri: str) -> AudioSource:
    """A local path as is; any other URI as its bytes (read through Beam's filesystems)."""
    return read_bytes(uri) if is_uri(uri) else uri


def load_notes(task: TrackTask) -> tuple[NoteEvent, ...] | None:
    if not task.labels_uri:
        return None
    text = read_text(task.labels_uri, f"MusicNet labels of {task.id}")
    return parse_labels(text, basename(task.labels_uri))


def ingest_task(task: TrackTask, params: WindowParams) -> TrackClips:
    """Everything one worker does for one task, without Beam (used by the DoFn and benchmarks)."""
    uri = resolve_audio(task)
    notes = load_notes(task)
    return track_clips(task, open_audio(uri), uri, params, notes)


class IngestTrackFn(beam.DoFn):
    """TrackTask → Clips; BadRow → its dead letter; a too-short tail → a skip note.

    Audio failures raise typed errors, which ``with_dead_letters`` turns into dead letters.
    """

    def __init__(self, params: WindowParams) -> None:
        self._params = params

    def process(self, task: TrackTask | BadRow) -> Iterable[Any]:
        if isinstance(task, BadRow):
            yield beam.pvalue.TaggedOutput(DEAD_TAG, dead_letter_json(STAGE, task, task.error()))
            return
        result = ingest_task(task, self._params)
        yield from result.clips
        if result.dropped_tail is not None:
            tail_id = clip_id(task.dataset, task.source_id, *result.dropped_tail)
            yield beam.pvalue.TaggedOutput(SKIP_TAG, skipped_json(STAGE, tail_id,
                                                                  "tail_too_short"))


def build_ingest(pipeline: beam.Pipeline, tasks: list[TrackTask | BadRow], params: WindowParams,
                 staging: str) -> None:
    """Wire tasks → clips (Parquet) + dead letters + skip notes under ``staging``."""
    clips = with_dead_letters(
        pipeline | "Tasks" >> beam.Create(tasks) | "Spread" >> beam.Reshuffle(),
        "Ingest", IngestTrackFn(params), STAGE, staging)
    write_records(clips, CLIP_SCHEMA, staging)


@dataclass(frozen=True)
class IngestCounts:
    """Called after the pipeline: the index counts, read from what was staged."""

    staging: str
    inputs: int
    rejected_rows: int            # BadRows: rows the readers already knew to be unusable

    def __call__(self) -> dict[str, Any]:
        import pyarrow.parquet as pq
        from apache_beam.io.filesystems import FileSystems

        clips_by_split: Counter[str] = Counter()
        tracks: dict[str, str] = {}
        for path in list_files(self.staging.rstrip("/") + "/data/part*"):
            if not path.endswith(".parquet"):
                continue
            with FileSystems.open(path) as f:
                table = pq.read_table(f, columns=["source_id", "split"])
            for sid, split in zip(table.column("source_id").to_pylist(),
                                  table.column("split").to_pylist()):
                clips_by_split[split] += 1
                tracks[sid] = split
        dead = sum(1 for path in list_files(self.staging.rstrip("/") + "/dead/*")
                   for line in read_text(path, "dead letters").splitlines() if line.strip())
        return {
            "inputs": self.inputs,
            "rejected_rows": self.rejected_rows,
            "tracks_ok": len(tracks),
            "clips": sum(clips_by_split.values()),
            "dead_letters": dead,
            "unaccounted": self.inputs - len(tracks) - dead,
            "clips_by_split": dict(sorted(clips_by_split.items())),
            "tracks_by_split": dict(sorted(Counter(tracks.values()).items())),
        }


@dataclass(frozen=True)
class IngestBuild:
    """``build(pipeline, staging)`` for :func:`pipelines.stage.run_stage` (no closures)."""

    cfg: IngestConfig

    def __call__(self, pipeline: beam.Pipeline, staging: str) -> IngestCounts:
        tasks = list(read_tasks(self.cfg.dataset, self.cfg.data_dir, self.cfg.reader_options()))
        bad = sum(isinstance(t, BadRow) for t in tasks)
        print(f"[{STAGE}] {self.cfg.dataset}: {len(tasks)} inputs from {self.cfg.data_dir} "
              f"({bad} row(s) rejected while reading the metadata go to the dead letters)",
              file=sys.stderr)
        build_ingest(pipeline, tasks, self.cfg.window_params(), staging)
        return IngestCounts(staging, len(tasks), bad)


def run(argv: list[str] | None = None) -> int:
    """``llark ingest``; returns 0 on success, 1 on a config/metadata error or a failed run."""
    try:
        cfg, args = parse_stage_args(IngestConfig, argv, "llark ingest",
                                     "Read a dataset as downloaded into clip records.")
        result = run_stage(STAGE, "clip", cfg.output, cfg, args.beam_args, IngestBuild(cfg),
                           force=args.force, max_error_rate=args.max_error_rate)
    except LlarkError as exc:
        print(f"llark ingest: error: {exc}", file=sys.stderr)
        return 1
    unaccounted = result.index.counts.get("unaccounted", 0)
    if unaccounted:
        print(f"llark ingest: error: {unaccounted} input(s) have neither clips nor a dead letter "
              "(a bug; please report it)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Beam pickles this module's DoFns by their
    # module path, and worker processes cannot import "__main__".
    from pipelines.ingest import run as _run

    raise SystemExit(_run())
