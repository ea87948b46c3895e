"""llark/storage.py against the emulators: the file operations every non-Beam part uses, and
range reads: a Parquet row group is fetched by ranged GETs, never as a whole-object download
(seen in the request log of a proxy in front of each emulator)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llark import storage
from tests.object_stores import RecordingProxy

pytest.importorskip("google.cloud.storage")


def test_write_list_read_delete(object_store):
    root = object_store.root
    storage.write_text(storage.join(root, "set", "_index.json"), '{"ok": true}')
    storage.write_bytes(storage.join(root, "set", "part-00000.parquet"), b"PAR1")
    storage.write_text(storage.join(root, "set", "deep", "x.jsonl"), "a\nb\n")
    assert storage.list_files(storage.join(root, "set")) == [
        f"{root}/set/_index.json", f"{root}/set/deep/x.jsonl", f"{root}/set/part-00000.parquet"]
    assert storage.list_files(storage.join(root, "set"), "part-*.parquet") == [
        f"{root}/set/part-00000.parquet"]
    assert storage.exists(storage.join(root, "set"))            # a prefix with objects
    assert storage.exists(storage.join(root, "set", "_index.json"))
    assert not storage.exists(storage.join(root, "nothing-here"))
    assert storage.list_files(storage.join(root, "nothing-here")) == []
    assert storage.read_text(storage.join(root, "set", "_index.json")) == '{"ok": true}'
    assert list(storage.iter_lines(storage.join(root, "set", "deep", "x.jsonl"))) == ["a", "b"]
    assert storage.size(storage.join(root, "set", "part-00000.parquet")) == 4
    storage.delete([storage.join(root, "set", "part-00000.parquet")])
    assert not storage.is_file(storage.join(root, "set", "part-00000.parquet"))
    with pytest.raises(storage.StorageError, match="no such file"):
        storage.open_input(storage.join(root, "set", "part-00000.parquet"))


def test_tree_round_trip_puts_markers_last(object_store, tmp_path):
    src = tmp_path / "src"
    (src / "ckpt").mkdir(parents=True)
    (src / "ckpt" / "state.json").write_text("{}")
    (src / "ckpt" / "model.safetensors").write_bytes(b"\0" * 1000)
    (src / "a.txt").write_text("a")
    urls = storage.upload_tree(src, object_store.url("tree"), last=("state.json",))
    assert urls[-1].endswith("ckpt/state.json")
    got = storage.download_tree(object_store.url("tree"), tmp_path / "dst")
    assert sorted(p.relative_to(tmp_path / "dst").as_posix() for p in got) == [
        "a.txt", "ckpt/model.safetensors", "ckpt/state.json"]
    assert (tmp_path / "dst" / "ckpt" / "model.safetensors").read_bytes() == b"\0" * 1000


def test_bad_urls_are_clear():
    with pytest.raises(storage.StorageError, match="unsupported scheme"):
        storage.scheme("hdfs://x/y")
    with pytest.raises(storage.StorageError, match="no bucket"):
        storage.filesystem("gs:///x")


def _parquet_bytes(n_groups: int = 8, rows: int = 5000) -> bytes:
    rng = np.random.default_rng(0)
    table = pa.table({"id": np.arange(n_groups * rows),
                      "embedding": rng.random(n_groups * rows)})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=rows)
    return buf.getvalue()


def test_row_group_reads_are_range_requests(object_store, emulator_log_dir, gcs_server,
                                            s3_server, monkeypatch):
    server = gcs_server if object_store.scheme == "gs" else s3_server
    proxy = RecordingProxy(server.port, emulator_log_dir)
    try:
        data = _parquet_bytes()
        url = object_store.url("shards", "part-00000.parquet")
        key = url.split("/", 3)[3]
        if object_store.scheme == "gs":
            # the GCS emulator remembers the host an object was written through (its mediaLink)
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
            storage.write_bytes(url, data)
        else:
            storage.write_bytes(url, data)
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        proxy.clear()
        pf = pq.ParquetFile(storage.open_input(url))
        assert pf.metadata.num_row_groups == 8
        group = pf.read_row_group(5, columns=["embedding"])
        assert group.num_rows == 5000
        reads = proxy.reads(key)
        assert reads, proxy.requests()
        assert all(r.range.startswith("bytes=") for r in reads), reads
        served = sum(r.body_bytes for r in reads)
        assert served < len(data) / 2, (served, len(data), reads)
        # the row group asked for was among the bytes served: its column chunk's range
        chunk = pf.metadata.row_group(5).column(1)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        assert any(int(r.range[6:].split("-")[0]) <= start for r in reads)
    finally:
        proxy.close()
