"""Inputs for the embed and shards tests, written with pipelines.schema directly (the ingest,
annotate and instruct stages are tested on their own): short synthetic audio files, clip
records, annotated clips, instructions, and complete record sets with an ``_index.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import soundfile as sf

from pipelines import schema as s

FAST = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
SR = 22050


def write_set(folder: Path, record: str, rows: list[dict], stage: str = "test",
              counts: dict[str, Any] | None = None) -> Path:
    """A complete record set: ``part-00000.parquet`` + ``_index.json`` (as a stage commits)."""
    s.write_record_set(folder, rows, record, stage, counts=counts)
    return folder


def tone(seconds: float, freq: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.05
    return (0.4 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def make_clips(folder: Path, n: int, seconds: float = 1.0, track_seconds: float = 1.2,
               split: str = "train", corrupt: Iterable[int] = ()) -> list[s.Clip]:
    """``n`` one-window tracks as wav files; the indices in ``corrupt`` get garbage bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    bad = set(corrupt)
    for i in range(n):
        path = folder / f"t{i}.wav"
        if i in bad:
            path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
        else:
            sf.write(path, tone(track_seconds, 220.0 * (1 + i % 5), seed=i), SR)
        clips.append(s.Clip(id=s.clip_id("folder", f"t{i}", 0.0, seconds), dataset="folder",
                            source_id=f"t{i}", split=split, audio_uri=str(path), start_s=0.0,
                            end_s=seconds, sample_rate_hz=SR, track_duration_s=track_seconds,
                            title=f"Track {i}", genres=("test",)))
    return clips


def annotation(clip_id: str) -> s.Annotation:
    return s.Annotation(clip_id, "consensus", 120.0, 0.9, (s.Beat(0.25, 1), s.Beat(0.75, 2)),
                        (0.25,), 2, 0.8, "A minor", 0.7,
                        (s.ChordSegment(0.0, 1.0, "A:min"),), 0.6)


def instructions(clip: s.Clip, families: tuple[str, ...] = ("mir", "caption")
                 ) -> list[s.Instruction]:
    return [s.Instruction(f"{clip.id}:{fam}:{k}", clip.id, clip.dataset, fam,
                          (s.Turn("user", f"Question {k} about {clip.title}?"),
                           s.Turn("assistant", f"Answer {k}: A minor at 120 BPM.")),
                          "template", "", "v1") for k, fam in enumerate(families)]


def embedding(clip: s.Clip, dim: int = 16, encoder: str = "features-v1",
              frames: int | None = None, seed: int = 0) -> s.Embedding:
    n = frames if frames is not None else int(np.ceil(clip.duration_s * 10 - 1e-6))
    arr = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return s.Embedding.from_array(clip.id, clip.dataset, encoder, 10.0, arr)


def embedding_counts(encoder: str = "features-v1", dim: int = 16) -> dict[str, Any]:
    return {"encoder": encoder, "frame_rate_hz": 10.0, "dim": dim}
