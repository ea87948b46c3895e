"""Training throughput of the tiny config on this machine, and the data loader alone.

    .venv/bin/python benchmarks/train_throughput.py [--frames 238 --dim 128] [--steps 30]

Writes a temporary shard set (random float16 embeddings, the three task families), then
measures:

1. the data loader alone: samples/s of ``ShardStream`` + collate (reading Parquet row groups,
   decoding embeddings, choosing conversations, tokenizing with the chat template, padding);
2. the model alone: samples/s and tokens/s of forward + backward + AdamW steps of the tiny
   config on batches fetched beforehand;
3. ``llark train`` end to end (loader + model + logging), from its own log line.

The loader must never be the bottleneck: the script prints the ratio loader / model, which the
issue asks to be at least 5. Defaults: ``features-v1`` sizes (238 frames x 128 per 23.777 s
clip; the frame count is ``embed.base.DEFAULT_CLIP_FRAMES``);
``--dim 4800`` gives Jukebox-sized embeddings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from embed.base import DEFAULT_CLIP_FRAMES  # noqa: E402
from model.config import TrainConfig  # noqa: E402
from model.data import ShardStream, StreamConfig, make_loader, open_shard_set  # noqa: E402
from model.modeling import ModelSpec, build_model, tiny_tokenizer  # noqa: E402
from model.train import make_optimizer, train  # noqa: E402
from tests.shard_factory import make_shard_set  # noqa: E402


def loader_rate(shards: Path, tok, batch: int, workers: int, n_batches: int) -> float:
    stream = ShardStream(open_shard_set(shards), tok, StreamConfig(num_workers=workers,
                                                                    shuffle_buffer=64))
    it = iter(make_loader(stream, batch, tok.pad_token_id))
    for _ in range(3):                                     # worker start-up, first row groups
        next(it)
    times, sizes = [], []
    for _ in range(n_batches):
        t0 = time.perf_counter()
        sizes.append(len(next(it)))
        times.append(time.perf_counter() - t0)
    del it
    return rates(times, sizes)


def rates(times: list[float], sizes: list[int]) -> tuple[float, float]:
    """(median-based, total-based) items/s. The median resists the bursts of other work on a
    shared machine; the total is what a long run would see on an idle one."""
    per_item = statistics.median(t / n for t, n in zip(times, sizes))
    return 1 / per_item, sum(sizes) / sum(times)


def model_rate(shards: Path, tok, cfg: TrainConfig, steps: int) -> tuple[float, float]:
    shard_set = open_shard_set(shards)
    spec = ModelSpec.from_config(cfg, shard_set.audio_dim)
    model = build_model(spec, tok).train()
    opt = make_optimizer(model, cfg)
    it = iter(make_loader(ShardStream(shard_set, tok, StreamConfig(shuffle_buffer=64)),
                          cfg.per_device_batch_size, tok.pad_token_id))
    batches = [next(it) for _ in range(steps + 3)]
    del it

    def step(b):
        out = model(b.input_ids, b.attention_mask, b.audio, b.audio_lengths, labels=b.labels)
        (out.loss_sum / out.n_supervised.clamp(min=1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for b in batches[:3]:                                  # warm-up
        step(b)
    times = []
    for b in batches[3:]:
        t0 = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t0)
    samples = [len(b) for b in batches[3:]]
    tokens = [b.n_tokens for b in batches[3:]]
    return rates(times, samples)[0], rates(times, tokens)[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=256, help="clips in the temporary shard set")
    p.add_argument("--frames", type=int, default=DEFAULT_CLIP_FRAMES,
                   help="audio frames per clip (default: a 23.777 s clip's)")
    p.add_argument("--dim", type=int, default=128, help="embedding dimension")
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    p.add_argument("--batch", type=int, default=4, help="per-device batch size")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    ns = p.parse_args()
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    cfg = TrainConfig(per_device_batch_size=ns.batch, num_workers=ns.workers, trackers=())
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        t0 = time.perf_counter()
        make_shard_set(shards, n_rows=ns.rows, n_frames=ns.frames, dim=ns.dim,
                       rows_per_shard=64, row_group_size=16)
        size = sum(f.stat().st_size for f in shards.glob("*.parquet"))
        print(f"shard set: {ns.rows} clips x {ns.frames} frames x {ns.dim} dims, "
              f"{size / 1e6:.1f} MB, written in {time.perf_counter() - t0:.1f} s")
        load_median, load = loader_rate(shards, tok, ns.batch, ns.workers,
                                        n_batches=max(ns.steps, 20))
        print(f"data loader alone ({ns.workers} workers): {load:.1f} samples/s overall "
              f"({load_median:.1f} median batch; row-group reads land on some batches)")
        m_samples, m_tokens = model_rate(shards, tok, cfg, ns.steps)
        print(f"tiny model alone (fwd+bwd+AdamW, batch {ns.batch}): {m_samples:.1f} samples/s, "
              f"{m_tokens:.0f} tokens/s (median step)")
        ratio = load / m_samples
        print(f"loader (overall) / model (median) = {ratio:.1f}x "
              f"({'meets' if ratio >= 5 else 'BELOW'} the 5x goal)")
        out = Path(tmp) / "run"
        run_cfg = TrainConfig(per_device_batch_size=ns.batch, num_workers=ns.workers,
                              max_steps=ns.steps + 5, log_every=ns.steps + 5,
                              save_every=10_000, trackers=(), warmup_ratio=0.0)
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            train(run_cfg, shards, out)
        rec = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()][-1]
        print(f"llark train end to end over {ns.steps + 5} steps (loader start-up included, "
              f"final checkpoint excluded): {rec['samples_per_s']:.1f} samples/s, "
              f"{rec['tokens_per_s']:.0f} tokens/s")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
