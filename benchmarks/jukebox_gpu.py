"""Throughput of the Jukebox-5B layer-36 encoder on one GPU (random weights, same FLOPs).

    python benchmarks/jukebox_gpu.py [--batch-sizes 1,4,8,16,32] [--seconds 24] [--iters 3]
                                     [--dtype float16] [--budget-s 360] [--json FILE]
    python benchmarks/jukebox_gpu.py --dry-run      # tiny model on CPU: checks the code path

Builds the full-size encoder of :mod:`embed.jukebox` (VQ-VAE + the first 36 of 72 blocks of
the 5B prior, 4800 wide, 8,192-code context) with random weights directly on the GPU, casts
the transformer to half precision, and encodes batches of ``--seconds`` of audio per clip
through the encoder's public call (peak normalisation, pieces, VQ-VAE, transformer, pooling
to 10 Hz, copy back to the host). Per batch size it prints clips/s, the time split between
VQ-VAE and transformer, the achieved matrix TFLOP/s (2 x parameters x codes) and the peak
GPU memory. A 24 s clip is 1,058,400 samples: one full 8,192-code piece plus a 77-code piece
(the transformer runs 128 codes for it; see the module docs).

The run stops adding batch sizes when ``--budget-s`` is spent or the GPU runs out of memory,
so ``scripts/gpu_check_embed.sh`` ends well inside 8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _ensure_imports() -> list[str]:
    """jukebox_infer imports librosa/soundfile (audio files) and unidecode (lyrics) at module
    level; this benchmark uses none of them. A bare GPU image may lack them: stand in empty
    modules (and an identity unidecode, enough for the empty lyrics we pass) so the real model
    code imports. Returns the names that were stubbed, printed with the results."""
    stubbed = []
    for name in ("librosa", "soundfile"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
            stubbed.append(name)
    try:
        importlib.import_module("unidecode")
    except ImportError:
        mod = types.ModuleType("unidecode")
        mod.unidecode = lambda text: text                      # noqa: E731 (lyrics are "")
        sys.modules["unidecode"] = mod
        stubbed.append("unidecode")
    return stubbed


def _clips(n: int, seconds: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * 44100))) / 44100
    out = []
    for k in range(n):
        f = 110.0 * 2 ** (k % 12 / 12)
        w = 0.3 * np.sin(2 * np.pi * f * t) + 0.1 * rng.standard_normal(t.size)
        out.append(w.astype(np.float32))
    return out


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def transformer_params(enc) -> int:
    return sum(p.numel() for p in enc.prior.prior.transformer.parameters())


def measure(enc, batch: int, seconds: float, iters: int, device: str) -> dict:
    """Encode ``batch`` clips ``iters`` times (after one warm-up call); time the whole call and,
    separately, the VQ-VAE and transformer passes of its pieces."""
    import numpy as np
    import torch

    enc.cfg = replace(enc.cfg, batch_pieces=batch)
    clips = _clips(batch, seconds, seed=batch)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out = enc(clips)                                                  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        out = enc(clips)
    _sync(device)
    total = (time.perf_counter() - t0) / iters
    # Split: the same pieces through codes() and activations() alone.
    pieces = enc._pieces(clips)
    ctx, block = enc.cfg.context_samples, enc.cfg.block_ctx
    codes_in_batches, vq_s, tr_s = 0, 0.0, 0.0
    with torch.inference_mode():
        order = sorted(pieces, key=lambda p: -p.codes)
        for b in range(0, len(order), batch):
            group = order[b:b + batch]
            audio = np.zeros((len(group), ctx), np.float32)
            for row, p in enumerate(group):
                audio[row, :p.audio.size] = p.audio
            x = torch.from_numpy(audio).to(enc.device)
            _sync(device)
            t1 = time.perf_counter()
            z = enc.codes(x)
            _sync(device)
            t2 = time.perf_counter()
            length = min(enc.cfg.n_ctx, math.ceil(group[0].codes / block) * block)
            enc.activations(z[:, :length])
            _sync(device)
            t3 = time.perf_counter()
            vq_s += t2 - t1
            tr_s += t3 - t2
            codes_in_batches += len(group) * length
    flops = 2.0 * transformer_params(enc) * codes_in_batches
    res = {"batch": batch, "clips_per_s": batch / total, "seconds_per_call": total,
           "vqvae_s": vq_s, "transformer_s": tr_s, "pieces": len(pieces),
           "transformer_tflop_s": flops / tr_s / 1e12 if tr_s > 0 else 0.0,
           "frames": [int(o.shape[0]) for o in out[:1]], "dim": int(out[0].shape[1])}
    if device == "cuda":
        res["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1,4,8,16,32")
    ap.add_argument("--seconds", type=float, default=24.0, help="audio per clip")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    ap.add_argument("--budget-s", type=float, default=360.0,
                    help="start no new batch size after this many seconds")
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny random model on CPU, 2 s clips: checks the script, measures nothing")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    stubbed = _ensure_imports()
    import torch

    from embed.jukebox import JukeboxConfig, JukeboxEncoder

    if args.dry_run:
        device, cfg = "cpu", JukeboxConfig.tiny()
        sizes, seconds, iters = [1, 2], 2.0, 1
    else:
        if not torch.cuda.is_available():
            print("no CUDA device visible; use --dry-run to check the script on CPU")
            return 2
        device, cfg = "cuda", replace(JukeboxConfig(), dtype=args.dtype,
                                      name="jukebox-5b-layer36-random")
        sizes = [int(x) for x in args.batch_sizes.split(",") if x]
        seconds, iters = args.seconds, args.iters
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)
           if device == "cuda" else "cpu", "dtype": cfg.dtype if device == "cuda" else "float32",
           "stubbed_imports": stubbed}
    print(f"[jukebox_gpu] {env}", flush=True)
    t0 = time.perf_counter()
    enc = JukeboxEncoder.random(cfg, device, seed=0)
    _sync(device)
    build_s = time.perf_counter() - t0
    params = transformer_params(enc)
    print(f"[jukebox_gpu] built {cfg.layers} blocks x width {cfg.width} "
          f"({params / 1e9:.2f} B transformer parameters) in {build_s:.1f} s; context "
          f"{cfg.n_ctx} codes = {cfg.context_samples} samples; clip {seconds} s", flush=True)
    results = []
    for b in sizes:
        if time.perf_counter() - start > args.budget_s:
            print(f"[jukebox_gpu] budget spent; skipping batch {b} and larger", flush=True)
            break
        try:
            r = measure(enc, b, seconds, iters, device)
        except torch.cuda.OutOfMemoryError as exc:
            print(f"[jukebox_gpu] batch {b}: out of GPU memory ({str(exc).splitlines()[0]})")
            results.append({"batch": b, "error": "out of memory"})
            break
        results.append(r)
        mem = f", peak {r['peak_gpu_gib']:.1f} GiB" if "peak_gpu_gib" in r else ""
        print(f"[jukebox_gpu] batch {b:3d}: {r['clips_per_s']:7.2f} clips/s "
              f"({r['seconds_per_call']:.2f} s/call; VQ-VAE {r['vqvae_s']:.2f} s, transformer "
              f"{r['transformer_s']:.2f} s at {r['transformer_tflop_s']:.0f} TFLOP/s{mem}); "
              f"{r['pieces']} pieces, {r['frames'][0]} x {r['dim']} frames per clip",
              flush=True)
    summary = {"env": env, "build_s": build_s, "transformer_params": params,
               "clip_seconds": seconds, "iters": iters, "results": results,
               "wall_s": time.perf_counter() - start, "dry_run": args.dry_run}
    best = max((r for r in results if "clips_per_s" in r), key=lambda r: r["clips_per_s"],
               default=None)
    if best:
        print(f"[jukebox_gpu] best: {best['clips_per_s']:.2f} clips/s at batch {best['batch']} "
              f"({summary['wall_s']:.0f} s in all)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
