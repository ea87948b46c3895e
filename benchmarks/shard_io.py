"""Which Parquet layout should hold the embeddings? Write and read N rows of (238, 4800)
float16 (Jukebox's shape for a 23.777 s clip on the 10 Hz frame grid) in several layouts and
compare with a raw read of the same bytes from the same disk, which is the limit.

This is a layout study with its own minimal reader; the trainer's reader (``ShardStream`` +
``collate``) is timed by ``benchmarks/train_reader.py``.

    python benchmarks/shard_io.py [--rows 1000] [--frames 238] [--dim 4800]
                                  [--row-group-mb 64] [--dir /tmp/llark-shard-io] [--json F]

Layouts (all: embedding column without statistics or dictionary):

* ``binary``         ``large_binary`` + ``n_frames`` + ``dim`` (pipelines.schema today), no
                     compression
* ``binary_zstd``    the same, zstd-compressed
* ``fixed_list``     ``list<fixed_size_list<float16, dim>>``: one fixed-size list per frame,
                     any number of frames per row
* ``tensor``         Arrow's ``fixed_shape_tensor(float16, [frames, dim])`` extension type:
                     every row must have the same number of frames
* ``raw``            the same bytes, back to back in a plain file (the read limit)

Each file is fsync'ed after writing and dropped from the page cache (``posix_fadvise
DONTNEED``) before it is read, so reads come from the disk. Each read runs in a fresh process
that walks the file one row group at a time (``ParquetFile.read_row_group``), turns every row
into a ``(frames, dim)`` float16 numpy array and reports its peak resident memory above its
baseline and the peak of Arrow's memory pool. The files are deleted at the end.

Rows are drawn from a pool of 8 random rows (random float16 is the worst case for
compression; real activations compress a little better).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LAYOUTS = ("binary", "binary_zstd", "fixed_list", "tensor")
POOL = 8


# --------------------------------------------------------------------------- data and schemas

def make_pool(frames: int, dim: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((frames, dim), dtype=np.float32).astype(np.float16)
            for _ in range(POOL)]


def schema(layout: str, frames: int, dim: int):
    import pyarrow as pa

    base = [pa.field("id", pa.string())]
    if layout in ("binary", "binary_zstd"):
        return pa.schema(base + [pa.field("n_frames", pa.int32()), pa.field("dim", pa.int32()),
                                 pa.field("embedding", pa.large_binary())])
    if layout == "fixed_list":
        return pa.schema(base + [pa.field("embedding",
                                          pa.list_(pa.list_(pa.float16(), dim)))])
    if layout == "tensor":
        return pa.schema(base + [pa.field("embedding",
                                          pa.fixed_shape_tensor(pa.float16(), [frames, dim]))])
    raise ValueError(layout)


def table(layout: str, rows: list[np.ndarray], start: int, frames: int, dim: int):
    import pyarrow as pa

    ids = pa.array([f"clip-{start + i}" for i in range(len(rows))])
    sch = schema(layout, frames, dim)
    if layout in ("binary", "binary_zstd"):
        emb = pa.array([r.tobytes() for r in rows], type=pa.large_binary())
        n = pa.array([r.shape[0] for r in rows], type=pa.int32())
        d = pa.array([r.shape[1] for r in rows], type=pa.int32())
        return pa.Table.from_arrays([ids, n, d, emb], schema=sch)
    flat = pa.array(np.concatenate([r.reshape(-1) for r in rows]), type=pa.float16())
    if layout == "fixed_list":
        per_frame = pa.FixedSizeListArray.from_arrays(flat, dim)              # (rows*frames,)
        offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * frames)
        emb = pa.ListArray.from_arrays(offsets, per_frame)
        return pa.Table.from_arrays([ids, emb], schema=sch)
    storage = pa.FixedSizeListArray.from_arrays(flat, frames * dim)
    emb = pa.ExtensionArray.from_storage(sch.field("embedding").type, storage)
    return pa.Table.from_arrays([ids, emb], schema=sch)


def evict(path: Path) -> None:
    """Drop a file from the page cache so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- writing

def write_layout(layout: str, path: Path, n: int, frames: int, dim: int, rows_per_group: int,
                 pool: list[np.ndarray]) -> float:
    import pyarrow.parquet as pq

    compression = "zstd" if layout == "binary_zstd" else "none"
    t0 = time.perf_counter()
    with pq.ParquetWriter(path, schema(layout, frames, dim), compression=compression,
                          use_dictionary=False, write_statistics=False) as w:
        for start in range(0, n, rows_per_group):
            rows = [pool[(start + i) % POOL] for i in range(min(rows_per_group, n - start))]
            w.write_table(table(layout, rows, start, frames, dim), row_group_size=len(rows))
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t0


def write_raw(path: Path, n: int, pool: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for i in range(n):
            f.write(pool[i % POOL].tobytes())
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- reading (child)

def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB (VmHWM, unlike ru_maxrss, does not carry
    the parent's peak over a fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _read_once(layout: str, path: str, frames: int, dim: int, group_bytes: int
               ) -> tuple[int, float]:
    """One pass over the file, a row group at a time; every row becomes a numpy array."""
    import pyarrow.parquet as pq

    checksum = 0.0
    rows = 0
    if layout == "raw":
        row_bytes = frames * dim * 2
        buf = bytearray(max(row_bytes, group_bytes // row_bytes * row_bytes))
        view = memoryview(buf)
        with open(path, "rb", buffering=0) as f:
            while (got := f.readinto(view)) > 0:
                for off in range(0, got, row_bytes):
                    a = np.frombuffer(buf, np.float16, frames * dim, off).reshape(frames, dim)
                    checksum += float(a[0, 0])
                    rows += 1
        return rows, checksum
    pf = pq.ParquetFile(path)
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g)
        col = t.column("embedding").chunk(0) if t.column("embedding").num_chunks == 1 \
            else t.column("embedding").combine_chunks()
        if layout in ("binary", "binary_zstd"):
            offsets = np.frombuffer(col.buffers()[1], np.int64)[col.offset:col.offset + len(col) + 1]
            data = col.buffers()[2]
            n_frames = t.column("n_frames").to_numpy()
            dims = t.column("dim").to_numpy()
            for i in range(len(col)):
                a = np.frombuffer(data, np.float16, int(n_frames[i] * dims[i]),
                                  int(offsets[i])).reshape(int(n_frames[i]), int(dims[i]))
                checksum += float(a[0, 0])
                rows += 1
        elif layout == "fixed_list":
            offsets = col.offsets.to_numpy()
            values = col.values.values.to_numpy(zero_copy_only=True).reshape(-1, dim)
            for i in range(len(col)):
                a = values[offsets[i]:offsets[i + 1]]
                checksum += float(a[0, 0])
                rows += 1
        else:
            for a in col.to_numpy_ndarray():                         # (frames, dim) each
                checksum += float(a[0, 0])
                rows += 1
        del t, col
    return rows, checksum


def read_child(layout: str, path: str, frames: int, dim: int, group_bytes: int) -> dict:
    """Runs in a fresh process. Pass 1 reads the (evicted) file in a fresh process, where
    every buffer is new memory the kernel must fault in; pass 2 evicts the file again and
    reads it from disk once more with the allocator warm, which is what a trainer that
    streams shard after shard sees. Reports both and the memory peaks over both."""
    import pyarrow as pa

    base_rss = _status_mb("VmRSS")
    times = []
    for n in range(2):
        if n:
            evict(Path(path))
        t0 = time.perf_counter()
        rows, checksum = _read_once(layout, path, frames, dim, group_bytes)
        times.append(time.perf_counter() - t0)
    peak = _status_mb("VmHWM")
    return {"seconds_cold_process": times[0], "seconds": times[1], "rows": rows,
            "checksum": checksum, "peak_rss_above_baseline_mb": peak - base_rss,
            "arrow_pool_peak_mb": pa.default_memory_pool().max_memory() / 2**20}


def read_in_child(layout: str, path: Path, frames: int, dim: int, group_bytes: int) -> dict:
    evict(path)
    code = ("import json, sys; sys.path.insert(0, %r); from shard_io import read_child; "
            "print(json.dumps(read_child(%r, %r, %d, %d, %d)))"
            % (str(Path(__file__).parent), layout, str(path), frames, dim, group_bytes))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=238)
    ap.add_argument("--dim", type=int, default=4800)
    ap.add_argument("--row-group-mb", type=int, default=64)
    ap.add_argument("--dir", default="/tmp/llark-shard-io")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--group-sweep", default="16,32,128",
                    help="also read the binary layout with these row-group sizes (MB)")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)

    row_bytes = args.frames * args.dim * 2
    rows_per_group = max(1, (args.row_group_mb << 20) // row_bytes)
    payload_mb = args.rows * row_bytes / 2**20
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(folder).free / 2**30
    need_gb = payload_mb * 1.1 / 1024
    if free_gb < need_gb * 1.5:
        print(f"not enough disk in {folder}: {free_gb:.1f} GB free, need ~{need_gb:.1f} GB")
        return 1
    print(f"{args.rows} rows of ({args.frames}, {args.dim}) float16 = {payload_mb:.0f} MB "
          f"payload; row groups of {rows_per_group} rows ({rows_per_group * row_bytes / 2**20:.0f}"
          f" MB); files in {folder}")
    pool = make_pool(args.frames, args.dim)
    results = []
    try:
        raw = folder / "raw.bin"
        w = write_raw(raw, args.rows, pool)
        r = read_in_child("raw", raw, args.frames, args.dim, rows_per_group * row_bytes)
        raw_read = payload_mb / r["seconds"]
        results.append({"layout": "raw", "file_mb": raw.stat().st_size / 2**20,
                        "write_mb_s": payload_mb / w, "read_mb_s": raw_read, **r})
        raw.unlink()
        for layout in [x for x in args.layouts.split(",") if x]:
            path = folder / f"{layout}.parquet"
            w = write_layout(layout, path, args.rows, args.frames, args.dim, rows_per_group,
                             pool)
            r = read_in_child(layout, path, args.frames, args.dim, rows_per_group * row_bytes)
            if r["rows"] != args.rows:
                raise RuntimeError(f"{layout}: read {r['rows']} rows, wrote {args.rows}")
            results.append({"layout": layout, "file_mb": path.stat().st_size / 2**20,
                            "write_mb_s": payload_mb / w, "read_mb_s": payload_mb / r["seconds"],
                            **r})
            path.unlink()
        for mb in [int(x) for x in args.group_sweep.split(",") if x]:
            per = max(1, (mb << 20) // row_bytes)
            path = folder / f"binary-{mb}.parquet"
            w = write_layout("binary", path, args.rows, args.frames, args.dim, per, pool)
            r = read_in_child("binary", path, args.frames, args.dim, per * row_bytes)
            results.append({"layout": f"binary@{mb}MB", "file_mb": path.stat().st_size / 2**20,
                            "write_mb_s": payload_mb / w, "read_mb_s": payload_mb / r["seconds"],
                            **r})
            path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    group_mb = rows_per_group * row_bytes / 2**20
    print(f"\n{'layout':<14} {'file MB':>8} {'write MB/s':>10} {'read MB/s':>9} {'% raw':>6} "
          f"{'cold-process read':>17} {'peak RSS MB':>11} {'arrow peak MB':>13}")
    for res in results:
        cold = payload_mb / res["seconds_cold_process"]
        print(f"{res['layout']:<14} {res['file_mb']:8.0f} {res['write_mb_s']:10.0f} "
              f"{res['read_mb_s']:9.0f} {100 * res['read_mb_s'] / raw_read:5.0f}% "
              f"{cold:17.0f} {res['peak_rss_above_baseline_mb']:11.0f} "
              f"{res['arrow_pool_peak_mb']:13.0f}")
    print(f"(row groups of {group_mb:.0f} MB unless the layout says otherwise; peaks are above the "
          "reading process's baseline; read MB/s: from disk with the allocator warm, "
          "cold-process: the first pass of a fresh process)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
