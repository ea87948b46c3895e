"""The trainer's reader on a bucket: a shard set on ``gs://``/``s3://`` opens and streams like a
local one, row group by row group through range requests (the proxy's log shows no
whole-object download)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("google.cloud.storage")

from llark import storage  # noqa: E402
from llark.errors import ShardError  # noqa: E402
from model.data import ShardStream, StreamConfig, make_loader, open_shard_set  # noqa: E402
from model.modeling import tiny_tokenizer  # noqa: E402
from pipelines.schema import INDEX_FILE  # noqa: E402
from tests.object_stores import RecordingProxy  # noqa: E402
from tests.shard_factory import make_shard_set  # noqa: E402


def _ids(shard_set, tok) -> list[str]:
    stream = ShardStream(shard_set, tok, StreamConfig(loop=False, shuffle_buffer=1, num_workers=0))
    return [c for batch in make_loader(stream, batch_size=4, pad_id=tok.pad_token_id)
            for c in batch.clip_ids]


def test_remote_shard_set_streams_with_range_reads(object_store, emulator_log_dir, gcs_server,
                                                   s3_server, monkeypatch, tmp_path):
    local = tmp_path / "shards"
    # ~120 KB per shard: larger than the 64 KB a Parquet reader fetches for the footer
    make_shard_set(local, n_rows=24, n_frames=40, dim=128, rows_per_shard=12, row_group_size=3)
    tok = tiny_tokenizer()
    server = gcs_server if object_store.scheme == "gs" else s3_server
    proxy = RecordingProxy(server.port, emulator_log_dir)
    try:
        remote = object_store.url("shards")
        if object_store.scheme == "gs":
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
            storage.upload_tree(local, remote, last=(INDEX_FILE,))
        else:
            storage.upload_tree(local, remote, last=(INDEX_FILE,))
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        proxy.clear()
        shard_set = open_shard_set(remote)
        assert shard_set.paths[0] == f"{remote}/part-00000.parquet"
        assert shard_set.row_groups == ((3, 3, 3, 3), (3, 3, 3, 3))
        assert _ids(shard_set, tok) == _ids(open_shard_set(local), tok)
        for part in ("part-00000.parquet", "part-00001.parquet"):
            key = f"{remote}/{part}".split("/", 3)[3]
            reads = proxy.reads(key)
            assert reads and all(r.range.startswith("bytes=") for r in reads), reads
            size = (local / part).stat().st_size
            # no single request fetched the whole file (range reads of footer + row groups)
            assert max(r.body_bytes for r in reads) < size, (size, reads)
    finally:
        proxy.close()


def test_remote_shard_set_without_index_is_refused(object_store):
    storage.write_bytes(object_store.url("half", "part-00000.parquet"), b"PAR1")
    with pytest.raises(ShardError, match="no _index.json"):
        open_shard_set(object_store.url("half"))
