"""Memory of one worker process as its harness threads set up their DoFns: shared vs per copy.

    python benchmarks/worker_memory.py [--threads 1,2,4] [--backend consensus]

A Dataflow worker process runs many harness threads (12 by default for Python); each
unpickles its own copy of a stage's DoFn from the job and calls ``setup()``. This script does
exactly that in a fresh process for each case and reports the resident memory (RSS) after
the copies are set up:

* ``annotate`` — :class:`pipelines.annotate.AnnotateTrackFn` (models shared through
  ``apache_beam.utils.shared.Shared``), against the baseline of one annotator per copy
  (``build_annotator`` per ``setup()``, what ``AnnotateClipFn`` did before);
* ``embed`` — RunInference's own DoFn with :class:`pipelines.embed.EmbedModelHandler`
  (RunInference keeps the model in a ``Shared`` handle), against ``load_model()`` per copy.

Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def one_case(case: str, threads: int, backend: str, encoder: str) -> dict:
    import apache_beam  # noqa: F401  (the harness has Beam loaded before any DoFn)
    from apache_beam.internal import pickler     # how Beam ships DoFns to the workers

    base = rss_mb()
    t0 = time.perf_counter()
    keep = []
    if case == "annotate-shared":
        from annotate.annotator import AnnotatorConfig
        from pipelines.annotate import AnnotateTrackFn

        payload = pickler.dumps(AnnotateTrackFn(AnnotatorConfig(backend=backend)))
        for _ in range(threads):
            fn = pickler.loads(payload)
            fn.setup()
            keep.append(fn)
    elif case == "annotate-per-copy":
        from annotate.annotator import AnnotatorConfig, build_annotator

        keep = [build_annotator(AnnotatorConfig(backend=backend)) for _ in range(threads)]
    elif case == "embed-shared":
        from apache_beam.ml.inference.base import _RunInferenceDoFn

        from pipelines.embed import EmbedConfig, EmbedModelHandler

        cfg = EmbedConfig(input="x", output="y", encoder=encoder, device="cpu")
        payload = pickler.dumps(_RunInferenceDoFn(EmbedModelHandler(cfg), time, "llark_embed"))
        for _ in range(threads):
            fn = pickler.loads(payload)
            fn.setup()
            keep.append(fn)
    elif case == "embed-per-copy":
        from pipelines.embed import EmbedConfig, EmbedModelHandler

        cfg = EmbedConfig(input="x", output="y", encoder=encoder, device="cpu")
        keep = [EmbedModelHandler(cfg).load_model() for _ in range(threads)]
    else:
        raise SystemExit(f"unknown case {case}")
    return {"case": case, "threads": threads, "rss_mb": rss_mb(), "beam_base_mb": base,
            "setup_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--backend", default="consensus")
    ap.add_argument("--encoder", default="jukebox-tiny-random")
    ap.add_argument("--cases", default="annotate-shared,annotate-per-copy,embed-shared,"
                                       "embed-per-copy")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one_case(args.one[0], int(args.one[1]), args.backend,
                                              args.encoder)))
        return 0
    print(f"# annotate backend {args.backend}; embed encoder {args.encoder}; RSS after setup "
          "of N DoFn copies in one process (Beam imported: 'base')")
    print("case                threads   RSS MB   base MB   setup s")
    for case in args.cases.split(","):
        for n in (int(x) for x in args.threads.split(",")):
            proc = subprocess.run([sys.executable, __file__, "--one", case, str(n), "--backend",
                                   args.backend, "--encoder", args.encoder],
                                  capture_output=True, text=True, cwd=ROOT)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")),
                        None)
            if line is None:
                print(f"{case:<20}{n:>7}  failed: {proc.stderr[-1500:]}")
                continue
            r = json.loads(line[len("RESULT "):])
            print(f"{case:<20}{n:>7} {r['rss_mb']:8.0f} {r['beam_base_mb']:9.0f} "
                  f"{r['setup_s']:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
