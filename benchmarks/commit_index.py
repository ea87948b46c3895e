"""What the launcher reads at commit (issue 19.1): bytes read and peak memory of
``pipelines.stage.commit`` for a staging folder of N output files of B bytes each.

    python benchmarks/commit_index.py [--files 1000,10000,100000] [--file-bytes 1024]
                                      [--dir /tmp/llark-commit-index] [--baseline REV]
                                      [--json F]

A staging folder is laid out as the writers leave it after a job (``pipelines.stage``):
``data/part-<uuid>.parquet`` (N files), ``written/WriteRecords.jsonl`` (one ``WrittenFile``
line each: rows, bytes, sha256 as the writer computed them), the dead letters and skip notes
(one file each; 1 % of the files as dead letters and as skips, under three types / reasons)
and their summaries in ``notes/``. The data files are sparse (``truncate``: B bytes each,
no disk used), which is enough because the commit only renames them; ``--real-parquet`` writes
real Parquet files of about B bytes instead (copies of one file), which the code before this
change needs (it read every file's footer and every byte for its sha256).

Each case runs ``commit`` in a fresh process, after a warm-up commit of 10 files in the same
process (so that lazy imports are not counted), and reports:

* ``read_bytes``: the process's ``rchar`` delta (``/proc/self/io``: every byte returned by a
  ``read``-family system call, from any file: manifests, summaries, data if it were read);
* ``read_calls``: the ``syscr`` delta;
* ``py_peak_mb``: ``tracemalloc``'s peak of Python allocations during the commit;
* ``rss_growth_mb``: peak resident memory after the commit minus before it (``ru_maxrss``);
* ``wall_s``.

``--baseline REV`` also measures the commit of ``git show REV:pipelines/stage.py`` (loaded as a
separate module) on the same layout with real Parquet files (implies ``--real-parquet`` for
both).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DEAD_TYPES = ("AudioNotFoundError", "UndecodableAudioError", "TruncatedAudioError")
SKIP_REASONS = ("audio_without_metadata", "not_audio:.txt", "tail_too_short")
ROWS_PER_FILE = 10


def io_counters() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, value = line.split(":")
        out[key] = int(value)
    return out


def real_parquet(path: Path, approx_bytes: int) -> None:
    """One Parquet file of about ``approx_bytes`` (random bytes in a binary column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    per_row = max(1, approx_bytes // ROWS_PER_FILE - 64)
    table = pa.table({"id": [f"r{i}" for i in range(ROWS_PER_FILE)],
                      "blob": [os.urandom(per_row) for _ in range(ROWS_PER_FILE)]})
    pq.write_table(table, path, compression="none")


def lay_out(staging: Path, files: int, file_bytes: int, real: bool) -> dict[str, int]:
    """The staging folder a finished job leaves; returns its pipeline counters."""
    from pipelines.stage import (DEAD_NOTES, NOTES_DIR, SKIP_NOTES, WRITER_ROWS, WRITTEN_DIR,
                                 WrittenFile)

    data = staging / "data"
    data.mkdir(parents=True)
    (staging / WRITTEN_DIR).mkdir()
    template = staging / "template.parquet"
    if real:
        real_parquet(template, file_bytes)
        size = template.stat().st_size
    with open(staging / WRITTEN_DIR / "WriteRecords.jsonl", "w") as manifest:
        for _ in range(files):
            name = f"part-{uuid.uuid4().hex}.parquet"
            if real:
                shutil.copyfile(template, data / name)
            else:
                with open(data / name, "wb") as f:
                    f.truncate(file_bytes)
                size = file_bytes
            manifest.write(WrittenFile(f"data/{name}", ROWS_PER_FILE, size,
                                       uuid.uuid4().hex * 2).to_json() + "\n")
    if real:
        template.unlink()
    n_notes = max(1, files // 100)
    counters = {WRITER_ROWS: files * ROWS_PER_FILE}
    for kind, keys, field, prefix in ((DEAD_NOTES, DEAD_TYPES, "error_type", "dead_letters/"),
                                      (SKIP_NOTES, SKIP_REASONS, "reason", "skipped/")):
        (staging / kind).mkdir()
        (staging / NOTES_DIR).mkdir(exist_ok=True)
        per_key: dict[str, list[dict]] = {k: [] for k in keys}
        with open(staging / kind / "all.jsonl", "w") as f:
            for i in range(n_notes):
                key = keys[i % len(keys)]
                note = ({"stage": "bench", "id": f"folder:{i:07d}", "error_type": key,
                         "message": "audio file not found: /data/x.wav", "input_uri": ""}
                        if kind == DEAD_NOTES else
                        {"stage": "bench", "id": f"folder:{i:07d}", "reason": key})
                per_key[key].append(note)
                f.write(json.dumps(note, sort_keys=True) + "\n")
        with open(staging / NOTES_DIR / f"{kind}.jsonl", "w") as f:
            for key, notes in per_key.items():
                if notes:
                    sample = ([json.dumps(n, sort_keys=True) for n in notes[:5]]
                              if kind == DEAD_NOTES else [n["id"] for n in notes[:5]])
                    f.write(json.dumps({"key": key, "count": len(notes), "sample": sample}) + "\n")
                    counters[prefix + key] = len(notes)
    return counters


def load_stage(rev: str | None):
    if rev is None:
        import pipelines.stage as stage

        return stage
    source = subprocess.run(["git", "show", f"{rev}:pipelines/stage.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = Path(f"/tmp/llark_stage_{rev.replace('/', '_')}.py")
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"stage_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def one(root: Path, files: int, file_bytes: int, real: bool, rev: str | None) -> dict:
    """One measured commit (run in its own process)."""
    stage = load_stage(rev)
    results = []
    for n in (10, files):                  # the first commit warms up imports and code paths
        out = root / f"out-{n}-{uuid.uuid4().hex[:6]}"
        staging = out / "_staging" / "run"
        counters = lay_out(staging, n, file_bytes, real)
        if rev is not None:                # the old commit read staged dead letters / skips
            counters = {k: v for k, v in counters.items() if not k.startswith("llark_writer")}
        tallies = stage.Tallies(counters)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        io0 = io_counters()
        tracemalloc.start()
        t0 = time.perf_counter()
        index = stage.commit("bench", "clip", str(out), str(staging), None, {"inputs": n},
                             1.0, None, tallies)
        wall = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        io1 = io_counters()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert index.total_rows == n * ROWS_PER_FILE and len(index.shards) == n
        results.append({"files": n, "file_bytes": file_bytes,
                        "data_bytes": sum(e.bytes for e in index.shards),
                        "code": rev or "this", "real_parquet": real,
                        "read_bytes": io1["rchar"] - io0["rchar"],
                        "read_calls": io1["syscr"] - io0["syscr"],
                        "py_peak_mb": round(peak / 2**20, 1),
                        "rss_growth_mb": round((rss1 - rss0) / 1024, 1),
                        "wall_s": round(wall, 2)})
        shutil.rmtree(out)
    return results[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--files", default="1000,100000", help="comma-separated numbers of files")
    ap.add_argument("--file-bytes", default="1024", help="comma-separated bytes per file")
    ap.add_argument("--dir", default="/tmp/llark-commit-index")
    ap.add_argument("--real-parquet", action="store_true")
    ap.add_argument("--baseline", metavar="REV", help="also measure the commit of this revision")
    ap.add_argument("--json", help="append each result as a JSON line to this file")
    ap.add_argument("--one", nargs=3, metavar=("FILES", "BYTES", "REV"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = Path(args.dir)
    real = args.real_parquet or args.baseline is not None
    if args.one:
        root.mkdir(parents=True, exist_ok=True)
        rev = None if args.one[2] == "-" else args.one[2]
        print(json.dumps(one(root, int(args.one[0]), int(args.one[1]), real, rev)))
        return 0
    revs = ["-"] + ([args.baseline] if args.baseline else [])
    print("| code | files | bytes/file | data MB | read KB | read KB / 1,000 files | read calls "
          "| py peak MB | RSS growth MB | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for files in (int(x) for x in args.files.split(",")):
        for file_bytes in (int(x) for x in args.file_bytes.split(",")):
            for rev in revs:
                cmd = [sys.executable, "-m", "benchmarks.commit_index", "--dir", str(root),
                       "--one", str(files), str(file_bytes), rev]
                if real:
                    cmd.append("--real-parquet")
                line = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True,
                                      text=True).stdout.strip().splitlines()[-1]
                r = json.loads(line)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(line + "\n")
                print(f"| {r['code']} | {r['files']:,} | {r['file_bytes']:,} | "
                      f"{r['data_bytes'] / 1e6:,.1f} | {r['read_bytes'] / 1e3:,.1f} | "
                      f"{r['read_bytes'] / 1e3 / (r['files'] / 1000):,.1f} | "
                      f"{r['read_calls']:,} | {r['py_peak_mb']} | {r['rss_growth_mb']} | "
                      f"{r['wall_s']} |", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
