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


def lay_out(staging: str, files: int, file_bytes: int, real: bool) -> dict[str, int]:
    """The staging folder a finished job leaves (a local folder or a ``gs://`` prefix);
    returns its pipeline counters."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.stage import (DEAD_NOTES, NOTES_DIR, SKIP_NOTES, WRITER_ROWS, WRITTEN_DIR,
                                 WrittenFile)

    remote = "://" in staging

    def put(rel: str, data: bytes) -> None:
        path = FileSystems.join(staging, rel)
        if not remote:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with FileSystems.create(path) as f:
            f.write(data)

    template = b""
    if real:
        local = Path(f"/tmp/llark-commit-template-{uuid.uuid4().hex}.parquet")
        real_parquet(local, file_bytes)
        template = local.read_bytes()
        local.unlink()
    os.makedirs(os.path.join(staging, "data"), exist_ok=True) if not remote else None
    lines = []
    for _ in range(files):
        name = f"part-{uuid.uuid4().hex}.parquet"
        if real:
            put(f"data/{name}", template)
            size = len(template)
        elif remote:                       # objects hold their bytes (small files only)
            put(f"data/{name}", bytes(file_bytes))
            size = file_bytes
        else:                              # sparse: B bytes long, no disk used
            with open(os.path.join(staging, "data", name), "wb") as f:
                f.truncate(file_bytes)
            size = file_bytes
        lines.append(WrittenFile(f"data/{name}", ROWS_PER_FILE, size,
                                 uuid.uuid4().hex * 2).to_json())
    put(f"{WRITTEN_DIR}/WriteRecords.jsonl", ("\n".join(lines) + "\n").encode())
    n_notes = max(1, files // 100)
    counters = {WRITER_ROWS: files * ROWS_PER_FILE}
    for kind, keys, prefix in ((DEAD_NOTES, DEAD_TYPES, "dead_letters/"),
                               (SKIP_NOTES, SKIP_REASONS, "skipped/")):
        per_key: dict[str, list[dict]] = {k: [] for k in keys}
        for i in range(n_notes):
            key = keys[i % len(keys)]
            note = ({"stage": "bench", "id": f"folder:{i:07d}", "error_type": key,
                     "message": "audio file not found: /data/x.wav", "input_uri": ""}
                    if kind == DEAD_NOTES else
                    {"stage": "bench", "id": f"folder:{i:07d}", "reason": key})
            per_key[key].append(note)
        put(f"{kind}/all.jsonl", "".join(json.dumps(n, sort_keys=True) + "\n"
                                         for notes in per_key.values() for n in notes).encode())
        summary = []
        for key, notes in per_key.items():
            if notes:
                sample = ([json.dumps(n, sort_keys=True) for n in notes[:5]]
                          if kind == DEAD_NOTES else [n["id"] for n in notes[:5]])
                summary.append(json.dumps({"key": key, "count": len(notes), "sample": sample}))
                counters[prefix + key] = len(notes)
        put(f"{NOTES_DIR}/{kind}.jsonl", ("\n".join(summary) + "\n").encode())
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


def one(root: str, files: int, file_bytes: int, real: bool, rev: str | None,
        proxy_log: str | None) -> dict:
    """One measured commit (run in its own process). ``proxy_log``: the log of the
    :class:`tests.object_stores.RecordingProxy` the ``gs://`` client goes through."""
    from apache_beam.io.filesystems import FileSystems

    stage = load_stage(rev)
    results = []
    for n in (10, files):                  # the first commit warms up imports and code paths
        out = FileSystems.join(root, f"out-{n}-{uuid.uuid4().hex[:6]}")
        staging = FileSystems.join(out, "_staging", "run")
        counters = lay_out(staging, n, file_bytes, real)
        if proxy_log:
            Path(proxy_log).write_text("")
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
        served = requests = 0
        if proxy_log:
            for line in Path(proxy_log).read_text().splitlines():
                if line.strip():
                    requests += 1
                    served += json.loads(line)["body_bytes"]
        results.append({"store": "gcs-emulator" if proxy_log else "local",
                        "http_requests": requests, "http_body_bytes": served,"files": n, "file_bytes": file_bytes,
                        "data_bytes": sum(e.bytes for e in index.shards),
                        "code": rev or "this", "real_parquet": real,
                        "read_bytes": io1["rchar"] - io0["rchar"],
                        "read_calls": io1["syscr"] - io0["syscr"],
                        "py_peak_mb": round(peak / 2**20, 1),
                        "rss_growth_mb": round((rss1 - rss0) / 1024, 1),
                        "wall_s": round(wall, 2)})
        if proxy_log:
            FileSystems.delete([m.path for m in FileSystems.match([out + "/**"])[0].metadata_list])
        else:
            shutil.rmtree(out)
    return results[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--files", default="1000,100000", help="comma-separated numbers of files")
    ap.add_argument("--file-bytes", default="1024", help="comma-separated bytes per file")
    ap.add_argument("--dir", default="/tmp/llark-commit-index")
    ap.add_argument("--real-parquet", action="store_true")
    ap.add_argument("--store", choices=("local", "gcs"), default="local",
                    help="gcs: a gcp-storage-emulator bucket on 127.0.0.1 behind the tests' "
                         "recording proxy (tests/object_stores.py); read bytes = HTTP response "
                         "bodies the launcher received")
    ap.add_argument("--baseline", metavar="REV", help="also measure the commit of this revision")
    ap.add_argument("--json", help="append each result as a JSON line to this file")
    ap.add_argument("--one", nargs=3, metavar=("FILES", "BYTES", "REV"), help=argparse.SUPPRESS)
    ap.add_argument("--proxy-log", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = Path(args.dir)
    real = args.real_parquet or args.baseline is not None
    if args.one:
        rev = None if args.one[2] == "-" else args.one[2]
        where = args.dir if "://" in args.dir else str(root)
        if "://" not in where:
            root.mkdir(parents=True, exist_ok=True)
        print(json.dumps(one(where, int(args.one[0]), int(args.one[1]), real, rev,
                             args.proxy_log)))
        return 0
    env = dict(os.environ)
    servers = []
    if args.store == "gcs":
        import tempfile

        from tests.object_stores import (GCS_BUCKET, RecordingProxy, gcs_env,
                                         start_gcs_emulator, write_emulator_credentials)

        log_dir = Path(tempfile.mkdtemp(prefix="llark-commit-index-"))
        server = start_gcs_emulator(log_dir)
        proxy = RecordingProxy(server.port, log_dir)
        servers = [proxy, server]
        env.update(gcs_env(proxy.endpoint, write_emulator_credentials(log_dir / "adc.json")))
        remote_root = f"gs://{GCS_BUCKET}/commit-index-{uuid.uuid4().hex[:8]}"
    revs = ["-"] + ([args.baseline] if args.baseline else [])
    print("| store | code | files | bytes/file | data MB | read KB | read KB / 1,000 files "
          "| read calls (local) / HTTP requests (gcs) | py peak MB | RSS growth MB | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for files in (int(x) for x in args.files.split(",")):
        for file_bytes in (int(x) for x in args.file_bytes.split(",")):
            for rev in revs:
                cmd = [sys.executable, "-m", "benchmarks.commit_index", "--dir",
                       remote_root if servers else str(root),
                       "--one", str(files), str(file_bytes), rev]
                if real:
                    cmd.append("--real-parquet")
                if servers:
                    cmd += ["--proxy-log", str(servers[0].log_path)]
                done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
                line = done.stdout.strip().splitlines()[-1]
                r = json.loads(line)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(line + "\n")
                read = r["http_body_bytes"] if servers else r["read_bytes"]
                calls = r["http_requests"] if servers else r["read_calls"]
                print(f"| {r['store']} | {r['code']} | {r['files']:,} | {r['file_bytes']:,} | "
                      f"{r['data_bytes'] / 1e6:,.1f} | {read / 1e3:,.1f} | "
                      f"{read / 1e3 / (r['files'] / 1000):,.1f} | {calls:,} | {r['py_peak_mb']} | {r['rss_growth_mb']} | "
                      f"{r['wall_s']} |", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    if servers:
        proxy.close()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
