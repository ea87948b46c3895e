"""model/data.py: shard-set checks, family sampling, rank/worker split, exact resume, collate."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from llark.errors import ShardError
from model.data import (ShardStream, StreamConfig, StreamState, choose_conversation, collate,
                        make_loader, open_shard_set)
from model.masking import IGNORE_INDEX
from model.modeling import tiny_tokenizer
from pipelines.schema import INDEX_FILE
from tests.shard_factory import make_row, make_shard_set, write_shard_set


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    make_shard_set(folder, n_rows=30, n_frames=6, dim=8, rows_per_shard=10, row_group_size=3,
                   vary_frames=True)
    return folder


def _stream(shard_set, tok, **kw) -> ShardStream:
    resume = kw.pop("resume", None)
    return ShardStream(shard_set, tok, StreamConfig(**kw), resume=resume)


# ---------------------------------------------------------------- refusing bad shard sets

def test_open_reads_layout(shards):
    s = open_shard_set(shards)
    assert s.total_rows == 30 and len(s.paths) == 3
    assert s.row_groups[0] == (3, 3, 3, 1)
    assert (s.audio_dim, s.encoder, s.frame_rate_hz) == (8, "features", 10.0)


def test_missing_index_refused(tmp_path):
    make_shard_set(tmp_path, n_rows=4)
    (tmp_path / INDEX_FILE).unlink()
    with pytest.raises(ShardError, match="no _index.json"):
        open_shard_set(tmp_path)


def test_other_schema_version_refused(tmp_path):
    make_shard_set(tmp_path, n_rows=4)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["schema_version"] = "0.9"
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ShardError, match="schema version 0.9"):
        open_shard_set(tmp_path)


def test_other_record_refused(tmp_path):
    make_shard_set(tmp_path, n_rows=4)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["record"] = "embedding"
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ShardError, match="expected 'training_row'"):
        open_shard_set(tmp_path)


def test_truncated_shard_refused_with_clear_message(tmp_path):
    make_shard_set(tmp_path, n_rows=8, rows_per_shard=4)
    part = tmp_path / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:-100])
    with pytest.raises(ShardError, match=r"part-00001.parquet: \d+ bytes, index says \d+ "
                                         r"\(truncated or replaced\)"):
        open_shard_set(tmp_path)
    with pytest.raises(ShardError, match="truncated"):       # size is checked even without sha
        open_shard_set(tmp_path, verify_checksums=False)


def test_corrupt_same_size_shard_refused_by_checksum(tmp_path):
    make_shard_set(tmp_path, n_rows=8, rows_per_shard=4)
    part = tmp_path / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="sha256 .* does not match the index"):
        open_shard_set(tmp_path)


# ---------------------------------------------------------------- sampling

def test_family_weights_and_renormalisation():
    rng = np.random.default_rng(0)
    convs = [{"family": f, "id": f} for f in ("mir", "caption", "reasoning")]
    weights = {"mir": 0.3, "caption": 0.15, "reasoning": 0.55}
    n = 20000
    counts = Counter(choose_conversation(convs, weights, rng)["family"] for _ in range(n))
    for fam, w in weights.items():
        assert abs(counts[fam] / n - w) < 0.015, counts
    # caption absent: 0.3 / 0.85 and 0.55 / 0.85
    no_caption = [c for c in convs if c["family"] != "caption"]
    counts = Counter(choose_conversation(no_caption, weights, rng)["family"] for _ in range(n))
    assert abs(counts["mir"] / n - 0.3 / 0.85) < 0.015, counts
    assert counts["caption"] == 0
    # a family with weight 0 is never drawn; a clip with only such families yields nothing
    assert choose_conversation([convs[1]], {**weights, "caption": 0.0}, rng) is None


def test_one_pass_reads_every_row_once_across_ranks_and_workers(shards, tok):
    """2 ranks x 2 DataLoader workers: each clip appears exactly once in one pass."""
    shard_set = open_shard_set(shards)
    seen = []
    for rank in range(2):
        stream = _stream(shard_set, tok, rank=rank, world_size=2, num_workers=2, loop=False,
                         shuffle_buffer=4)
        loader = make_loader(stream, batch_size=3, pad_id=tok.pad_token_id)
        seen += [c for batch in loader for c in batch.clip_ids]
    assert len(seen) == 30 and len(set(seen)) == 30


def test_fewer_row_groups_than_workers_strides_rows(tmp_path, tok):
    make_shard_set(tmp_path, n_rows=8, rows_per_shard=8, row_group_size=8)   # one row group
    shard_set = open_shard_set(tmp_path)
    seen = []
    for rank in range(3):
        stream = _stream(shard_set, tok, rank=rank, world_size=3, loop=False, shuffle_buffer=2)
        seen += [s.clip_id for s in stream]
    assert sorted(seen) == sorted({s for s in seen}) and len(seen) == 8


def test_split_filter_and_empty_worker_error(tmp_path, tok):
    make_shard_set(tmp_path, n_rows=12, splits=("train", "test", "train"))
    shard_set = open_shard_set(tmp_path)
    samples = list(_stream(shard_set, tok, splits=("test",), loop=False))
    assert len(samples) == 4
    # the 8 rows of other splits are counted, not silently dropped
    assert samples[-1].position["skipped"] == {"split_not_selected": 8}
    stream = _stream(shard_set, tok, splits=("validation",), loop=True)
    with pytest.raises(ShardError, match="found no usable row in a whole epoch"):
        next(iter(stream))


def test_sample_labels_and_audio(shards, tok):
    shard_set = open_shard_set(shards)
    s = next(iter(_stream(shard_set, tok, shuffle_buffer=0)))
    audio_id = tok.convert_tokens_to_ids("<audio>")
    assert s.input_ids.count(audio_id) == len(s.audio)
    assert s.audio.dtype == np.float16 and s.audio.shape[1] == 8
    supervised = [t for t in s.labels if t != IGNORE_INDEX]
    assert tok.decode(supervised).endswith("</s>")


def test_epochs_are_reshuffled(shards, tok):
    shard_set = open_shard_set(shards)
    it = iter(_stream(shard_set, tok, shuffle_buffer=4))
    first = [next(it).clip_id for _ in range(30)]
    second = [next(it).clip_id for _ in range(30)]
    assert first != second and sorted(first) != first


@pytest.mark.parametrize("workers,cut", [(0, 7), (2, 5), (2, 6)])
def test_restored_position_continues_exactly(shards, tok, workers, cut):
    """Batches after a saved position equal those of an uninterrupted stream (no replay)."""
    shard_set = open_shard_set(shards)
    cfg = dict(num_workers=workers, shuffle_buffer=5, seed=3)

    def batches(resume=None, n=14):
        loader = make_loader(_stream(shard_set, tok, resume=resume, **cfg), 2, tok.pad_token_id)
        out, it = [], iter(loader)
        for _ in range(n):
            out.append(next(it))
        del it
        return out

    full = batches()
    state = StreamState(max(workers, 1))
    for b in full[:cut]:
        state.update(b.worker, b.position)
    saved = StreamState.from_dict(json.loads(json.dumps(state.to_dict())))  # via JSON, as saved
    resumed = batches(saved, n=len(full) - cut)
    for a, b in zip(full[cut:], resumed):
        assert a.conversation_ids == b.conversation_ids
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.audio, b.audio)


def test_resume_with_other_worker_count_refused(shards, tok):
    shard_set = open_shard_set(shards)
    with pytest.raises(ShardError, match="saved with 2 worker"):
        _stream(shard_set, tok, num_workers=1, resume=StreamState(2))


def test_collate_pads_text_and_audio(shards, tok):
    shard_set = open_shard_set(shards)
    it = iter(_stream(shard_set, tok, shuffle_buffer=0))
    samples = [next(it) for _ in range(3)]
    lengths = [len(s.input_ids) for s in samples]
    frames = [len(s.audio) for s in samples]
    assert len(set(frames)) > 1                        # vary_frames: 6, 5, 4 frames
    for side in ("right", "left"):
        b = collate(samples, tok.pad_token_id, padding_side=side)
        assert b.input_ids.shape == (3, max(lengths)) == b.labels.shape
        assert b.audio.shape == (3, max(frames), 8)
        assert b.audio_lengths.tolist() == frames
        assert b.attention_mask.sum(1).tolist() == lengths
        for i, s in enumerate(samples):
            row = b.input_ids[i][b.attention_mask[i].bool()].tolist()
            assert row == s.input_ids
            assert torch.all(b.audio[i, frames[i]:] == 0)
        pad_col = 0 if side == "left" else -1
        short = lengths.index(min(lengths))
        if min(lengths) < max(lengths):
            assert b.input_ids[short, pad_col] == tok.pad_token_id
            assert b.labels[short, pad_col] == IGNORE_INDEX


def test_rows_without_weighted_conversations_are_skipped_and_counted(tmp_path, tok):
    rows = [make_row(i, families=("caption",)) for i in range(3)] + [make_row(3)]
    write_shard_set(tmp_path, rows)
    shard_set = open_shard_set(tmp_path)
    weights = {"mir": 1.0, "caption": 0.0, "reasoning": 1.0}
    samples = list(_stream(shard_set, tok, family_weights=weights, loop=False, shuffle_buffer=0))
    assert [s.clip_id for s in samples] == [rows[3].id]
    assert samples[-1].position["skipped"] == {"no_conversation_in_weighted_families": 3}


def test_shards_open_with_plain_pyarrow(shards):
    table = pq.read_table(shards / "part-00000.parquet", columns=["id", "n_frames"])
    assert table.num_rows == 10


# ---------------------------------------------------------------- zero-copy reading, bytes

def test_samples_view_the_arrow_buffers_and_match_the_stored_bytes(shards, tok):
    """No copy between Arrow and the sample: the frames are a read-only view (NumPy over the
    row group's Arrow buffer), equal to the stored bytes."""
    from pipelines.schema import decode_embedding

    shard_set = open_shard_set(shards)
    stored = {}
    for path in shard_set.paths:
        for r in pq.read_table(path, columns=["id", "n_frames", "dim", "embedding"]).to_pylist():
            stored[r["id"]] = decode_embedding(r["embedding"], r["n_frames"], r["dim"])
    samples = list(_stream(shard_set, tok, shuffle_buffer=0, loop=False))
    assert len(samples) == 30
    for s in samples:
        root = s.audio
        while isinstance(root, np.ndarray):
            root = root.base
        assert isinstance(root, pa.Buffer) and not s.audio.flags.writeable
        np.testing.assert_array_equal(s.audio, stored[s.clip_id])
    # rows that outlive their row group in the shuffle buffer are copied out; values agree
    for s in _stream(shard_set, tok, shuffle_buffer=8, loop=False):
        np.testing.assert_array_equal(s.audio, stored[s.clip_id])


def test_shuffle_buffer_is_bounded_in_bytes(shards, tok):
    """Rows are 4-6 frames x 8 dims x 2 B = 64-96 B; a 200-byte budget holds at most 3 rows
    whatever the row limit, a large budget fills the row limit."""
    shard_set = open_shard_set(shards)
    small = [len(s.position["buffer"]) for s in
             _stream(shard_set, tok, shuffle_buffer=1000, shuffle_buffer_bytes=200, loop=False)]
    big = [len(s.position["buffer"]) for s in
           _stream(shard_set, tok, shuffle_buffer=10, shuffle_buffer_bytes=1 << 20, loop=False)]
    assert max(small) == 2 or max(small) == 3, small     # after the sample was taken
    assert max(big) == 9
    # the budget is the rank's: 2 workers get half of it each
    two = _stream(shard_set, tok, shuffle_buffer=1000, shuffle_buffer_bytes=200, num_workers=2)
    assert two.buffer_bytes == 100


def test_a_samples_position_is_a_snapshot_that_later_samples_do_not_change(shards, tok):
    """The position stamped on a sample is a shallow copy of the live state: reading later
    samples (buffer pops and pushes, RNG draws, skips) leaves it as it was, and it restores."""
    shard_set = open_shard_set(shards)
    it = iter(_stream(shard_set, tok, shuffle_buffer=5, seed=1))
    first = [next(it) for _ in range(4)]
    frozen = [json.loads(json.dumps(s.position)) for s in first]
    later = [next(it) for _ in range(20)]
    assert [json.loads(json.dumps(s.position)) for s in first] == frozen
    assert len({json.dumps(s.position) for s in first + later}) == 24      # all different
    assert [p["samples"] for p in frozen] == [1, 2, 3, 4] and len(frozen[-1]["buffer"]) == 4
    # restoring from the 4th sample's position continues with the 5th sample onwards
    state = StreamState(1)
    state.update(0, first[-1].position)
    resumed = iter(_stream(shard_set, tok, shuffle_buffer=5, seed=1,
                           resume=StreamState.from_dict(json.loads(json.dumps(state.to_dict())))))
    assert [next(resumed).conversation_id for _ in range(20)] == \
        [s.conversation_id for s in later]


def test_collate_zeroes_the_padding_of_reused_pool_memory(shards, tok):
    """The batch's audio comes from Arrow's pool, whose memory is reused dirty: every padded
    frame must still be zero and every row equal to its sample."""
    shard_set = open_shard_set(shards)
    it = iter(_stream(shard_set, tok, shuffle_buffer=0))
    samples = [next(it) for _ in range(3)]
    frames = [len(s.audio) for s in samples]
    assert len(set(frames)) > 1
    for _ in range(5):
        dirty = pa.allocate_buffer(3 * max(frames) * 8 * 2)
        np.frombuffer(dirty, dtype=np.uint8)[:] = 0xFF               # NaN bit patterns in f16
        del dirty
        b = collate(samples, tok.pad_token_id)
        for i, s in enumerate(samples):
            assert torch.all(b.audio[i, frames[i]:] == 0)
            np.testing.assert_array_equal(b.audio[i, :frames[i]].numpy(), s.audio)


@pytest.mark.parametrize("n_rows,workers", [(16, 0), (30, 0), (16, 2)])
def test_every_interruption_point_resumes_exactly(tmp_path, tok, n_rows, workers):
    """Cut an uninterrupted stream after each of its batches (over two epochs) and restore: the
    restored stream yields the rest exactly. Cuts right after an epoch's last row (seed 3, a
    5-row buffer; 16 rows: after batches 6 and 14, 30 rows: after batch 13) once failed with
    "found no usable row in a whole epoch"."""
    make_shard_set(tmp_path, n_rows=n_rows, n_frames=3, dim=8, rows_per_shard=10,
                   row_group_size=3)
    shard_set = open_shard_set(tmp_path)
    cfg = dict(seed=3, shuffle_buffer=5, num_workers=workers, max_length=1024)

    def batches(resume=None, n=n_rows + 1):
        loader = make_loader(_stream(shard_set, tok, resume=resume, **cfg), 2, tok.pad_token_id)
        it = iter(loader)
        out = [next(it) for _ in range(n)]
        del it
        return out

    full = batches()
    # more than two epochs: the cuts include every epoch end of the first two epochs
    assert sum(len(b) for b in full) > 2 * n_rows
    for cut in range(1, len(full)):
        state = StreamState(max(workers, 1))
        for b in full[:cut]:
            state.update(b.worker, b.position)
        saved = StreamState.from_dict(json.loads(json.dumps(state.to_dict())))
        resumed = batches(saved, n=len(full) - cut)
        assert [b.conversation_ids for b in resumed] == \
            [b.conversation_ids for b in full[cut:]], cut
        assert all(torch.equal(a.audio, b.audio) for a, b in zip(full[cut:], resumed)), cut
