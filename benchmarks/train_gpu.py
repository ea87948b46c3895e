"""GPU training benchmark: a ~1.1B-parameter random Llama through the real trainer.

    python benchmarks/train_gpu.py [--steps 30] [--batch 8] [--json OUT.json]
    python benchmarks/train_gpu.py --dry-run          # tiny sizes on the CPU (a smoke test)

It writes a temporary shard set with Jukebox-sized embeddings (238 frames x 4800 per clip: the
frame grid's count for a default 23.777 s clip, ``embed.base.DEFAULT_CLIP_FRAMES``) and
conversations of about ``--text-tokens`` tokens, then runs ``model.train.train`` (accelerate,
bf16 autocast with float32 master weights, AdamW, cosine schedule, the streaming loader) with a
``tiny`` Llama scaled to hidden 2048, 22 layers, 16 heads, MLP 5632 (~1.13B parameters, full
multi-head attention), training projector + LM. It reports tokens/s (every position the model
processes: audio placeholders and text) over the steps after the warm-up window, and the model
FLOPs utilisation

    MFU = tokens/s x (6 N + 12 L h s) / peak,

with N the parameters (LM + projector), L layers, h hidden size, s sequence length and the
GPU's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s; A100: 312; ``--peak-tflops`` otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from embed.base import DEFAULT_CLIP_FRAMES  # noqa: E402
from model.config import TrainConfig  # noqa: E402
from model.train import train  # noqa: E402
from pipelines.schema import Instruction, Turn  # noqa: E402
from tests.shard_factory import make_row, write_shard_set  # noqa: E402

PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}
WORDS = ("the bass line walks under a bright piano while the drums keep a steady swing and the "
         "harmony moves from the tonic to the subdominant before resolving").split()


def long_row(i: int, frames: int, dim: int, text_tokens: int):
    """A clip whose one conversation has about ``text_tokens`` byte-level tokens."""
    row = make_row(i, n_frames=frames, dim=dim, families=("reasoning",), seed=i)
    answer, k = [], 0
    while len(" ".join(answer)) < text_tokens - 60:
        answer.append(WORDS[k % len(WORDS)])
        k += 1
    conv = row.conversations[0]
    conv = Instruction(id=conv.id, clip_id=conv.clip_id, dataset=conv.dataset, family=conv.family,
                       turns=(Turn("user", "Describe what happens in this music."),
                              Turn("assistant", " ".join(answer) + ".")),
                       backend=conv.backend, model=conv.model, prompt_version=conv.prompt_version)
    return dataclasses.replace(row, conversations=(conv,))


def peak_flops(name: str, override: float) -> float | None:
    if override:
        return override * 1e12
    for key, tf in PEAK_TFLOPS.items():
        if key in name:
            return tf * 1e12
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes on the CPU: checks the script, measures nothing useful")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--frames", type=int, default=DEFAULT_CLIP_FRAMES,
                   help="audio frames per sample (default: a 23.777 s clip's)")
    p.add_argument("--dim", type=int, default=4800, help="audio embedding dimension")
    p.add_argument("--text-tokens", type=int, default=270, help="text tokens per sample (approx.)")
    p.add_argument("--batch", type=int, default=8, help="per-device batch size")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps (the first third warms up)")
    p.add_argument("--clips", type=int, default=64, help="clips in the temporary shard set")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, flash_attention_2)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak of the GPU")
    p.add_argument("--json", help="write the figures here as JSON")
    ns = p.parse_args()
    if ns.dry_run:
        ns.hidden, ns.layers, ns.heads, ns.intermediate = 64, 2, 4, 128
        ns.frames, ns.dim, ns.text_tokens, ns.batch = 8, 16, 80, 2
        ns.steps, ns.clips, ns.workers = min(ns.steps, 6), 8, 0
    elif not torch.cuda.is_available():
        print("train_gpu: no CUDA device; use --dry-run for a CPU smoke test", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"

    window = max(ns.steps // 3, 1)
    cfg = TrainConfig(
        model="tiny", tiny_hidden_size=ns.hidden, tiny_layers=ns.layers, tiny_heads=ns.heads,
        tiny_intermediate_size=ns.intermediate, attn_implementation=ns.attn,
        trainable="projector+lm", gradient_checkpointing=ns.gradient_checkpointing,
        per_device_batch_size=ns.batch, learning_rate=5e-5, warmup_ratio=0.03,
        max_steps=ns.steps, mixed_precision="bf16", max_length=4096, shuffle_buffer=16,
        num_workers=ns.workers, save_every=10 * ns.steps, log_every=window, trackers=(),
        verify_checksums=False)
    with tempfile.TemporaryDirectory() as tmp:
        shards, out = Path(tmp) / "shards", Path(tmp) / "run"
        t0 = time.perf_counter()
        write_shard_set(shards, [long_row(i, ns.frames, ns.dim, ns.text_tokens)
                                 for i in range(ns.clips)], rows_per_shard=16, row_group_size=4)
        print(f"shard set: {ns.clips} clips x {ns.frames} x {ns.dim} written in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            train(cfg, shards, out)
        wall = time.perf_counter() - t0
        print("\n".join(l for l in log.getvalue().splitlines()
                        if l.startswith(("step ", "llark train"))), flush=True)
        records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        from safetensors import safe_open

        from model.checkpoint import latest_checkpoint

        with safe_open(str(latest_checkpoint(out) / "model.safetensors"), "pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
        numel = {k: int(torch.tensor(v).prod()) for k, v in shapes.items()}
        n_params = sum(numel.values())                 # the tiny LM is saved whole
        n_embed = numel["lm.model.embed_tokens.weight"]
        state = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())
    last = records[-1]
    seq = round(state["tokens_seen"] / max(state["samples_seen"], 1))   # mean tokens per sample
    flops_per_token = 6 * (n_params - n_embed) + 12 * ns.layers * ns.hidden * seq
    peak = peak_flops(device, ns.peak_tflops)
    mfu = last["tokens_per_s"] * flops_per_token / peak if peak else None
    result = {
        "device": device, "dry_run": ns.dry_run, "parameters": n_params,
        "layers": ns.layers, "hidden": ns.hidden, "audio_frames": ns.frames,
        "audio_dim": ns.dim, "mean_seq_len": seq, "batch": ns.batch, "steps": ns.steps,
        "tokens_per_s": round(last["tokens_per_s"], 1),
        "samples_per_s": round(last["samples_per_s"], 2),
        "model_tflops_per_s": round(last["tokens_per_s"] * flops_per_token / 1e12, 2),
        "mfu": None if mfu is None else round(mfu, 4),
        "peak_memory_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                            if torch.cuda.is_available() else None),
        "wall_s": round(wall, 1), "torch": torch.__version__, "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    print(f"train_gpu: {n_params / 1e6:.1f}M parameters on {device}: "
          f"{result['tokens_per_s']:.0f} tokens/s, {result['samples_per_s']} samples/s, MFU "
          + (f"{mfu:.1%}" if mfu is not None else "n/a (no known peak for this device)"))
    if ns.json:
        Path(ns.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
