"""Annotate: clip records → annotated clip records (tempo, beats, meter, key, chords).

    llark annotate --input CLIPS[,CLIPS...] --output DIR [--backend consensus|madmom|essentia]
                   [--silence-dbfs -60] [--essentia-profile shaath] [Beam flags]
    python -m pipelines.annotate ...   (the same)

Pipeline::

    clip rows ─► group by audio file ─► AnnotateTrackFn ─► AnnotatedClip ─► Parquet
                 (TrackClips: a track's   (open the file once; decode each clip's window at
                  clips together)          44.1 kHz; run the annotator shared by the process)

A track's clips are gathered (:func:`pipelines.stage.group_by_track`) so its file is opened
once (:func:`pipelines.sources.open_audio`: a local path directly; a remote one read once as
bytes), and each clip's window ``[start_s, end_s)`` is decoded with
:func:`llark.audio.load_audio` at 44.1 kHz, the rate every model needs, and handed to the pure
annotator (:func:`annotate.annotator.build_annotator`). The annotator is loaded once per worker
*process* and shared by its threads (``apache_beam.utils.shared.Shared``; a Dataflow worker
process runs many harness threads, each with its own DoFn instance); calls into it are
serialized by a lock, since essentia's algorithms keep state between calls. Annotation times are seconds from the start of the window: exactly the audio
the model hears. Silent windows are written with ``is_silent=True``; undecodable, missing or
truncated audio and analyses that fail become dead letters of that clip (an unexpected
exception dead-letters each clip of its track). Counts come from the pipeline's counters.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.utils.shared import Shared

from annotate.annotator import AnnotatorConfig, ClipAnnotator, build_annotator
from annotate.consensus import ConsensusConfig
from annotate.essentia_backend import KEY_PROFILES, EssentiaConfig
from annotate.madmom_backend import MadmomConfig
from annotate.madmom_backend import SAMPLE_RATE_HZ as ANALYSIS_RATE_HZ
from annotate.types import BACKENDS, ClipAnalysis
from llark.audio import AudioSource, load_audio
from llark.config import doc
from llark.errors import ConfigError, LlarkError
from pipelines.schema import (
    ANNOTATED_CLIP_SCHEMA,
    AnnotatedClip,
    Annotation,
    Beat,
    ChordSegment,
    Clip,
)
from pipelines.sources import open_audio
from pipelines.stage import (
    DEAD_PREFIX,
    DEAD_TAG,
    Tallies,
    TallyCounts,
    TrackClips,
    count_input_rows,
    dead_letter_json,
    group_by_track,
    parse_stage_args,
    read_input_rows,
    run_stage,
    tally,
    with_dead_letters,
    write_records,
)

STAGE = "annotate"


@dataclass(frozen=True)
class AnnotateConfig:
    """Configuration of ``llark annotate`` (flags, or keys of a ``--config`` YAML file)."""

    input: str = doc("clip records: one or more folders (comma-separated) written by llark "
                     "ingest", default="")
    output: str = doc("folder for the annotated clips: part-*.parquet, _index.json, "
                      "_dead_letter/", default="")
    backend: str = doc("consensus (madmom + essentia, merged), madmom or essentia",
                       default="consensus")
    silence_dbfs: float = doc("windows whose RMS is below this many dBFS are annotated as "
                              "silent", default=-60.0)
    essentia_profile: str = doc("essentia KeyExtractor profileType (chosen by "
                                "benchmarks/annotate_accuracy.py)", default="shaath")
    tempo_activation: str = doc("madmom tempo input: downbeat (shared with the downbeat "
                                "tracker) or beat (separate RNNBeatProcessor)",
                                default="downbeat")
    onnx_threads: int = doc("onnxruntime intra-op threads per worker (1: scale with workers)",
                            default=1)

    def __post_init__(self) -> None:
        if not self.input:
            raise ConfigError("--input is required")
        if not self.output:
            raise ConfigError("--output is required")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.essentia_profile not in KEY_PROFILES:
            raise ConfigError(f"--essentia-profile {self.essentia_profile!r}: choose one of "
                              f"{', '.join(KEY_PROFILES)}")
        self.annotator_config()   # validates the remaining fields

    def annotator_config(self) -> AnnotatorConfig:
        return AnnotatorConfig(
            backend=self.backend, silence_dbfs=self.silence_dbfs,
            madmom=MadmomConfig(tempo_activation=self.tempo_activation,
                                intra_op_threads=self.onnx_threads),
            essentia=EssentiaConfig(key_profile=self.essentia_profile),
            consensus=ConsensusConfig())


# --------------------------------------------------------------------------- records

def to_annotation(clip_id: str, result: ClipAnalysis) -> Annotation:
    """The pure annotator's result as the schema's :class:`Annotation` of ``clip_id``."""
    return Annotation(
        clip_id=clip_id, backend=result.backend, tempo_bpm=float(result.tempo_bpm),
        tempo_confidence=float(result.tempo_confidence),
        beats=tuple(Beat(float(b.time_s), int(b.beat_number)) for b in result.beats),
        downbeats_s=tuple(float(t) for t in result.downbeats_s), meter=int(result.meter),
        meter_confidence=float(result.meter_confidence), key=result.key,
        key_confidence=float(result.key_confidence),
        chords=tuple(ChordSegment(float(c.start_s), float(c.end_s), c.label)
                     for c in result.chords),
        chords_confidence=float(result.chords_confidence), is_silent=bool(result.is_silent),
        backends_json=result.backends_json())


def annotate_clip(clip: Clip, source: AudioSource,
                  annotator: "ClipAnnotator | SharedAnnotator") -> AnnotatedClip:
    """Decode the clip's window of ``source`` (44.1 kHz mono) and annotate it."""
    audio, sr = load_audio(source, ANALYSIS_RATE_HZ, clip.start_s, clip.end_s)
    result = annotator(audio, sr)
    return AnnotatedClip(clip, to_annotation(clip.id, result))


class SharedAnnotator:
    """One process's annotator, shared by its threads; calls are serialized (essentia's
    algorithms are stateful objects, not safe to run from two threads at once)."""

    def __init__(self, annotator: ClipAnnotator) -> None:
        self.annotator = annotator
        self._lock = threading.Lock()

    def __call__(self, audio: Any, sr: int) -> ClipAnalysis:
        with self._lock:
            return self.annotator(audio, sr)


@dataclass(frozen=True)
class LoadAnnotator:
    """``Shared.acquire``'s constructor: builds the annotator (no closure, so it pickles)."""

    cfg: AnnotatorConfig

    def __call__(self) -> SharedAnnotator:
        return SharedAnnotator(build_annotator(self.cfg))


class AnnotateTrackFn(beam.DoFn):
    """:class:`TrackClips` → one :class:`AnnotatedClip` per clip (the file opened once); a clip
    whose audio or analysis fails → its dead letter. The models load once per process."""

    def __init__(self, cfg: AnnotatorConfig) -> None:
        self._cfg = cfg
        self._shared = Shared()
        self._annotator: SharedAnnotator | None = None

    def setup(self) -> None:
        self._annotator = self._shared.acquire(LoadAnnotator(self._cfg), tag=repr(self._cfg))

    def process(self, track: TrackClips) -> Iterable[Any]:
        assert self._annotator is not None, "setup() was not called"
        clips = [Clip.from_row(row) for row in track.rows]
        out: list[Any] = []
        try:
            source = open_audio(track.audio_uri)
        except LlarkError as exc:
            source, out = None, [beam.pvalue.TaggedOutput(
                DEAD_TAG, dead_letter_json(STAGE, clip, exc)) for clip in clips]
        annotated = []
        for clip in clips if source is not None else ():
            try:
                annotated.append(annotate_clip(clip, source, self._annotator))
            except LlarkError as exc:
                out.append(beam.pvalue.TaggedOutput(DEAD_TAG, dead_letter_json(STAGE, clip, exc)))
        # Count only once the whole track is done: an unexpected exception above dead-letters
        # every clip of the track, and nothing of it may have been counted as annotated.
        for item in annotated:
            ann = item.annotation
            tally("annotated")
            tally("silent", int(ann.is_silent))
            tally(f"meters/{ann.meter}")
        yield from annotated
        yield from out


# --------------------------------------------------------------------------- pipeline

@dataclass(frozen=True)
class AnnotateCounts(TallyCounts):
    """The index counts: inputs from the input indexes, the rest from the pipeline's counters."""

    inputs: int
    backend: str

    def __call__(self, tallies: Tallies) -> dict[str, Any]:
        written, dead = tallies.get("annotated"), tallies.total(DEAD_PREFIX)
        return {"inputs": self.inputs, "annotated": written, "silent": tallies.get("silent"),
                "dead_letters": dead, "unaccounted": self.inputs - written - dead,
                "backend": self.backend, "meters": tallies.group("meters/")}


@dataclass(frozen=True)
class AnnotateBuild:
    """``build(pipeline, staging)`` for :func:`pipelines.stage.run_stage` (no closures)."""

    cfg: AnnotateConfig

    def __call__(self, pipeline: beam.Pipeline, staging: str) -> AnnotateCounts:
        rows = read_input_rows(pipeline, self.cfg.input, "clip")
        annotated = with_dead_letters(group_by_track(rows), "Annotate",
                                      AnnotateTrackFn(self.cfg.annotator_config()), STAGE, staging)
        write_records(annotated, ANNOTATED_CLIP_SCHEMA, staging)
        return AnnotateCounts(count_input_rows(self.cfg.input), self.cfg.backend)


def run(argv: list[str] | None = None) -> int:
    """``llark annotate``; returns 0 on success, 1 on a config error or a failed run."""
    try:
        cfg, args = parse_stage_args(AnnotateConfig, argv, "llark annotate",
                                     "Annotate clip windows with tempo, beats, downbeats, "
                                     "meter, key and chords (madmom, essentia, consensus).")
        n = count_input_rows(cfg.input)
        print(f"[{STAGE}] {n} clip(s) from {cfg.input}, backend {cfg.backend}", file=sys.stderr)
        run_stage(STAGE, "annotated_clip", cfg.output, cfg, args.beam_args, AnnotateBuild(cfg),
                  force=args.force, max_error_rate=args.max_error_rate,
                  job_file=args.job_file)
    except LlarkError as exc:
        print(f"llark annotate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Beam pickles this module's DoFns by their
    # module path, and worker processes cannot import "__main__".
    from pipelines.annotate import run as _run

    raise SystemExit(_run())
