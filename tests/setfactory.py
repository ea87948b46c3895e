"""Write small, complete shard sets (Parquet + ``_index.json``) from records, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines import schema as s


def write_set(folder: Path, records: list[Any], record: str, stage: str,
              dead_letters: list[s.DeadLetter] = (), counts: dict | None = None,
              skipped: dict | None = None) -> s.ShardIndex:
    """A complete set of ``records`` with its dead-letter file, as a stage commits one."""
    dead: dict[str, int] = {}
    if dead_letters:
        dl = folder / s.DEAD_LETTER_DIR / stage
        dl.mkdir(parents=True, exist_ok=True)
        (dl / "part-00000.jsonl").write_text("\n".join(d.to_json() for d in dead_letters) + "\n")
        for d in dead_letters:
            dead[d.error_type] = dead.get(d.error_type, 0) + 1
    return s.write_record_set(folder, [r.to_row() for r in records], record, stage,
                              counts=counts, dead_letters=dead, skipped=skipped)


def clip(i: int, dataset: str = "fma", seconds: float = 10.0) -> s.Clip:
    sid = f"{i:06d}"
    return s.Clip(id=s.clip_id(dataset, sid, 0, seconds), dataset=dataset, source_id=sid,
                  split="train", audio_uri=f"/data/{sid}.mp3", start_s=0.0, end_s=seconds,
                  sample_rate_hz=44100, genres=("Rock",), instruments=("drums", "bass"))


def annotation(c: s.Clip, key: str = "A minor", tempo: float = 120.0, meter: int = 4) -> s.Annotation:
    beat = 60.0 / tempo
    beats = tuple(s.Beat(round(i * beat, 3), i % meter + 1) for i in range(int(c.duration_s / beat)))
    return s.Annotation(clip_id=c.id, backend="consensus", tempo_bpm=tempo, tempo_confidence=0.9,
                        beats=beats, downbeats_s=tuple(b.time_s for b in beats if b.beat_number == 1),
                        meter=meter, meter_confidence=0.8, key=key, key_confidence=0.7,
                        chords=(s.ChordSegment(0.0, 4.0, "A:min"), s.ChordSegment(4.0, 8.0, "F:maj")),
                        chords_confidence=0.6)


def instruction(c: s.Clip, family: str, n: int = 0, q: str = "What is the key?",
                a: str = "It is in A minor.") -> s.Instruction:
    return s.Instruction(id=f"{c.id}:{family}:{n}", clip_id=c.id, dataset=c.dataset, family=family,
                         turns=(s.Turn("user", q), s.Turn("assistant", a)), backend="template",
                         model="", prompt_version=f"{family}-test")


def embedding(c: s.Clip, dim: int = 8, seed: int = 0) -> s.Embedding:
    frames = np.random.default_rng(seed).standard_normal((int(c.duration_s * 10), dim))
    return s.Embedding.from_array(c.id, c.dataset, "features-v1", 10.0, frames.astype(np.float32))
