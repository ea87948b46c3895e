"""Record schema: round trips through Arrow/Parquet, IDs, embedding bytes, the index."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from llark.errors import ShardError
from pipelines import schema as s


def make_clip(**over) -> s.Clip:
    base = dict(
        id=s.clip_id("musiccaps", "-0Gj8-vB1q4", 30.0, 40.0), dataset="musiccaps",
        source_id="-0Gj8-vB1q4", split="eval", audio_uri="/data/audio/-0Gj8-vB1q4.wav",
        start_s=30.0, end_s=40.0, sample_rate_hz=44100, channels=2, track_duration_s=60.0,
        tags=("rock",), genres=("Rock", "Pop"), caption='A "loud", fast\nsong, with drums.',
        aspects=("drums", "men's choir"), instruments=("drums", "bass"),
        notes=(s.NoteEvent(0.5, 1.0, 1, 60, 1.0, 2.0, "Quarter"),), rms_dbfs=-12.5)
    base.update(over)
    return s.Clip(**base)


def make_annotation(cid: str) -> s.Annotation:
    return s.Annotation(
        clip_id=cid, backend="consensus", tempo_bpm=120.0, tempo_confidence=0.9,
        beats=(s.Beat(0.5, 1), s.Beat(1.0, 2)), downbeats_s=(0.5,), meter=4, meter_confidence=0.8,
        key="F# minor", key_confidence=0.7,
        chords=(s.ChordSegment(0.0, 2.0, "F#:min"), s.ChordSegment(2.0, 4.0, "N")),
        chords_confidence=0.6, backends_json='{"madmom": {"tempo_bpm": 60.0}}')


def test_clip_ids_never_split_on_dash():
    cid = s.clip_id("magnatagatune", "f-american_bach-01-bwv54", 0.0, 23.777)
    assert cid == "magnatagatune:f-american_bach-01-bwv54:0-23777"
    assert s.parse_clip_id(cid) == ("magnatagatune", "f-american_bach-01-bwv54", 0.0, 23.777)
    assert s.parse_clip_id(s.clip_id("musiccaps", "-abc-d", 1.5, 11.5))[1] == "-abc-d"
    with pytest.raises(ValueError):
        s.track_id("fma", "a:b")
    with pytest.raises(ValueError):
        s.parse_clip_id("fma:000002")


def test_clip_validation():
    with pytest.raises(ValueError, match="end_s"):
        make_clip(start_s=5.0, end_s=5.0)
    with pytest.raises(ValueError, match="split"):
        make_clip(split="training")


def _roundtrip(rows, schema, tmp_path):
    table = s.to_table(rows, schema)
    pq.write_table(table, tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet")
    assert back.schema.equals(schema, check_metadata=False)
    return back.to_pylist()


def test_every_record_round_trips_through_parquet(tmp_path):
    clip = make_clip()
    ann = make_annotation(clip.id)
    inst = s.Instruction(id=f"{clip.id}:mir:0", clip_id=clip.id, dataset="musiccaps", family="mir",
                         turns=(s.Turn("user", "What key?"), s.Turn("assistant", "F# minor.")),
                         backend="template", model="", prompt_version="mir-v1",
                         validation_notes=("ok",))
    frames = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    emb = s.Embedding.from_array(clip.id, "musiccaps", "features-v1", 10.0, frames)
    cases = [
        (clip, s.CLIP_SCHEMA, s.Clip),
        (s.AnnotatedClip(clip, ann), s.ANNOTATED_CLIP_SCHEMA, s.AnnotatedClip),
        (inst, s.INSTRUCTION_SCHEMA, s.Instruction),
        (emb, s.EMBEDDING_SCHEMA, s.Embedding),
        (s.TrainingRow(clip, ann, (inst,), emb), s.TRAINING_SCHEMA, s.TrainingRow),
    ]
    for record, schema, cls in cases:
        (row,) = _roundtrip([record.to_row()], schema, tmp_path)
        assert cls.from_row(row) == record, cls.__name__
    np.testing.assert_allclose(emb.array(), frames, atol=2e-3)
    assert emb.array().dtype == np.float16


def test_training_row_without_annotation(tmp_path):
    clip = make_clip()
    emb = s.Embedding.from_array(clip.id, "musiccaps", "f", 10.0, np.zeros((2, 3), np.float32))
    inst = s.Instruction(f"{clip.id}:caption:0", clip.id, "musiccaps", "caption",
                         (s.Turn("user", "Describe."), s.Turn("assistant", "Drums.")),
                         "template", "", "cap-v1")
    row = s.TrainingRow(clip, None, (inst,), emb)
    (back,) = _roundtrip([row.to_row()], s.TRAINING_SCHEMA, tmp_path)
    assert s.TrainingRow.from_row(back) == row


def test_to_table_rejects_unknown_fields():
    row = make_clip().to_row()
    row["tempo"] = 120
    with pytest.raises(ValueError, match="unknown fields"):
        s.to_table([row], s.CLIP_SCHEMA)


def test_decode_embedding_checks_bytes():
    data = s.encode_embedding(np.ones((4, 3), np.float32))
    with pytest.raises(ShardError, match="needs 24"):
        s.decode_embedding(data[:-2] + b"\x00\x00\x00\x00", 4, 3)
    with pytest.raises(ValueError):
        s.encode_embedding(np.ones(3, np.float32))


def test_index_round_trip_and_verification(tmp_path):
    table = s.to_table([make_clip().to_row()], s.CLIP_SCHEMA)
    pq.write_table(table, tmp_path / "part-00000.parquet")
    entry = s.ShardEntry("part-00000.parquet", 1, (tmp_path / "part-00000.parquet").stat().st_size,
                         s.sha256_file(tmp_path / "part-00000.parquet"))
    index = s.ShardIndex(s.SCHEMA_VERSION, "clip", "ingest", (entry,), 1,
                         dead_letters={"AudioNotFoundError": 2}, config={"clip_seconds": 23.777})
    (tmp_path / s.INDEX_FILE).write_text(index.to_json())
    assert s.read_index(tmp_path, "clip") == index
    assert s.verify_shards(tmp_path) == index
    with pytest.raises(ShardError, match="expected 'embedding'"):
        s.read_index(tmp_path, "embedding")
    # truncate the shard: refused by size; same size but other bytes: refused by checksum
    data = (tmp_path / "part-00000.parquet").read_bytes()
    (tmp_path / "part-00000.parquet").write_bytes(data[:-10])
    with pytest.raises(ShardError, match="truncated"):
        s.verify_shards(tmp_path)
    (tmp_path / "part-00000.parquet").write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(ShardError, match="sha256"):
        s.verify_shards(tmp_path)


def test_index_refuses_other_version_and_missing(tmp_path):
    with pytest.raises(ShardError, match="no _index.json"):
        s.read_index(tmp_path)
    idx = s.ShardIndex("0.9", "clip", "ingest", (), 0)
    (tmp_path / s.INDEX_FILE).write_text(idx.to_json())
    with pytest.raises(ShardError, match="schema version 0.9"):
        s.read_index(tmp_path)


def test_shards_open_with_duckdb_and_pandas(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    rows = [make_clip(id=s.clip_id("fma", f"{i:06d}", 0, 10), dataset="fma", source_id=f"{i:06d}",
                      split="train", start_s=0, end_s=10).to_row() for i in range(3)]
    pq.write_table(s.to_table(rows, s.CLIP_SCHEMA), tmp_path / "part-00000.parquet")
    ((n,),) = duckdb.sql(
        f"select count(*) from '{tmp_path}/part-*.parquet' where dataset='fma'").fetchall()
    assert n == 3
    import pandas as pd
    df = pd.read_parquet(tmp_path / "part-00000.parquet")
    assert list(df["genres"].iloc[0]) == ["Rock", "Pop"]


def test_track_metadata_fields_stay_in_step_across_layers():
    """The clip's metadata fields are declared by the schema, the readers' TrackTask and
    instruct's ClipFacts (each layer's own typed view); a field added to one must reach all."""
    import dataclasses

    from annotate.instruct.facts import ClipFacts
    from pipelines.datasets.common import TrackTask

    clip_fields = {f.name for f in dataclasses.fields(s.Clip)}
    task_fields = {f.name for f in dataclasses.fields(TrackTask)}
    facts_fields = {f.name for f in dataclasses.fields(ClipFacts)}
    meta = set(s.CLIP_METADATA_FIELDS)
    assert meta <= clip_fields and meta <= task_fields and meta <= facts_fields
    # nothing metadata-like in Clip that the metadata list forgets
    structural = {"id", "dataset", "source_id", "split", "audio_uri", "start_s", "end_s",
                  "sample_rate_hz", "channels", "track_duration_s", "notes", "rms_dbfs"}
    assert clip_fields - structural == meta
