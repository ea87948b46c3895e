"""Small training shard sets for the model tests and benchmarks, written with pyarrow and
``pipelines.schema`` only (the same record types and index the shard stage writes).

Every clip gets a random float16 embedding and up to three conversations (one per family) whose
answers are made from its labels (key, tempo, genre, instruments), so evaluation can be tested
against them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pipelines.schema import (Annotation, Beat, ChordSegment, Clip, Embedding, Instruction,
                              ShardIndex, TrainingRow, Turn, clip_id, write_record_set)

KEYS = ("C major", "A minor", "F# minor", "Bb major", "E minor", "D major")
GENRES = ("rock", "jazz", "classical", "hip hop", "electronic")
INSTRUMENTS = ("piano", "guitar", "drums", "violin", "bass", "flute")


def make_row(i: int, n_frames: int = 8, dim: int = 16,
             families: Sequence[str] = ("mir", "caption", "reasoning"), split: str = "train",
             dataset: str = "folder", seed: int = 0, multi_turn: bool = False,
             encoder: str = "features") -> TrainingRow:
    """Clip ``i`` with labels drawn from ``seed`` and one conversation per family."""
    rng = np.random.default_rng([seed, i])
    key = KEYS[int(rng.integers(len(KEYS)))]
    tempo = float(rng.integers(60, 180))
    genre = GENRES[int(rng.integers(len(GENRES)))]
    instruments = tuple(sorted(rng.choice(INSTRUMENTS, size=2, replace=False).tolist()))
    source = f"track{i:04d}"
    cid = clip_id(dataset, source, 0.0, 23.777)
    clip = Clip(id=cid, dataset=dataset, source_id=source, split=split,
                audio_uri=f"/data/{source}.wav", start_s=0.0, end_s=23.777, sample_rate_hz=44100,
                genres=(genre,), instruments=instruments, tags=(genre,) + instruments)
    beats = tuple(Beat(round(k * 60 / tempo, 3), k % 4 + 1) for k in range(4))
    ann = Annotation(clip_id=cid, backend="consensus", tempo_bpm=tempo, tempo_confidence=0.9,
                     beats=beats, downbeats_s=(beats[0].time_s,), meter=4, meter_confidence=0.8,
                     key=key, key_confidence=0.7,
                     chords=(ChordSegment(0.0, 23.777, "C:maj"),), chords_confidence=0.5)
    convs = []
    answers = {
        "mir": ("What is the key of this song?", f"The key is {key}."),
        "caption": ("Describe this clip.", f"A {genre} piece with {' and '.join(instruments)} "
                                           f"at {tempo:.0f} BPM."),
        "reasoning": ("What could this music accompany?",
                      f"Its {genre} style in {key} suits a short film scene."),
    }
    for n, family in enumerate(families):
        q, a = answers[family]
        turns = [Turn("user", q), Turn("assistant", a)]
        if multi_turn and family == "mir":
            turns += [Turn("user", "And the tempo?"), Turn("assistant", f"About {tempo:.0f} BPM.")]
        convs.append(Instruction(id=f"{cid}:{family}:{n}", clip_id=cid, dataset=dataset,
                                 family=family, turns=tuple(turns), backend="template",
                                 model="", prompt_version="test-1"))
    frames = rng.standard_normal((n_frames, dim)).astype(np.float16)
    emb = Embedding.from_array(cid, dataset, encoder, 10.0, frames)
    return TrainingRow(clip, ann, tuple(convs), emb)


def write_shard_set(folder: str | Path, rows: Sequence[TrainingRow], rows_per_shard: int = 16,
                    row_group_size: int = 4) -> ShardIndex:
    """``part-NNNNN.parquet`` files of ``rows`` plus an ``_index.json`` written last."""
    return write_record_set(folder, [r.to_row() for r in rows], "training_row", "shards",
                            rows_per_shard=rows_per_shard, row_group_size=row_group_size,
                            config={"writer": "tests/shard_factory.py"})


def make_shard_set(folder: str | Path, n_rows: int = 24, n_frames: int = 8, dim: int = 16,
                   rows_per_shard: int = 12, row_group_size: int = 4, seed: int = 0,
                   splits: Sequence[str] = ("train",), vary_frames: bool = False,
                   multi_turn: bool = False, encoder: str = "features") -> ShardIndex:
    """A shard set of ``n_rows`` clips (splits cycle through ``splits``)."""
    rows = [make_row(i, n_frames=n_frames - (i % 3 if vary_frames else 0), dim=dim,
                     split=splits[i % len(splits)], seed=seed, multi_turn=multi_turn,
                     encoder=encoder)
            for i in range(n_rows)]
    return write_shard_set(folder, rows, rows_per_shard, row_group_size)
