"""Peak host memory (RSS) of ``llark train`` on CPU, measured, against the per-rank arithmetic of
docs/training.md.

    .venv/bin/python benchmarks/train_memory.py [--rows 48] [--steps 3] [--json F]

Writes a shard set of ``--rows`` clips with Jukebox-sized embeddings (238 x 4800 float16) with
the shard stage's writer (``benchmarks/train_reader.py``), then runs ``model.train.train`` in a
fresh process for each case and reads that process's peak RSS (``ru_maxrss``):

* ``import``: the process after importing torch, transformers, accelerate and the trainer,
  before building anything (the base every rank pays);
* ``tiny``: the tiny config (0.3M parameters + the 4800 -> 64 projector);
* ``mid``: a ~100M-parameter Llama built in code (14 layers, hidden 768, MLP 2048, the
  4800 -> 768 projector), ``--steps`` optimizer steps of batch 1.

Each case also runs with the shuffle buffer capped at 8 MB, so the data share is visible. The
prediction: base + 16 B per parameter (fp32 weights, gradients, AdamW's two moments) +
the shuffle buffer (``min(shuffle_buffer rows, shuffle_buffer_mb, rows in the set)``) + one
row group + the batch, + activations (not modelled: the residual is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = {
    "tiny": ["tiny_hidden_size=64", "tiny_layers=2", "tiny_heads=4",
             "tiny_intermediate_size=128", "per_device_batch_size=4"],
    "mid": ["tiny_hidden_size=768", "tiny_layers=14", "tiny_heads=12",
            "tiny_intermediate_size=2048", "per_device_batch_size=1"],
}


def child(case: str, shards: str, output: str, steps: int, buffer_mb: float) -> None:
    """Run in a fresh process: train, then print the peak RSS and the parameter count."""
    from model.config import TrainConfig
    from model.train import train

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if case == "import":
        print(json.dumps({"peak_rss": base, "base_rss": base, "params": 0}))
        return
    kv = dict(a.split("=", 1) for a in CASES[case])
    cfg = TrainConfig(tiny_hidden_size=int(kv["tiny_hidden_size"]),
                      tiny_layers=int(kv["tiny_layers"]), tiny_heads=int(kv["tiny_heads"]),
                      tiny_intermediate_size=int(kv["tiny_intermediate_size"]),
                      per_device_batch_size=int(kv["per_device_batch_size"]), max_steps=steps,
                      save_every=10 ** 6, log_every=1, trackers=(), shuffle_buffer_mb=buffer_mb,
                      verify_checksums=False)
    import torch

    from model.modeling import ModelSpec, build_model, tiny_tokenizer

    with torch.device("meta"):                     # count the parameters without memory
        n = sum(p.numel() for p in
                build_model(ModelSpec.from_config(cfg, 4800), tiny_tokenizer()).parameters())
    train(cfg, shards, output, resume=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak, "base_rss": base, "params": n}))


def measure(case: str, shards: Path, root: Path, steps: int, buffer_mb: float) -> dict:
    out = root / f"run-{case}-{buffer_mb:g}"
    cmd = [sys.executable, __file__, "--child", case, "--shards", str(shards), "--output",
           str(out), "--steps", str(steps), "--buffer-mb", str(buffer_mb)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode:
        raise RuntimeError(f"{case}: {done.stderr[-3000:]}")
    rec = json.loads(done.stdout.strip().splitlines()[-1])
    rec["wall_s"] = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shards", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--output", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--buffer-mb", type=float, default=256.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.shards, args.output, args.steps, args.buffer_mb)
        return 0

    from benchmarks.train_reader import write_set

    frames, dim = 238, 4800
    row = frames * dim * 2
    root = Path(tempfile.mkdtemp(prefix="llark-train-memory-"))
    mb = 2 ** 20
    out: dict = {"rows": args.rows, "steps": args.steps, "row_mb": row / mb,
                 "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared, loaded), "
                            "CPU only", "date": time.strftime("%Y-%m-%d"), "cases": {}}
    try:
        shards = root / "shards"
        group = write_set(shards, args.rows, frames, dim, 64)
        out["row_group_rows"] = group
        base = measure("import", shards, root, args.steps, 256.0)
        out["cases"]["import"] = {"peak_mb": base["peak_rss"] / mb}
        for case in ("tiny", "mid"):
            for buffer_mb in (256.0, 8.0):
                rec = measure(case, shards, root, args.steps, buffer_mb)
                buffered = min(64, args.rows, max(1, int(buffer_mb * mb // row))) * row
                batch = int(dict(a.split("=") for a in CASES[case])["per_device_batch_size"])
                predicted = (base["peak_rss"] + 16 * rec["params"] + buffered + group * row
                             + batch * row)
                out["cases"][f"{case}@{buffer_mb:g}MB"] = {
                    "params_m": rec["params"] / 1e6, "peak_mb": rec["peak_rss"] / mb,
                    "predicted_mb": predicted / mb,
                    "residual_mb": (rec["peak_rss"] - predicted) / mb,
                    "buffer_mb": buffered / mb, "wall_s": rec["wall_s"]}
                print(case, buffer_mb, json.dumps(out["cases"][f"{case}@{buffer_mb:g}MB"]),
                      file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
