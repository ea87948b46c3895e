"""Instruct throughput: LLM requests per second against concurrency, and a rerun from the cache.

Starts the OpenAI-compatible test server (tests/llm_server.py) in its own process on 127.0.0.1
with a fixed reply latency (default 200 ms), then for each concurrency runs distinct
(clip, mir) units through the real path the Beam stage uses: prompt building, the ``openai``
client (``OpenAIChatBackend``), the on-disk reply cache, tolerant parsing, validation and
grounding, from a thread pool of that many workers, after one untimed warm-up round (threads
and HTTP connections up). The bound is ``concurrency / latency``. Each level then runs again
from its (now warm) cache: no request is sent.

    .venv/bin/python benchmarks/instruct_throughput.py [--latency 0.2] [--levels 1,8,32,128]
                                                       [--stage 400] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotate.instruct.cache import LocalCacheStore, RequestCache  # noqa: E402
from annotate.instruct.facts import ChordSpan, ClipFacts  # noqa: E402
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
                     chords=(ChordSpan(0, 4, "A:min"), ChordSpan(4, 8, "F:maj"),
                             ChordSpan(8, 12, "C:maj"), ChordSpan(12, 16, "G:maj")),
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


def run_stage_job(url: str, n_clips: int, concurrency: int, workers: int) -> list[str]:
    """The whole ``llark instruct`` job (DirectRunner, ``workers`` processes) on ``n_clips``
    annotated clips, then the same job again (``--force``) from the warm cache."""
    from pipelines import schema as s
    from pipelines.instruct import run as instruct_run

    out_lines = []
    with tempfile.TemporaryDirectory(prefix="llark-bench-stage-") as tmp:
        root = Path(tmp)
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
        s.write_record_set(root / "ann", rows, "annotated_clip", "annotate")
        argv = ["--input", str(root / "ann"), "--output", str(root / "out"), "--llm", "openai",
                "--base-url", url, "--model", "bench-model", "--families", "mir",
                "--concurrency", str(concurrency), "--cache-dir", str(root / "cache"),
                "--direct_num_workers", str(workers)]
        os.environ.setdefault("OPENAI_API_KEY", "bench-key")
        times = []
        for extra in ([], ["--force"]):
            start = time.perf_counter()
            if instruct_run(argv + extra) != 0:
                raise RuntimeError("llark instruct failed")
            times.append(time.perf_counter() - start)
            index = s.read_index(root / "out", "instruction")
            out_lines.append(
                f"| {'rerun (cache)' if extra else 'first run'} | {n_clips} | {workers} x "
                f"{concurrency} | {times[-1]:.1f} | {index.counts['llm_requests']} | "
                f"{index.counts['llm_requests'] / times[-1]:.1f} | "
                f"{index.counts['llm_cache_hits']} |")
    return out_lines


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_server", "--latency", str(latency)],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().strip())
    return proc, f"http://127.0.0.1:{port}/v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server reply latency (s)")
    parser.add_argument("--levels", default="1,8,32,128", help="concurrency levels")
    parser.add_argument("--min-requests", type=int, default=40)
    parser.add_argument("--per-thread", type=int, default=24,
                        help="requests per thread at each level (at least --min-requests)")
    parser.add_argument("--markdown", help="append the result table to this file")
    parser.add_argument("--stage", type=int, default=0,
                        help="also run the whole llark instruct job on this many clips")
    parser.add_argument("--stage-concurrency", type=int, default=32)
    parser.add_argument("--stage-workers", type=int, default=2)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]

    proc, url = start_server(args.latency)
    rows = []
    try:
        for level in levels:
            n = max(args.min_requests, args.per_thread * level)
            clips = [clip_facts(level * 100_000 + i) for i in range(n)]
            warm = [clip_facts(level * 100_000 + 50_000 + i) for i in range(level)]
            with tempfile.TemporaryDirectory(prefix="llark-bench-cache-") as tmp:
                wall, tally = run_level(url, Path(tmp), level, clips, warm)
                rewall, retally = run_level(url, Path(tmp), level, clips, warm)
            sent = tally["llm_requests"]
            rate = sent / wall
            bound = level / args.latency
            rows.append((level, sent, wall, rate, bound, rate / bound, rewall,
                         retally["llm_requests"], rewall / wall))
            print(f"concurrency {level:>4}: {sent:>5} requests in {wall:6.2f} s = "
                  f"{rate:7.1f} req/s (bound {bound:6.1f}, {rate / bound:6.1%}); rerun from "
                  f"cache {rewall:6.3f} s ({retally['llm_requests']} requests, "
                  f"{rewall / wall:.1%} of the first run)", flush=True)
        stage_lines = (run_stage_job(url, args.stage, args.stage_concurrency, args.stage_workers)
                       if args.stage else [])
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)

    header = ("| concurrency | requests | wall (s) | requests/s | bound c/latency | of bound "
              "| rerun from cache (s) | rerun requests | rerun / first |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [header] + [
        f"| {c} | {n} | {w:.2f} | {r:.1f} | {b:.0f} | {e:.0%} | {rw:.3f} | {rn} | {rr:.1%} |"
        for c, n, w, r, b, e, rw, rn, rr in rows]
    table = "\n".join(lines)
    if stage_lines:
        table += ("\n\nWhole `llark instruct` job (DirectRunner, Beam start-up and commit "
                  "included):\n\n| run | clips | workers x concurrency | wall (s) | requests "
                  "| requests/s | cache hits |\n|---|---:|---:|---:|---:|---:|---:|\n"
                  + "\n".join(stage_lines))
    print()
    print(table)
    if args.markdown:
        meta = (f"\n\nRun {dt.date.today().isoformat()} on {platform.node()} "
                f"({os.cpu_count()} CPUs, Python {platform.python_version()}), latency "
                f"{args.latency * 1000:.0f} ms:\n\n")
        with open(args.markdown, "a") as f:
            f.write(meta + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
