"""What the trainer fetches from a bucket: bytes and requests, against the file sizes.

    .venv/bin/python benchmarks/object_store_reads.py [--rows 64] [--frames 238] [--dim 128]
                                                      [--row-group 8] [--json F]

Starts gcp-storage-emulator and moto's S3 server on 127.0.0.1 (as the tests do), writes a
training shard set (``tests/shard_factory.py``; 238 frames per clip: 23.777 s at 10 Hz) and
uploads it to each, then reads it through a logging proxy (``tests/object_stores.py``) that
records every request and the bytes it served:

* ``open``: ``model.data.open_shard_set`` (index, sizes, every Parquet footer);
* ``one_row_group``: ``model.data.read_row_group`` of one row group of one shard;
* ``epoch``: one pass of ``ShardStream`` + ``make_loader`` (what ``llark train`` iterates);
* ``pyarrow_gcs_one_row_group`` (gs:// only, the baseline we did not keep): the same row group
  through ``pyarrow.fs.GcsFileSystem``, which downloads the whole object on a file's first read.

Prints, per store and step: requests, ranged requests, bytes served, the largest single
response, and bytes served / bytes of the files touched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llark import storage  # noqa: E402
from tests.object_stores import (RecordingProxy, gcs_env, s3_env, start_gcs_emulator,  # noqa: E402
                                 start_s3_emulator, write_emulator_credentials)
from tests.shard_factory import make_shard_set  # noqa: E402


def _tally(proxy: RecordingProxy, prefix: str) -> dict[str, int]:
    reads = [r for r in proxy.reads(prefix)]
    return {"requests": len(proxy.requests()), "data_requests": len(reads),
            "ranged": sum(1 for r in reads if r.range.startswith("bytes=")),
            "bytes_served": sum(r.body_bytes for r in reads),
            "largest_response": max((r.body_bytes for r in reads), default=0)}


def measure(kind: str, local: Path, log_dir: Path) -> dict[str, dict[str, float]]:
    from model.data import (ShardStream, StreamConfig, make_loader, open_shard_set,
                            read_row_group)
    from model.modeling import tiny_tokenizer
    from pipelines.schema import INDEX_FILE

    server = start_gcs_emulator(log_dir) if kind == "gs" else start_s3_emulator(log_dir)
    proxy = RecordingProxy(server.port, log_dir)
    env = (gcs_env(proxy.endpoint, write_emulator_credentials(log_dir / "adc.json"))
           if kind == "gs" else s3_env(server.endpoint))
    os.environ.update(env)
    out: dict[str, dict[str, float]] = {}
    try:
        url = f"{kind}://llark-test/bench/shards"
        storage.upload_tree(local, url, last=(INDEX_FILE,))
        if kind == "s3":
            os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint   # uploads went direct (see tests)
        total = sum(p.stat().st_size for p in local.glob("part-*.parquet"))
        first = (local / "part-00000.parquet").stat().st_size

        proxy.clear()
        shard_set = open_shard_set(url)
        out["open"] = {**_tally(proxy, "bench/shards/part-"), "file_bytes": total}
        proxy.clear()
        read_row_group(shard_set.paths[0], 1)
        out["one_row_group"] = {**_tally(proxy, "bench/shards/part-00000"), "file_bytes": first}
        proxy.clear()
        tok = tiny_tokenizer()
        stream = ShardStream(shard_set, tok, StreamConfig(loop=False, shuffle_buffer=8,
                                                          num_workers=0))
        n = sum(len(b.clip_ids) for b in make_loader(stream, batch_size=4,
                                                     pad_id=tok.pad_token_id))
        out["epoch"] = {**_tally(proxy, "bench/shards/part-"), "file_bytes": total, "rows": n}
        if kind == "gs":
            import pyarrow.parquet as pq
            from pyarrow import fs

            host = proxy.endpoint.split("//", 1)[1]
            gcs = fs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme="http")
            proxy.clear()
            pq.ParquetFile(gcs.open_input_file("llark-test/bench/shards/part-00000.parquet")
                           ).read_row_group(1)
            out["pyarrow_gcs_one_row_group"] = {**_tally(proxy, "bench/shards/part-00000"),
                                                "file_bytes": first}
    finally:
        proxy.close()
        server.stop()
    for v in out.values():
        v["served_over_file_bytes"] = round(v["bytes_served"] / v["file_bytes"], 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--frames", type=int, default=238)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--row-group", type=int, default=8)
    ap.add_argument("--rows-per-shard", type=int, default=32)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llark-bench-") as tmp:
        local = Path(tmp) / "shards"
        make_shard_set(local, n_rows=args.rows, n_frames=args.frames, dim=args.dim,
                       rows_per_shard=args.rows_per_shard, row_group_size=args.row_group)
        results = {kind: measure(kind, local, Path(tmp)) for kind in ("gs", "s3")}
    print(f"{args.rows} rows x {args.frames} frames x {args.dim} dims (float16), "
          f"{args.rows_per_shard} rows per shard, row groups of {args.row_group}")
    print(f"{'store':<5} {'step':<26} {'requests':>8} {'data':>5} {'ranged':>6} "
          f"{'served':>10} {'largest':>9} {'files':>10} {'ratio':>6}")
    for kind, steps in results.items():
        for step, v in steps.items():
            print(f"{kind:<5} {step:<26} {v['requests']:>8} {v['data_requests']:>5} "
                  f"{v['ranged']:>6} {v['bytes_served']:>10} {v['largest_response']:>9} "
                  f"{v['file_bytes']:>10} {v['served_over_file_bytes']:>6}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
