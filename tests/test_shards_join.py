"""The shard writer: the per-clip join and its outcomes, the Beam join transform, the written
shards (index, checksums, sizes, row groups) and that they open with pyarrow, DuckDB and
Hugging Face datasets."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llark.errors import ConfigError, ShardError
from pipelines import schema as s
from pipelines import shards as S
from pipelines.stage import with_dead_letters
from tests.shards_testdata import (
    FAST,
    annotation,
    embedding,
    embedding_counts,
    instructions,
    write_set,
)

SPEC = S.EmbeddingSpec("features-v1", 10.0, 16)


def _clip(i: int = 0, seconds: float = 1.0, split: str = "train") -> s.Clip:
    return s.Clip(id=s.clip_id("fma", f"{i:06d}", 0, seconds), dataset="fma",
                  source_id=f"{i:06d}", split=split, audio_uri=f"/data/{i}.mp3", start_s=0.0,
                  end_s=seconds, sample_rate_hz=44100, title=f"Song {i}")


def _rows(items) -> list[dict]:
    return [x.to_row() for x in items]


# --------------------------------------------------------------------------- pure join

def test_join_outcomes():
    c = _clip()
    emb, ins, ann = [embedding(c).to_row()], _rows(instructions(c)), [annotation(c.id).to_row()]
    row = S.join_clip(c.id, [c.to_row()], ann, ins, emb, SPEC, ())
    assert isinstance(row, s.TrainingRow)
    assert row.clip == c and row.annotation == annotation(c.id)
    assert [x.id for x in row.conversations] == sorted(i["id"] for i in ins)   # by id
    assert row.embedding.array().shape == (10, 16)
    no_ann = S.join_clip(c.id, [c.to_row()], [], ins, emb, SPEC, ())
    assert isinstance(no_ann, s.TrainingRow) and no_ann.annotation is None
    assert S.join_clip(c.id, [c.to_row()], ann, [], emb, SPEC, ()) == "no_instructions"
    assert S.join_clip(c.id, [c.to_row()], ann, ins, [], SPEC, ()) == "no_embedding"
    assert S.join_clip(c.id, [c.to_row()], ann, [], [], SPEC, ()) == \
        "no_embedding_no_instructions"
    assert S.join_clip(c.id, [], ann, ins, emb, SPEC, ()) == "no_clip_record"
    assert S.join_clip(c.id, [c.to_row()], ann, ins, emb, SPEC, ("test",)) == "split_excluded"


def test_join_refuses_inconsistent_inputs():
    c = _clip()
    ins = _rows(instructions(c))
    emb = embedding(c).to_row()
    with pytest.raises(ShardError, match="2 embeddings"):
        S.join_clip(c.id, [c.to_row()], [], ins, [emb, emb], SPEC, ())
    with pytest.raises(ShardError, match="2 clip records"):
        S.join_clip(c.id, [c.to_row(), c.to_row()], [], ins, [emb], SPEC, ())
    with pytest.raises(ShardError, match="embeddings index names"):
        S.join_clip(c.id, [c.to_row()], [], ins, [embedding(c, dim=8).to_row()], SPEC, ())
    with pytest.raises(ShardError, match="needs 10"):
        S.join_clip(c.id, [c.to_row()], [], ins, [embedding(c, frames=9).to_row()], SPEC, ())
    bad = dict(emb, embedding=emb["embedding"][:-2])
    with pytest.raises(ShardError, match="bytes"):
        S.join_clip(c.id, [c.to_row()], [], ins, [bad], SPEC, ())


def test_shard_of_is_stable_and_spreads():
    ids = [_clip(i).id for i in range(400)]
    shards = [S.shard_of(i, 4) for i in ids]
    assert shards == [S.shard_of(i, 4) for i in ids]
    assert S.shard_of("fma:000001:0-1000", 7) == S.shard_of("fma:000001:0-1000", 7)
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 60                                    # ~100 each


def test_config_validation():
    with pytest.raises(ConfigError, match="--embeddings is required"):
        S.ShardsConfig(clips="a", instructions="b", output="o")
    with pytest.raises(ConfigError, match="unknown"):
        S.ShardsConfig(clips="a", instructions="b", embeddings="e", output="o",
                       splits=("training",))


# --------------------------------------------------------------------------- Beam transform

def test_join_transform_with_testpipeline(tmp_path):
    a, b, c = _clip(1), _clip(2), _clip(3)
    staging = str(tmp_path / "staging")
    with BeamTestPipeline(options=PipelineOptions(FAST)) as p:
        groups = {
            "clip": p | "C" >> beam.Create([(x.id, x.to_row()) for x in (a, b, c)]),
            "annotation": p | "A" >> beam.Create([(a.id, annotation(a.id).to_row())]),
            "instructions": p | "I" >> beam.Create(
                [(x.id, r) for x in (a, b) for r in _rows(instructions(x))]),
            "embedding": p | "E" >> beam.Create(
                [(a.id, embedding(a).to_row()), (c.id, embedding(c).to_row()),
                 (b.id, embedding(b, frames=3).to_row())]),       # b: wrong window
        }
        joined = groups | beam.CoGroupByKey()
        rows = with_dead_letters(joined, "Join", S.JoinFn(SPEC, (), 3), "shards", staging)
        assert_that(rows | beam.Map(lambda kv: (kv[0], kv[1]["id"], kv[1]["annotation"] is None,
                                                len(kv[1]["conversations"]))),
                    equal_to([(S.shard_of(a.id, 3), a.id, False, 2)]))
    dead = [json.loads(line) for f in Path(staging).rglob("*.jsonl") if "dead" in str(f)
            for line in f.read_text().splitlines() if line.strip()]
    skipped = [json.loads(line) for f in Path(staging).rglob("*.jsonl") if "skipped" in str(f)
               for line in f.read_text().splitlines() if line.strip()]
    assert [(d["id"], d["error_type"]) for d in dead] == [(b.id, "ShardError")]
    assert [(k["id"], k["reason"]) for k in skipped] == [(c.id, "no_instructions")]


# --------------------------------------------------------------------------- end to end

def _inputs(tmp_path: Path, dim: int = 16, n: int = 8):
    """clips 0..n-1 (+ clip 7 is 'test'); annotations for even clips; instructions for all but
    clip 1; embeddings for all but clip 2; clip 3's embedding covers another window (dead
    letter); an orphan embedding and orphan instructions for an id no clip set holds."""
    clips = [_clip(i, split="test" if i == 7 else "train") for i in range(n)]
    orphan = _clip(99)
    clip_dir = write_set(tmp_path / "clips", "clip", _rows(clips))
    ann_dir = write_set(tmp_path / "ann", "annotated_clip",
                        [s.AnnotatedClip(c, annotation(c.id)).to_row() for c in clips[::2]])
    ins = [r for c in clips + [orphan] if c.source_id != "000001"
           for r in _rows(instructions(c, ("mir", "caption", "reasoning")))]
    ins_dir = write_set(tmp_path / "ins", "instruction", ins)
    embs = [embedding(c, dim=dim, frames=4 if c.source_id == "000003" else None, seed=k)
            for k, c in enumerate(clips + [orphan]) if c.source_id != "000002"]
    emb_dir = write_set(tmp_path / "emb", "embedding", _rows(embs),
                        counts=embedding_counts(dim=dim))
    return clips, [str(d) for d in (clip_dir, ann_dir, ins_dir, emb_dir)], embs


def _args(dirs: list[str], out: Path, *extra: str) -> list[str]:
    clip_dir, ann_dir, ins_dir, emb_dir = dirs
    return ["--clips", clip_dir, "--annotations", ann_dir, "--instructions", ins_dir,
            "--embeddings", emb_dir, "--output", str(out), *extra, *FAST]


def test_shards_run_joins_counts_and_accounts_for_every_clip(tmp_path):
    clips, dirs, embs = _inputs(tmp_path)
    out = tmp_path / "shards"
    assert S.run(_args(dirs, out)) == 0
    idx = s.verify_shards(out)
    assert idx.record == "training_row" and idx.schema_version == s.SCHEMA_VERSION
    ids = {c.id for c in clips}
    written = {r["id"] for r in pq.read_table(out).to_pylist()}
    assert written == ids - {clips[1].id, clips[2].id, clips[3].id}
    assert idx.total_rows == len(written) == idx.counts["rows"] == 5
    assert idx.skipped == {"no_clip_record": 1, "no_embedding": 1, "no_instructions": 1}
    assert idx.dead_letters == {"ShardError": 1}
    dead = [s.DeadLetter.from_json(line) for line in
            (out / s.DEAD_LETTER_DIR / "shards" / "part-00000.jsonl").read_text().splitlines()]
    assert [d.id for d in dead] == [clips[3].id] and "needs 10" in dead[0].message
    # every clip id (plus the orphan) is a row, a counted skip or a dead letter, once
    assert idx.total_rows + sum(idx.skipped.values()) + len(dead) == len(ids) + 1
    assert idx.counts["inputs_clips"] == len(ids) and idx.counts["unaccounted"] == 0
    assert idx.counts["conversations"] == sum(
        len(r["conversations"]) for r in pq.read_table(out).to_pylist())
    c = idx.counts
    assert c["rows_without_annotation"] == 2                      # clips 5 and 7
    assert c["conversations"] == 15 and c["conversations_reasoning"] == 5
    assert (c["inputs_clips"], c["inputs_annotations"], c["inputs_embeddings"]) == (8, 4, 8)
    assert (c["encoder"], c["dim"], c["frame_rate_hz"]) == ("features-v1", 16, 10.0)
    assert idx.config["target_shard_mb"] == 256 and idx.config["clips"] == dirs[0]
    # rows read back into the schema's own types, embedding stored once and intact
    by_id = {e.clip_id: e for e in embs}
    for r in pq.read_table(out).to_pylist():
        row = s.TrainingRow.from_row(r)
        np.testing.assert_array_equal(row.embedding.array(), by_id[row.id].array())
        assert len(row.conversations) == 3 and row.clip.title.startswith("Song")
        assert (row.annotation is None) == (int(row.clip.source_id) % 2 == 1)
    # splits: only the test clip
    only_test = tmp_path / "test-shards"
    assert S.run(_args(dirs, only_test, "--splits", "test")) == 0
    t = s.read_index(only_test)
    assert t.total_rows == 1 and t.skipped["split_excluded"] == 7 and not t.dead_letters


def test_shards_sizes_row_groups_and_checksums(tmp_path):
    clips, dirs, _ = _inputs(tmp_path, dim=4096, n=80)            # ~80 KB per embedding
    out = tmp_path / "shards"
    assert S.run(_args(dirs, out, "--target-shard-mb", "2", "--row-group-mb", "1")) == 0
    idx = s.verify_shards(out)
    assert len(idx.shards) == idx.counts["shards"] >= 2
    assert sum(e.rows for e in idx.shards) == idx.total_rows == 77
    for entry in idx.shards:
        assert (1 << 20) < entry.bytes < 4 << 20                    # near the 2 MB target
        meta = pq.ParquetFile(out / entry.path).metadata
        assert meta.num_rows == entry.rows
        groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
        assert max(g.total_byte_size for g in groups) < (1 << 20) + 100_000   # 1 MB + 1 row
        emb_col = [g.column(meta.schema.names.index("embedding")) for g in groups]
        assert all(col.compression == "UNCOMPRESSED" and not col.is_stats_set for col in emb_col)
    assert idx.counts["row_groups"] > len(idx.shards)
    # a flipped byte is caught by the checksums
    part = out / idx.shards[0].path
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="sha256"):
        s.verify_shards(out)


def test_shards_open_with_pyarrow_duckdb_and_datasets(tmp_path, monkeypatch):
    duckdb = pytest.importorskip("duckdb")
    datasets = pytest.importorskip("datasets")
    _, dirs, _ = _inputs(tmp_path)
    out = tmp_path / "shards"
    assert S.run(_args(dirs, out)) == 0
    parts = sorted(str(p) for p in out.glob("part-*.parquet"))
    table = pq.read_table(parts)
    assert table.num_rows == 5 and table.schema.equals(s.TRAINING_SCHEMA, check_metadata=False)
    con = duckdb.connect()
    n, convs, frames = con.execute(
        f"SELECT count(*), sum(len(conversations)), min(n_frames) "
        f"FROM read_parquet({parts!r})").fetchone()
    assert (n, convs, frames) == (5, 15, 10)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = datasets.Dataset.from_parquet(parts, cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 5
    first = ds[0]
    emb = np.frombuffer(first["embedding"], np.float16).reshape(first["n_frames"], first["dim"])
    assert emb.shape == (10, 16) and len(first["conversations"]) == 3
