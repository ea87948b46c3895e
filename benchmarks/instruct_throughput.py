"""Instruct throughput: the whole ``llark instruct`` job against a 200 ms server, LLM requests
per second against concurrency, and reruns from the cache.

Starts the OpenAI-compatible test server (tests/llm_server.py) in its own process on 127.0.0.1
with a fixed reply latency (default 200 ms), then:

* **the whole job** (``--stage``, default 5,000 clips, one mir request each): ``llark
  instruct``'s own entry point on the DirectRunner with ``--stage-workers`` processes x
  ``--stage-concurrency`` requests in flight, then the same job again with ``--force`` from the
  warm cache. The steady-state rate is taken from the server's own reply times (between the
  10th and the 90th percentile reply), against the bound ``workers x concurrency / latency``;
  the CPU time per request in that window is summed over this process, its descendants (the
  runner's workers) and, apart, the server (``psutil``). The rerun must send nothing and write
  the same records.
* **the HTTP call alone** (``--client-requests``): CPU per request of ``OpenAIChatBackend``'s
  call against the openai client's own ``post`` of the same body, one thread, on a second
  server without latency;
* **thread-pool levels** (``--levels``): distinct (clip, mir) units through the generator the
  stage uses (prompt building, the ``openai`` client, the reply cache, parsing, validation,
  grounding) on a pool of that many threads in this process, after one untimed warm-up round;
  bound ``concurrency / latency``; then again from the warm cache.

    .venv/bin/python benchmarks/instruct_throughput.py [--latency 0.2] [--levels 1,8,32,128]
        [--stage 5000] [--stage-workers 2] [--stage-concurrency 32] [--input-shards 1]
        [--client-requests 300] [--markdown FILE]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotate.instruct.cache import LocalCacheStore, RequestCache  # noqa: E402
from annotate.instruct.facts import ChordSegment, ClipFacts  # noqa: E402
from annotate.instruct.generate import (  # noqa: E402
    GenerationSettings,
    InstructionGenerator,
    LLMWriter,
)
from annotate.instruct.llm import LLMSettings, OpenAIChatBackend  # noqa: E402


def clip_facts(i: int) -> ClipFacts:
    return ClipFacts(clip_id=f"bench:{i:06d}:0-23777", dataset="fma", duration_s=23.777,
                     source_id=f"{i:06d}", title=f"Benchmark song {i}", genres=("Rock",),
                     tags=("guitar", "drums", "loud"), tempo_bpm=120.0 + i % 40,
                     tempo_confidence=0.9, meter=4, meter_confidence=0.8, key="A minor",
                     key_confidence=0.7,
                     chords=(ChordSegment(0, 4, "A:min"), ChordSegment(4, 8, "F:maj"),
                             ChordSegment(8, 12, "C:maj"), ChordSegment(12, 16, "G:maj")),
                     chords_confidence=0.6)


class Unit:
    """Pool target: one (clip, mir) unit; returns its tally."""

    def __init__(self, gen: InstructionGenerator) -> None:
        self.gen = gen

    def __call__(self, facts: ClipFacts) -> Counter:
        tally: Counter = Counter()
        result = self.gen.generate(facts, "mir", tally)
        if not result.conversations:
            raise RuntimeError(f"{facts.clip_id}: no conversation")
        return tally


def run_level(url: str, cache_dir: Path, concurrency: int, clips: list[ClipFacts],
              warmup: list[ClipFacts] = ()) -> tuple[float, Counter]:
    """Time ``clips`` through the generator on ``concurrency`` threads. ``warmup`` units run
    first, untimed, so that the threads, the HTTP connections and the server's connection
    threads exist before the clock starts (a long job pays that once)."""
    settings = LLMSettings(model="bench-model", base_url=url, timeout_s=30.0)
    chat = OpenAIChatBackend(settings, "bench-key", RequestCache(LocalCacheStore(cache_dir)))
    gen = InstructionGenerator(LLMWriter(chat, GenerationSettings()), GenerationSettings())
    total: Counter = Counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(Unit(gen), warmup))
        start = time.perf_counter()
        for tally in pool.map(Unit(gen), clips):
            total.update(tally)
        wall = time.perf_counter() - start
    return wall, total


@dataclass(frozen=True)
class JobRun:
    """One run of the whole ``llark instruct`` job, as the server and the process table saw it."""

    label: str
    wall_s: float
    requests: int               # HTTP requests the server answered during the run
    cache_hits: int
    first_request_s: float      # from the command's start to the first request's arrival
    steady_rate: float          # requests/s between the 10th and the 90th percentile reply
    cpu_per_request_ms: dict[str, float]   # steady state: "llark" (runner + workers), "server"
    max_in_flight: int          # most requests the server held at once during the run
    mean_in_flight: float       # steady state: requests the server held, on average
    mean_latency_ms: float      # steady state: arrival to reply, as the server measured it


def mean_in_flight(timings: list[tuple[float, float]], t0: float, t1: float) -> float:
    """Requests the server held on average between ``t0`` and ``t1``."""
    held = sum(max(0.0, min(r, t1) - max(a, t0)) for a, r in timings)
    return held / (t1 - t0)


def most_in_flight(timings: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _r in timings] + [(r, -1) for _a, r in timings])
    most = now = 0
    for _t, step in events:
        now += step
        most = max(most, now)
    return most


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + "/stats", timeout=10) as resp:
        return json.loads(resp.read())


class CpuSampler:
    """CPU seconds of this process, its descendants (the DirectRunner's workers) and the
    server, sampled every ``period_s`` (``time.monotonic``: the server's clock too)."""

    def __init__(self, server_pid: int, period_s: float = 0.25) -> None:
        import psutil

        self._psutil = psutil
        self.me = psutil.Process()
        self.server_pid = server_pid
        self.period_s = period_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> dict[str, float]:
        sums = {"llark": 0.0, "server": 0.0}
        for proc in [self.me] + self.me.children(recursive=True):
            try:
                t = proc.cpu_times()
            except self._psutil.Error:       # a process that just ended
                continue
            sums["server" if proc.pid == self.server_pid else "llark"] += t.user + t.system
        return sums

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._cpu()))
            self._stop.wait(self.period_s)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds spent from the last sample before ``t0`` to the first after ``t1``."""
        before = [c for t, c in self.samples if t <= t0] or [self.samples[0][1]]
        after = [c for t, c in self.samples if t >= t1] or [self.samples[-1][1]]
        return {k: after[0][k] - before[-1][k] for k in before[-1]}


def steady_window(replies: list[float]) -> tuple[float, float, int]:
    """``(t10, t90, replies between)``: the reply times of the 10th and 90th percentile."""
    replies = sorted(replies)
    i10, i90 = len(replies) // 10, (len(replies) * 9) // 10
    return replies[i10], replies[i90], i90 - i10


def annotated_rows(n_clips: int) -> list[dict]:
    from pipelines import schema as s

    rows = []
    for i in range(n_clips):
        f = clip_facts(i)
        clip = s.Clip(id=s.clip_id("fma", f.source_id, 0, 23.777), dataset="fma",
                      source_id=f.source_id, split="train", audio_uri=f"/x/{i}.mp3",
                      start_s=0.0, end_s=23.777, sample_rate_hz=44100, title=f.title,
                      genres=f.genres, tags=f.tags)
        ann = s.Annotation(clip.id, "consensus", f.tempo_bpm, 0.9, (), (), 4, 0.8, f.key,
                           0.7, tuple(s.ChordSegment(c.start_s, c.end_s, c.label)
                                      for c in f.chords), 0.6)
        rows.append(s.AnnotatedClip(clip, ann).to_row())
    return rows


def output_rows(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    from pipelines import schema as s

    index = s.read_index(out, "instruction")
    return sorted(repr(sorted(r.items())) for e in index.shards
                  for r in pq.read_table(out / e.path).to_pylist())


def run_stage_job(url: str, server_pid: int, n_clips: int, concurrency: int, workers: int,
                  input_shards: int = 1) -> tuple[list[JobRun], bool]:
    """The whole ``llark instruct`` job (the command's own entry point, DirectRunner with
    ``workers`` processes) on ``n_clips`` annotated clips (mir: one request each), then the
    same job again (``--force``) from the warm cache. Returns both runs and whether the
    rerun wrote the same records."""
    from pipelines import schema as s
    from pipelines.instruct import run as instruct_run

    runs = []
    with tempfile.TemporaryDirectory(prefix="llark-bench-stage-") as tmp:
        root = Path(tmp)
        s.write_record_set(root / "ann", annotated_rows(n_clips), "annotated_clip", "annotate",
                           rows_per_shard=-(-n_clips // input_shards))
        argv = ["--input", str(root / "ann"), "--output", str(root / "out"), "--llm", "openai",
                "--base-url", url, "--model", "bench-model", "--families", "mir",
                "--concurrency", str(concurrency), "--cache-dir", str(root / "cache"),
                "--direct_num_workers", str(workers)]
        os.environ.setdefault("OPENAI_API_KEY", "bench-key")
        outputs = []
        for label, extra in (("first run", []), ("rerun (cache)", ["--force"])):
            before = server_stats(url)
            with CpuSampler(server_pid) as cpu:
                start_mono, start = time.monotonic(), time.perf_counter()
                if instruct_run(argv + extra) != 0:
                    raise RuntimeError("llark instruct failed")
                wall = time.perf_counter() - start
            after = server_stats(url)
            new = [tuple(t) for t in after["timings"][len(before["timings"]):]]
            index = s.read_index(root / "out", "instruction")
            outputs.append(output_rows(root / "out"))
            rate, per_req, first, held, latency = 0.0, {}, float("nan"), 0.0, 0.0
            if len(new) >= 20:
                t10, t90, n = steady_window([r for _a, r in new])
                rate = n / (t90 - t10)
                per_req = {k: v / n * 1000 for k, v in cpu.between(t10, t90).items()}
                first = min(a for a, _r in new) - start_mono
                held = mean_in_flight(new, t10, t90)
                inside = [r - a for a, r in new if t10 <= r <= t90]
                latency = sum(inside) / len(inside) * 1000
            runs.append(JobRun(label, wall, after["requests"] - before["requests"],
                               int(index.counts["llm_cache_hits"]), first, rate, per_req,
                               most_in_flight(new), held, latency))
    return runs, outputs[0] == outputs[1]


def client_cpu(n: int) -> str:
    """CPU per request of the HTTP call alone, one thread, against a second server with no
    latency: ``OpenAIChatBackend._send`` (the openai client's URL and headers, the request on
    its httpx client) against the openai client's own ``post`` of the same body."""
    from annotate.instruct.prompts import ChatMessage

    proc, url = start_server(0.0)
    try:
        chat = OpenAIChatBackend(LLMSettings(model="bench-model", base_url=url), "bench-key")
        msgs = [m.as_dict() for m in (ChatMessage("system", "Task family: mir " + "x" * 2000),
                                      ChatMessage("user", "hello " * 200))]
        body = {"model": "bench-model", "messages": msgs, **chat.params(True)}
        import openai
        from openai.types.chat import ChatCompletion

        client = openai.OpenAI(api_key="bench-key", base_url=url, max_retries=0)
        calls = {"ours (_send)": ClientCall(chat, msgs, None),
                 "openai client.post": ClientCall(client, body, ChatCompletion)}
        rows = []
        for name, call in calls.items():
            call()
            cpu = []
            for _rep in range(3):
                start = time.process_time()
                for _i in range(n):
                    call()
                cpu.append((time.process_time() - start) / n * 1000)
            rows.append(f"| {name} | {n} x 3 | {min(cpu):.2f} | {max(cpu):.2f} |")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    return ("| HTTP call | requests | CPU ms per request (best of 3) | (worst of 3) |\n"
            "|---|---:|---:|---:|\n" + "\n".join(rows))


class ClientCall:
    """One request through ours (``cast_to`` None) or the openai client (no closures)."""

    def __init__(self, target: object, payload: object, cast_to: object) -> None:
        self.target, self.payload, self.cast_to = target, payload, cast_to

    def __call__(self) -> object:
        if self.cast_to is None:
            return self.target._send(self.payload, Counter())
        return self.target.post("/chat/completions", cast_to=self.cast_to, body=self.payload)


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_server", "--latency", str(latency)],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().strip())
    return proc, f"http://127.0.0.1:{port}/v1"


def level_table(levels: list[int], url: str, latency: float, min_requests: int,
                per_thread: int) -> str:
    rows = []
    for level in levels:
        n = max(min_requests, per_thread * level)
        clips = [clip_facts(level * 100_000 + i) for i in range(n)]
        warm = [clip_facts(level * 100_000 + 50_000 + i) for i in range(level)]
        with tempfile.TemporaryDirectory(prefix="llark-bench-cache-") as tmp:
            wall, tally = run_level(url, Path(tmp), level, clips, warm)
            rewall, retally = run_level(url, Path(tmp), level, clips, warm)
        sent = tally["llm_requests"]
        rate = sent / wall
        bound = level / latency
        rows.append((level, sent, wall, rate, bound, rate / bound, rewall,
                     retally["llm_requests"], rewall / wall))
        print(f"concurrency {level:>4}: {sent:>5} requests in {wall:6.2f} s = "
              f"{rate:7.1f} req/s (bound {bound:6.1f}, {rate / bound:6.1%}); rerun from "
              f"cache {rewall:6.3f} s ({retally['llm_requests']} requests, "
              f"{rewall / wall:.1%} of the first run)", flush=True)
    header = ("| concurrency | requests | wall (s) | requests/s | bound c/latency | of bound "
              "| rerun from cache (s) | rerun requests | rerun / first |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    return "\n".join([header] + [
        f"| {c} | {n} | {w:.2f} | {r:.1f} | {b:.0f} | {e:.0%} | {rw:.3f} | {rn} | {rr:.1%} |"
        for c, n, w, r, b, e, rw, rn, rr in rows])


def stage_table(runs: list[JobRun], same: bool, workers: int, concurrency: int,
                latency: float) -> str:
    bound = workers * concurrency / latency
    lines = ["| run | wall (s) | requests | first request at (s) | steady requests/s | bound "
             "workers x concurrency / latency | of bound | in flight: most / mean | server "
             "latency (ms) | CPU ms per request: llark | server | cache hits |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        steady = (f"{r.steady_rate:.1f} | {bound:.0f} | {r.steady_rate / bound:.1%}"
                  if r.steady_rate else f"- | {bound:.0f} | -")
        cpu = (f"{r.cpu_per_request_ms['llark']:.2f} | {r.cpu_per_request_ms['server']:.2f}"
               if r.cpu_per_request_ms else "- | -")
        held = (f"{r.max_in_flight} / {r.mean_in_flight:.1f} | {r.mean_latency_ms:.0f}"
                if r.steady_rate else f"{r.max_in_flight} / - | -")
        lines.append(f"| {r.label} | {r.wall_s:.1f} | {r.requests} | {r.first_request_s:.1f} | "
                     f"{steady} | {held} | {cpu} | {r.cache_hits} |")
    lines.append("")
    lines.append(f"Rerun from the cache wrote the same records as the first run: "
                 f"{'yes' if same else 'NO'}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server reply latency (s)")
    parser.add_argument("--levels", default="1,8,32,128",
                        help="concurrency levels of the thread-pool runs ('' = none)")
    parser.add_argument("--min-requests", type=int, default=40)
    parser.add_argument("--per-thread", type=int, default=24,
                        help="requests per thread at each level (at least --min-requests)")
    parser.add_argument("--markdown", help="append the result tables to this file")
    parser.add_argument("--stage", type=int, default=5000,
                        help="clips (= requests) of the whole llark instruct job (0 = none)")
    parser.add_argument("--stage-concurrency", type=int, default=32)
    parser.add_argument("--stage-workers", type=int, default=2)
    parser.add_argument("--client-requests", type=int, default=300,
                        help="requests of the HTTP-call CPU comparison (0 = none)")
    parser.add_argument("--input-shards", type=int, default=1,
                        help="Parquet files the annotated clips are written in")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]

    load_before = os.getloadavg()
    proc, url = start_server(args.latency)
    tables = []
    try:
        if args.client_requests:
            tables.append("HTTP call alone, one thread, server without latency:\n\n"
                          + client_cpu(args.client_requests))
        if levels:
            tables.append("Thread pool in one process (no Beam):\n\n" + level_table(
                levels, url, args.latency, args.min_requests, args.per_thread))
        if args.stage:
            runs, same = run_stage_job(url, proc.pid, args.stage, args.stage_concurrency,
                                       args.stage_workers, args.input_shards)
            tables.append(
                f"Whole `llark instruct` job ({args.stage} clips in {args.input_shards} "
                "Parquet file(s), mir: one request each; "
                f"DirectRunner, {args.stage_workers} worker processes x `--concurrency "
                f"{args.stage_concurrency}`; Beam start-up, Parquet write and commit in the "
                "wall time; steady state = between the 10th and 90th percentile reply):\n\n"
                + stage_table(runs, same, args.stage_workers, args.stage_concurrency,
                              args.latency))
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    load_after = os.getloadavg()

    table = "\n\n".join(tables)
    print()
    print(table)
    meta = (f"Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()} "
            f"({os.cpu_count()} CPUs, Python {platform.python_version()}), server latency "
            f"{args.latency * 1000:.0f} ms, load average {load_before[0]:.1f} before, "
            f"{load_after[0]:.1f} after")
    print(meta)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n\n{meta}:\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
