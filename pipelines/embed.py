"""Embed: clip records → one float16 embedding per clip (Parquet + ``_index.json``).

    llark embed --input CLIPS[,CLIPS...] --output DIR [--encoder features|jukebox]
                [--checkpoint-dir DIR] [--batch-size N] [--device auto|cpu|cuda]
                [--model-copies N] [Beam flags]
    python -m pipelines.embed ...   (the same)

Pipeline::

    clip rows ─► by track ─► LoadWindowsFn ─► RunInference(EmbedModelHandler) ─► ToEmbeddingFn
                             (open the file    (BatchElements of --batch-size,   (float16,
                              once; decode      model loaded once per worker      checks) ─►
                              each window at    process, shared by its threads)   Parquet
                              the encoder's rate)

* **Loading** happens in a DoFn before inference, on a track's clips together
  (:func:`pipelines.stage.group_by_track`), so a remote file is read once per track, not once
  per clip; a missing, empty, corrupt or truncated file becomes a dead letter of each clip it
  fails (``with_dead_letters``) and never reaches a batch.
* **Inference** uses Beam's ``RunInference`` with :class:`EmbedModelHandler`: ``load_model``
  builds the encoder once per worker process (``embed.registry.build_encoder``; RunInference
  keeps it in a ``shared.Shared`` handle, so the harness threads of a process share it), ``run_inference``
  encodes a whole batch in one call. With ``--model-copies N`` (``large_model`` /
  ``model_copies`` on the handler) the encoder is loaded N times per machine and shared by all
  of its SDK processes, which is what a GPU worker needs (``llark run`` passes 1 for Jukebox,
  with ``--experiments=no_use_multiple_sdk_containers``); remote weights are copied once per
  machine under a file lock (:func:`localize_checkpoint`). If a batch raises an encoder error the handler retries its
  windows one by one so only the bad window fails; any other exception fails the batch and
  RunInference's own dead-letter output (``with_exception_handling``) turns it into one dead
  letter per clip of the batch.
* **Output**: :class:`pipelines.schema.Embedding` rows (clip id, dataset, encoder name, frame
  rate, ``n_frames``, ``dim``, float16 bytes), once per clip. Each embedding covers exactly the
  clip's window ``[start_s, end_s)``: ``ceil(10 * seconds)`` frames. Values outside float16's
  range dead-letter instead of being stored as ``inf``.

The index counts ``inputs`` (clip rows of the input sets, from their indexes), ``embedded`` and
``dead_letters`` (from the pipeline's counters; the run fails unless they add up) and records the encoder's name, sample rate, frame
rate and dimension, which ``llark shards`` checks every embedding against.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from llark.audio import load_audio
from llark.config import doc
from llark.errors import ConfigError, EncoderError, LlarkError
from pipelines.schema import EMBEDDING_SCHEMA, Clip, DeadLetter, Embedding
from pipelines.sources import is_remote, open_audio
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
    pipeline_options,
    read_complete_index,
    read_input_rows,
    run_stage,
    tally,
    with_dead_letters,
    write_dead_letters,
    write_records,
)

log = logging.getLogger("llark.embed")

STAGE = "embed"
INPUT_RECORDS = ("clip", "annotated_clip")
FLOAT16_MAX = float(np.finfo(np.float16).max)


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class EmbedConfig:
    """Configuration of ``llark embed`` (flags, or keys of a ``--config`` YAML file)."""

    input: str = doc("clip records to embed: one or more folders (comma-separated) written by "
                     "ingest (or annotate)", default="")
    output: str = doc("folder for the embeddings: part-*.parquet, _index.json, _dead_letter/",
                      default="")
    encoder: str = doc("features (CPU default, 128-d musical features), jukebox (Jukebox-5B "
                       "layer 36, 4800-d, GPU) or jukebox-tiny-random (tests)",
                       default="features")
    checkpoint_dir: str = doc("folder with the Jukebox weights vqvae.pth.tar and "
                              "prior_level_2.pth.tar (default: $LLARK_JUKEBOX_DIR); a gs:// "
                              "folder is copied to each worker once", default="")
    batch_size: int = doc("clips per inference batch (RunInference's max_batch_size)",
                          default=8)
    device: str = doc("auto (CUDA when visible), cpu or cuda", default="auto")
    dtype: str = doc("jukebox transformer precision on CUDA: float16, bfloat16 or float32",
                     default="float16")
    model_copies: int = doc("encoder copies per worker machine, shared by all its SDK processes "
                            "(RunInference's model_copies: 1 for Jukebox-5B on one GPU, so a "
                            "g2-standard-8 loads one copy, not eight); 0: one copy per SDK "
                            "process (fine for the small features encoder)", default=0)

    def __post_init__(self) -> None:
        from embed.jukebox import DTYPES
        from embed.registry import DEVICES, ENCODERS

        if not self.input:
            raise ConfigError("--input is required")
        if not self.output:
            raise ConfigError("--output is required")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"--encoder {self.encoder!r}: choose one of {', '.join(ENCODERS)}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.device not in DEVICES:
            raise ConfigError(f"--device {self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.model_copies < 0:
            raise ConfigError(f"--model-copies must be >= 0, got {self.model_copies}")


# --------------------------------------------------------------------------- elements

@dataclass(frozen=True)
class WindowMeta:
    """Which clip a window is (carried through inference instead of the samples)."""

    clip_id: str
    dataset: str
    audio_uri: str
    n_samples: int


@dataclass(frozen=True)
class AudioWindow:
    """A clip's decoded window, mono float32 at the encoder's sample rate."""

    meta: WindowMeta
    audio: np.ndarray

    @property
    def clip_id(self) -> str:          # for pipelines.stage.element_id
        return self.meta.clip_id

    @property
    def audio_uri(self) -> str:        # for pipelines.stage.element_uri
        return self.meta.audio_uri


@dataclass(frozen=True)
class EncodeFailure:
    """A window the encoder refused on its own (the rest of its batch was encoded)."""

    error_type: str
    message: str


@dataclass(frozen=True)
class Encoded:
    """An inference result, flattened for the last step."""

    meta: WindowMeta
    frames: np.ndarray | None          # (n_frames, dim) float32
    failure: EncodeFailure | None

    @property
    def clip_id(self) -> str:
        return self.meta.clip_id

    @property
    def audio_uri(self) -> str:
        return self.meta.audio_uri


# --------------------------------------------------------------------------- DoFns

class LoadWindowsFn(beam.DoFn):
    """:class:`TrackClips` → one :class:`AudioWindow` per clip (its exact window, mono, at the
    encoder's rate), the file opened once; a clip whose audio fails → its dead letter."""

    def __init__(self, sample_rate_hz: int) -> None:
        self._sr = sample_rate_hz

    def process(self, track: TrackClips) -> Iterable[Any]:
        clips = [Clip.from_row(row) for row in track.rows]
        try:
            source = open_audio(track.audio_uri)
        except LlarkError as exc:
            for clip in clips:
                yield beam.pvalue.TaggedOutput(DEAD_TAG, dead_letter_json(STAGE, clip, exc))
            return
        out: list[Any] = []
        for clip in clips:
            try:
                audio, _ = load_audio(source, self._sr, clip.start_s, clip.end_s)
            except LlarkError as exc:
                out.append(beam.pvalue.TaggedOutput(DEAD_TAG, dead_letter_json(STAGE, clip, exc)))
                continue
            out.append(AudioWindow(WindowMeta(clip.id, clip.dataset, clip.audio_uri,
                                              int(audio.size)), audio))
        yield from out


LOCK_FILE = ".lock"
"""The lock file of a local weights cache folder (``fcntl.flock``, held while copying)."""


def localize_checkpoint(checkpoint_dir: str) -> str:
    """A remote (``gs://...``) weights folder copied once per machine into a local cache; local
    as is.

    Every SDK process of a VM may call this at once (one per core unless
    ``no_use_multiple_sdk_containers``): the copy runs under an exclusive lock on the cache
    folder's :data:`LOCK_FILE`, so the first process downloads, the others wait and then find
    the files; each file is written under a name of its own and renamed into place, so a
    process killed mid-copy never leaves a partial file under the real name.
    """
    if not checkpoint_dir or not is_remote(checkpoint_dir):
        return checkpoint_dir
    import fcntl

    from embed.jukebox import PRIOR_FILE, VQVAE_FILE

    local = os.path.join(tempfile.gettempdir(), "llark-jukebox",
                         checkpoint_dir.replace("://", "_").replace("/", "_"))
    os.makedirs(local, exist_ok=True)
    with open(os.path.join(local, LOCK_FILE), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            for name in (VQVAE_FILE, PRIOR_FILE):
                _copy_once(FileSystems.join(checkpoint_dir, name), os.path.join(local, name))
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return local


def _copy_once(src: str, dest: str) -> None:
    """``src`` → ``dest`` unless ``dest`` already has its size (call under the folder lock)."""
    from embed.jukebox import PRIOR_FILE, VQVAE_FILE

    if not FileSystems.exists(src):
        raise EncoderError(f"{src} does not exist; the folder must hold {VQVAE_FILE} and "
                           f"{PRIOR_FILE}")
    size = FileSystems.match([src])[0].metadata_list[0].size_in_bytes
    if os.path.exists(dest) and os.path.getsize(dest) == size:
        return
    part = f"{dest}.{os.getpid()}.part"
    try:
        with FileSystems.open(src) as fin, open(part, "wb") as fout:
            while block := fin.read(64 << 20):
                fout.write(block)
        os.replace(part, dest)
    finally:
        if os.path.exists(part):
            os.remove(part)


class EmbedModelHandler(ModelHandler[AudioWindow, PredictionResult, Any]):
    """RunInference handler: one encoder per worker, a batch of windows per call."""

    def __init__(self, cfg: EmbedConfig) -> None:
        # model_copies > 0: RunInference loads the encoder in one process per copy and the
        # VM's other SDK processes call it there (Beam's multi_process_shared), so a GPU holds
        # model_copies copies, not one per process.
        super().__init__(min_batch_size=1, max_batch_size=cfg.batch_size,
                         large_model=cfg.model_copies > 0,
                         model_copies=cfg.model_copies or None)
        self._cfg = cfg

    def load_model(self) -> Any:
        from embed.registry import build_encoder

        cfg = self._cfg
        # One forward pass per batch of clips (24 s clips add a short second piece each).
        return build_encoder(cfg.encoder, localize_checkpoint(cfg.checkpoint_dir) or None,
                             cfg.device, batch_pieces=cfg.batch_size, dtype=cfg.dtype)

    def run_inference(self, batch: Sequence[AudioWindow], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        try:
            outputs: list[Any] = model([w.audio for w in batch])
        except LlarkError:
            if len(batch) == 1:
                outputs = [_encode_one(model, batch[0])]
            else:
                # Isolate the window(s) the encoder refuses; encode the others.
                outputs = [_encode_one(model, w) for w in batch]
        return [PredictionResult(w.meta, out) for w, out in zip(batch, outputs)]

    def get_num_bytes(self, batch: Sequence[AudioWindow]) -> int:
        return sum(int(w.audio.nbytes) for w in batch)

    def get_metrics_namespace(self) -> str:
        return "llark_embed"


def _encode_one(model: Any, window: AudioWindow) -> np.ndarray | EncodeFailure:
    try:
        return model([window.audio])[0]
    except LlarkError as exc:
        return EncodeFailure(type(exc).__name__, str(exc))


def to_encoded(result: PredictionResult) -> Encoded:
    inference = result.inference
    if isinstance(inference, EncodeFailure):
        return Encoded(result.example, None, inference)
    return Encoded(result.example, inference, None)


class ToEmbeddingFn(beam.DoFn):
    """:class:`Encoded` → :class:`Embedding` (float16), after checking its shape and range."""

    def __init__(self, encoder: str) -> None:
        self._encoder = encoder

    def setup(self) -> None:
        from embed.registry import encoder_info

        self._info = encoder_info(self._encoder)

    def process(self, item: Encoded) -> Iterable[Any]:
        meta = item.meta
        if item.failure is not None:
            yield beam.pvalue.TaggedOutput(DEAD_TAG, DeadLetter(
                STAGE, meta.clip_id, item.failure.error_type, item.failure.message,
                meta.audio_uri).to_json())
            return
        frames = item.frames
        info = self._info
        from embed.base import n_frames

        want = (n_frames(meta.n_samples, info.sample_rate_hz, info.frame_rate_hz), info.dim)
        if frames is None or frames.shape != want:
            raise EncoderError(f"{info.name} returned shape "
                               f"{None if frames is None else frames.shape} for a window of "
                               f"{meta.n_samples} samples; expected {want}")
        if not np.isfinite(frames).all():
            raise EncoderError(f"{info.name} returned {int((~np.isfinite(frames)).sum())} "
                               "NaN/inf values")
        peak = float(np.abs(frames).max())
        if peak > FLOAT16_MAX:
            raise EncoderError(f"{info.name} returned a value of {peak:.4g}, beyond float16's "
                               f"range ({FLOAT16_MAX:.0f}); it cannot be stored")
        embedding = Embedding.from_array(meta.clip_id, meta.dataset, info.name,
                                         info.frame_rate_hz, frames)
        tally("embedded")
        yield embedding


class BatchDeadLettersFn(beam.DoFn):
    """RunInference's failed batches ``(batch, (type, repr, traceback))`` → one dead letter per
    clip of the batch (a failure RunInference could not narrow down, e.g. GPU out of memory)."""

    def process(self, bad: tuple) -> Iterable[str]:
        batch, (exc_type, exc_repr, tb_lines) = bad
        where = "".join(tb_lines[-2:]).strip().replace("\n", " | ") if tb_lines else ""
        message = f"inference failed for its whole batch of {len(batch)}: {exc_repr}"
        if where and not issubclass(exc_type, LlarkError):
            message += f" (at {where})"
        for w in batch:
            yield DeadLetter(STAGE, w.meta.clip_id, exc_type.__name__, message,
                             w.meta.audio_uri).to_json()


# --------------------------------------------------------------------------- pipeline

def input_record(input_dir: str) -> str:
    """``clip`` or ``annotated_clip``: the record type of the (first) input set."""
    first = next((d.strip().rstrip("/") for d in input_dir.split(",") if d.strip()), "")
    index = read_complete_index(first) if first else None
    if index is None:
        raise LlarkError(f"{first or input_dir}: no _index.json; run ingest first")
    if index.record not in INPUT_RECORDS:
        raise LlarkError(f"{first}: holds {index.record!r} records; embed reads "
                         f"{' or '.join(INPUT_RECORDS)}")
    return index.record


def build_embed(pipeline: beam.Pipeline, cfg: EmbedConfig, staging: str) -> "EmbedCounts":
    from embed.registry import encoder_info

    info = encoder_info(cfg.encoder)
    rows = read_input_rows(pipeline, cfg.input, input_record(cfg.input))
    windows = with_dead_letters(group_by_track(rows), "LoadAudio",
                                LoadWindowsFn(info.sample_rate_hz), STAGE, staging)
    results, dlq = windows | "Encode" >> RunInference(
        EmbedModelHandler(cfg)).with_exception_handling()
    write_dead_letters(dlq.failed_inferences | "Encode:DeadLetters"
                       >> beam.ParDo(BatchDeadLettersFn()), "Encode", staging)
    encoded = results | "Flatten results" >> beam.Map(to_encoded)
    embeddings = with_dead_letters(encoded, "ToEmbedding", ToEmbeddingFn(cfg.encoder), STAGE,
                                   staging)
    write_records(embeddings, EMBEDDING_SCHEMA, staging)
    return EmbedCounts(count_input_rows(cfg.input), info.name, info.sample_rate_hz,
                       info.frame_rate_hz, info.dim)


@dataclass(frozen=True)
class EmbedCounts(TallyCounts):
    """The index counts: inputs from the input indexes, outcomes from the pipeline's counters,
    and the encoder every embedding was made by."""

    inputs: int
    encoder: str
    sample_rate_hz: int
    frame_rate_hz: float
    dim: int

    def __call__(self, tallies: Tallies) -> dict[str, Any]:
        embedded, dead = tallies.get("embedded"), tallies.total(DEAD_PREFIX)
        return {"inputs": self.inputs, "embedded": embedded, "dead_letters": dead,
                "unaccounted": self.inputs - embedded - dead, "encoder": self.encoder,
                "sample_rate_hz": self.sample_rate_hz, "frame_rate_hz": self.frame_rate_hz,
                "dim": self.dim}


class EmbedBuild:
    """``build(pipeline, staging)`` for :func:`pipelines.stage.run_stage` (no closures)."""

    def __init__(self, cfg: EmbedConfig) -> None:
        self.cfg = cfg

    def __call__(self, pipeline: beam.Pipeline, staging: str) -> EmbedCounts:
        return build_embed(pipeline, self.cfg, staging)


def preflight(cfg: EmbedConfig, beam_args: list[str]) -> None:
    """Fail in the driver, before any worker starts, on what we can see from here: missing
    local Jukebox weights; no GPU for a local (DirectRunner) jukebox run."""
    from apache_beam.options.pipeline_options import StandardOptions

    from embed.registry import resolve_device

    if cfg.encoder == "jukebox" and not is_remote(cfg.checkpoint_dir):
        from embed.jukebox import resolve_checkpoint_dir

        resolve_checkpoint_dir(cfg.checkpoint_dir or None)
    runner = pipeline_options(beam_args).view_as(StandardOptions).runner or "DirectRunner"
    if runner in ("DirectRunner", "direct", "InteractiveRunner"):
        resolve_device(cfg.encoder, cfg.device)


def run(argv: list[str] | None = None) -> int:
    """``llark embed``; returns 0 on success, 1 on a config error or a failed run."""
    try:
        cfg, args = parse_stage_args(EmbedConfig, argv, "llark embed",
                                     "Embed clip windows with an audio encoder (features on "
                                     "CPU, Jukebox on GPU workers) into float16 records.")
        preflight(cfg, args.beam_args)
        run_stage(STAGE, "embedding", cfg.output, cfg, args.beam_args, EmbedBuild(cfg),
                  force=args.force, max_error_rate=args.max_error_rate,
                  model_copies=cfg.model_copies, job_file=args.job_file)
    except LlarkError as exc:
        print(f"llark embed: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Beam pickles this module's DoFns and records
    # by their module path, and worker processes cannot import "__main__".
    from pipelines.embed import run as _run

    raise SystemExit(_run())
