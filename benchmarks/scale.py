"""Scale: does the per-record cost stay flat as the work grows? Ingest, instruct and shards.

    python benchmarks/scale.py [--sizes 1000,10000,100000] [--stages ingest,instruct,shards]
                               [--workers 2] [--tiny-audio-s 0] [--graph]

For each stage and size, a fresh process runs the stage's command (``llark ingest`` /
``llark shards``, the code path users run, on the multi-process DirectRunner) and reports

* the launcher's wall time and peak memory (``ru_maxrss`` of the launching process: reading
  the metadata, writing the task plan, building the job, the commit);
* the workers' CPU time per record (``RUSAGE_CHILDREN``: the DirectRunner's worker processes
  are children of the launcher) and the launcher's own CPU time per record.

Inputs: ingest reads FMA-shaped metadata (``tests/scale_data.py``: FMA's 52-column header,
varied text) whose audio is absent (every task ends as an ``AudioNotFoundError`` dead letter
after the worker looked for its file; run with ``--max-error-rate 1``) or, with
``--tiny-audio-s S``, one S-second mp3 hard-linked under every track. Instruct turns N annotated
clips into instructions with the offline template generator (``--llm template``). Shards joins
N clip records with two conversations and a 16-d embedding each (written with
``pipelines.schema``).

``--graph`` also builds the ingest job with ``--runner DataflowRunner --dry_run`` at each size,
with the task plan and, as the baseline, with the earlier ``beam.Create(tasks)`` source, and
prints both pipeline-proto sizes. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATAFLOW_DRY = ["--runner", "DataflowRunner", "--dry_run=True", "--project", "llark-bench",
                "--region", "us-central1", "--temp_location", "gs://llark-bench/tmp",
                "--staging_location", "gs://llark-bench/staging", "--no_auth",
                "--sdk_location", "container"]


# --------------------------------------------------------------------------- inputs

def make_input(stage: str, work: Path, n: int, tiny_audio_s: float) -> None:
    if stage == "ingest":
        from tests.scale_data import write_fma_shaped

        write_fma_shaped(work / "fma", n, seed=n, tiny_audio_s=tiny_audio_s)
    elif stage == "instruct":
        make_instruct_input(work, n)
    else:
        make_shards_input(work, n)


OUTPUTS = {"ingest": "clips", "instruct": "ins", "shards": "shards"}


def stage_argv(stage: str, work: Path) -> list[str]:
    if stage == "ingest":
        return ["--dataset", "fma", "--data-dir", str(work / "fma"), "--output",
                str(work / "clips"), "--max-error-rate", "1"]
    if stage == "instruct":
        return ["--input", str(work / "ann"), "--output", str(work / "ins"), "--llm", "template"]
    return ["--clips", str(work / "clips"), "--instructions", str(work / "ins"),
            "--embeddings", str(work / "emb"), "--output", str(work / "shards")]


def _clips(n: int) -> list:
    from pipelines import schema as s

    return [s.Clip(id=s.clip_id("fma", f"{i:06d}", 0.0, 1.0), dataset="fma",
                   source_id=f"{i:06d}", split="train", audio_uri=f"/absent/{i:06d}.mp3",
                   start_s=0.0, end_s=1.0, sample_rate_hz=44100, track_duration_s=1.0,
                   title=f"Track {i}", genres=("Rock",)) for i in range(n)]


def make_instruct_input(work: Path, n: int) -> None:
    """N annotated clips (one window each, an annotation with beats, key and a chord)."""
    from pipelines import schema as s
    from tests.shards_testdata import annotation, write_set

    write_set(work / "ann", "annotated_clip",
              [s.AnnotatedClip(c, annotation(c.id)).to_row() for c in _clips(n)])


def make_shards_input(work: Path, n: int) -> None:
    from tests.shards_testdata import embedding, embedding_counts, instructions, write_set

    clips = _clips(n)
    write_set(work / "clips", "clip", [c.to_row() for c in clips])
    write_set(work / "ins", "instruction",
              [i.to_row() for c in clips for i in instructions(c)])
    write_set(work / "emb", "embedding", [embedding(c, seed=k).to_row()
                                          for k, c in enumerate(clips)],
              counts=embedding_counts())


# --------------------------------------------------------------------------- one measurement

def _cpu(a: resource.struct_rusage, b: resource.struct_rusage) -> float:
    return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)


def measure_one(stage: str, n: int, work: Path, workers: int) -> dict:
    """Runs in a fresh process (the inputs were made by another): time the stage command."""
    if stage == "ingest":
        from pipelines.ingest import run
    elif stage == "instruct":
        from pipelines.instruct import run
    else:
        from pipelines.shards import run
    argv = stage_argv(stage, work) + ["--direct_num_workers", str(workers)]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = run(argv)
    wall = time.perf_counter() - t0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    index_path = work / OUTPUTS[stage] / "_index.json"
    index = json.loads(index_path.read_text()) if rc == 0 else {}
    return {"stage": stage, "records": n, "rc": rc, "wall_s": wall,
            "launcher_peak_mb": self1.ru_maxrss / 1024, "peak_before_run_mb": rss_before / 1024,
            "launcher_cpu_s": _cpu(self0, self1), "workers_cpu_s": _cpu(kids0, kids1),
            "counts": index.get("counts", {}), "dead_letters": index.get("dead_letters", {})}


# --------------------------------------------------------------------------- job graph sizes

def graph_sizes(n: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(transforms, proto bytes) of the ingest job with the task plan and with beam.Create."""
    import apache_beam as beam

    from pipelines.datasets import read_tasks
    from pipelines.datasets.common import ReaderOptions
    from pipelines.ingest import IngestConfig, IngestTrackFn, build_ingest
    from pipelines.plan import write_plan
    from pipelines.stage import pipeline_options, with_dead_letters, write_records
    from pipelines.schema import CLIP_SCHEMA
    from tests.scale_data import write_fma_shaped

    out = []
    with tempfile.TemporaryDirectory(prefix="llark-scale-graph-") as tmp:
        data = str(write_fma_shaped(Path(tmp) / "fma", n, seed=n))
        cfg = IngestConfig(dataset="fma", data_dir=data, output=f"{tmp}/out")
        for source in ("plan", "create"):
            p = beam.Pipeline(options=pipeline_options(DATAFLOW_DRY))
            staging = f"{tmp}/staging-{source}"
            tasks = read_tasks("fma", data, ReaderOptions())
            if source == "plan":
                build_ingest(p, write_plan(tasks, staging), cfg.window_params(), staging)
            else:   # the earlier graph: every task pickled into the job
                clips = with_dead_letters(p | "Tasks" >> beam.Create(list(tasks))
                                          | "Spread" >> beam.Reshuffle(), "Ingest",
                                          IngestTrackFn(cfg.window_params()), "ingest", staging)
                write_records(clips, CLIP_SCHEMA, staging)
            proto = p.run().job.proto_pipeline
            out.append((len(proto.components.transforms), proto.ByteSize()))
    return out[0], out[1]


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--stages", default="ingest,instruct,shards")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tiny-audio-s", type=float, default=0.0)
    ap.add_argument("--graph", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("STAGE", "N", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--make", nargs=3, metavar=("STAGE", "N", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make:
        make_input(args.make[0], Path(args.make[2]), int(args.make[1]), args.tiny_audio_s)
        return 0
    if args.one:
        print("RESULT " + json.dumps(measure_one(args.one[0], int(args.one[1]),
                                                 Path(args.one[2]), args.workers)))
        return 0
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"# {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {args.workers} DirectRunner workers; audio: "
          f"{'absent' if not args.tiny_audio_s else f'{args.tiny_audio_s:g} s mp3'}")
    if args.graph:
        print("\ningest job graph (DataflowRunner --dry_run): transforms, pipeline proto bytes")
        for n in sizes:
            (pt, pb), (ct, cb) = graph_sizes(n)
            print(f"  {n:>7} rows: task plan {pt} transforms, {pb / 1e3:8.1f} KB | "
                  f"beam.Create {ct} transforms, {cb / 1e3:9.1f} KB")
    print("\nstage    records  wall s  launcher peak MB  launcher ms/rec  workers ms/rec  rc")
    for stage in args.stages.split(","):
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix=f"llark-scale-{stage}-") as work:
                common = [str(n), work, "--tiny-audio-s", str(args.tiny_audio_s),
                          "--workers", str(args.workers)]
                subprocess.run([sys.executable, __file__, "--make", stage, *common], check=True,
                               cwd=ROOT)
                proc = subprocess.run([sys.executable, __file__, "--one", stage, *common],
                                      capture_output=True, text=True, cwd=ROOT)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"{stage:<8} {n:>7}  failed:\n{proc.stderr[-3000:]}")
                continue
            r = json.loads(line[len("RESULT "):])
            print(f"{stage:<8} {n:>7} {r['wall_s']:7.1f} {r['launcher_peak_mb']:17.0f} "
                  f"{1e3 * r['launcher_cpu_s'] / n:16.3f} {1e3 * r['workers_cpu_s'] / n:15.3f}"
                  f"  {r['rc']}")
            if r["rc"] != 0:
                print(proc.stderr[-2000:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
