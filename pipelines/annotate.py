"""Annotate: clip records → annotated clip records (tempo, beats, meter, key, chords).

    llark annotate --input CLIPS[,CLIPS...] --output DIR [--backend consensus|madmom|essentia]
                   [--silence-dbfs -60] [--essentia-profile shaath] [Beam flags]
    python -m pipelines.annotate ...   (the same)

Pipeline::

    clip rows ─► AnnotateClipFn ─► AnnotatedClip ─► Parquet (+ _index.json, _dead_letter/)
                 (decode the clip's window once at 44.1 kHz, run the annotator built in
                  setup(): madmom and/or essentia, consensus)

Each clip's window ``[start_s, end_s)`` is decoded once with :func:`llark.audio.load_audio`
(local paths directly; other URIs are read as bytes through Beam's ``FileSystems``) at 44.1 kHz,
the rate every model needs, and handed to the pure annotator
(:func:`annotate.annotator.build_annotator`), which loads its models once per worker in
``DoFn.setup``. Annotation times are seconds from the start of the window: exactly the audio
the model hears. Silent windows are written with ``is_silent=True``; undecodable, missing or
truncated audio and analyses that fail become dead letters of that clip.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from annotate.annotator import AnnotatorConfig, ClipAnnotator, build_annotator
from annotate.consensus import ConsensusConfig
from annotate.essentia_backend import KEY_PROFILES, EssentiaConfig
from annotate.madmom_backend import MadmomConfig
from annotate.madmom_backend import SAMPLE_RATE_HZ as ANALYSIS_RATE_HZ
from annotate.types import BACKENDS, ClipAnalysis
from llark.audio import load_audio
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
from pipelines.stage import (
    count_input_rows,
    parse_stage_args,
    read_input_rows,
    run_stage,
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


def read_source(uri: str) -> str | bytes:
    """A local path as is (soundfile seeks in it); any other URI as bytes via FileSystems."""
    if "://" not in uri or uri.startswith("file://"):
        return uri[len("file://"):] if uri.startswith("file://") else uri
    with FileSystems.open(uri) as f:
        return f.read()


def annotate_clip(clip: Clip, annotator: ClipAnnotator) -> AnnotatedClip:
    """Decode the clip's window once (44.1 kHz mono) and annotate it."""
    audio, sr = load_audio(read_source(clip.audio_uri), ANALYSIS_RATE_HZ, clip.start_s,
                           clip.end_s)
    result = annotator(audio, sr)
    return AnnotatedClip(clip, to_annotation(clip.id, result))


class AnnotateClipFn(beam.DoFn):
    """Clip row → :class:`AnnotatedClip`; the models load once per worker in ``setup``."""

    def __init__(self, cfg: AnnotatorConfig) -> None:
        self._cfg = cfg
        self._annotator: ClipAnnotator | None = None

    def setup(self) -> None:
        self._annotator = build_annotator(self._cfg)

    def process(self, row: dict) -> Iterable[AnnotatedClip]:
        assert self._annotator is not None, "setup() was not called"
        yield annotate_clip(Clip.from_row(row), self._annotator)


# --------------------------------------------------------------------------- pipeline

@dataclass(frozen=True)
class AnnotateCounts:
    """Called after the pipeline: index counts read from what was staged."""

    staging: str
    inputs: int
    backend: str

    def __call__(self) -> dict[str, Any]:
        import pyarrow.parquet as pq

        written = silent = 0
        meters: Counter[str] = Counter()
        for match in FileSystems.match([self.staging.rstrip("/") + "/data/part*"])[0].metadata_list:
            if not match.path.endswith(".parquet"):
                continue
            with FileSystems.open(match.path) as f:
                table = pq.read_table(f, columns=["annotation"])
            for ann in table.column("annotation").to_pylist():
                written += 1
                silent += bool(ann["is_silent"])
                meters[str(ann["meter"])] += 1
        dead = 0
        for match in FileSystems.match([self.staging.rstrip("/") + "/dead/*"])[0].metadata_list:
            with FileSystems.open(match.path) as f:
                dead += sum(1 for line in f.read().decode().splitlines() if line.strip())
        return {"inputs": self.inputs, "annotated": written, "silent": silent,
                "dead_letters": dead, "unaccounted": self.inputs - written - dead,
                "backend": self.backend, "meters": dict(sorted(meters.items()))}


@dataclass(frozen=True)
class AnnotateBuild:
    """``build(pipeline, staging)`` for :func:`pipelines.stage.run_stage` (no closures)."""

    cfg: AnnotateConfig

    def __call__(self, pipeline: beam.Pipeline, staging: str) -> AnnotateCounts:
        rows = read_input_rows(pipeline, self.cfg.input, "clip")
        annotated = with_dead_letters(rows, "Annotate", AnnotateClipFn(self.cfg.annotator_config()),
                                      STAGE, staging)
        write_records(annotated, ANNOTATED_CLIP_SCHEMA, staging)
        return AnnotateCounts(staging, count_input_rows(self.cfg.input), self.cfg.backend)


def run(argv: list[str] | None = None) -> int:
    """``llark annotate``; returns 0 on success, 1 on a config error or a failed run."""
    try:
        cfg, args = parse_stage_args(AnnotateConfig, argv, "llark annotate",
                                     "Annotate clip windows with tempo, beats, downbeats, "
                                     "meter, key and chords (madmom, essentia, consensus).")
        n = count_input_rows(cfg.input)
        print(f"[{STAGE}] {n} clip(s) from {cfg.input}, backend {cfg.backend}", file=sys.stderr)
        run_stage(STAGE, "annotated_clip", cfg.output, cfg, args.beam_args, AnnotateBuild(cfg),
                  force=args.force, max_error_rate=args.max_error_rate)
    except LlarkError as exc:
        print(f"llark annotate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Beam pickles this module's DoFns by their
    # module path, and worker processes cannot import "__main__".
    from pipelines.annotate import run as _run

    raise SystemExit(_run())
