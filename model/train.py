"""``llark train``: stream the shards into the music LM with accelerate.

    llark train --shards SHARDS --output OUT [--config tiny|paper|FILE.yaml] [key=value ...]
    accelerate launch [--config_file model/configs/accelerate/fsdp_8gpu.yaml] -m model.train ...

One process per device (accelerate decides: DDP, or FSDP / DeepSpeed from a config file). The
weights, gradients and optimizer state are float32; ``mixed_precision=bf16`` runs the forward
pass under autocast. Each optimizer step takes ``grad_accum_steps`` micro-batches per device;
the loss is the mean over every supervised token of the global batch. A checkpoint is saved
every ``save_every`` steps and at the end; a run resumes from the latest complete checkpoint in
``--output`` (model, optimizer, scheduler, RNG and data position) without replaying data.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from llark.config import add_arguments, from_args, to_dict
from llark.errors import ConfigError, ShardError
from model.checkpoint import (CHECKPOINTS, OPTIMIZER_FILE, WEIGHTS_FILE, CheckpointError,
                              TrainerState, checkpoint_name, clean_name,
                              config_differences, finish, latest_checkpoint, load_optimizer,
                              load_rng, load_weights, make_scheduler, read_state,
                              save_optimizer, save_rng, schedule_factor, scheduler_state,
                              write_model_files)
from model.config import DATA_ORDER_KEYS, PLAN_KEYS, STRUCTURAL_KEYS, TrainConfig, config_path
from model.data import (Batch, ShardStream, StreamConfig, StreamState, make_loader,
                        open_shard_set)
from model.masking import IGNORE_INDEX
from model.storage import run_folder
from model.modeling import (SPEC_FILE, ModelSpec, build_model, build_tokenizer,
                            count_parameters, enable_gradient_checkpointing, read_spec)

METRICS_FILE = "metrics.jsonl"
TRACE_FILE = "data_trace.jsonl"


def format_log_line(step: int, loss: float, lr: float, tokens_per_s: float,
                    samples_per_s: float) -> str:
    """``step 120 loss 2.3141 lr 1.8e-05 tokens/s 3100 samples/s 12.4``."""
    return (f"step {step} loss {loss:.4f} lr {lr:.1e} tokens/s {tokens_per_s:.0f} "
            f"samples/s {samples_per_s:.1f}")


@dataclass
class TrainResult:
    start_step: int
    step: int
    checkpoint: Path | None
    losses: dict[int, float] = field(default_factory=dict)   # logged step -> mean loss
    skipped: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False


def resolve_trackers(names: tuple[str, ...]) -> list[str]:
    """Tracker names accelerate should use: only the installed ones ('auto' = TensorBoard)."""
    def installed(tracker: str) -> bool:
        mods = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}[tracker]
        return any(importlib.util.find_spec(m) is not None for m in mods)

    out = []
    for name in names:
        wanted = "tensorboard" if name == "auto" else name
        if installed(wanted):
            out.append(wanted)
        elif name != "auto":
            print(f"llark train: tracker {name!r} is not installed; not logging to it",
                  file=sys.stderr)
    return sorted(set(out))


def no_decay_names(model: torch.nn.Module) -> set[str]:
    """Parameters AdamW does not decay: biases and other 1-D ones (norms), by clean name."""
    return {clean_name(n) for n, p in model.named_parameters()
            if p.ndim < 2 or n.endswith(".bias")}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig,
                   no_decay_of: set[str] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: group 0 decayed, group 1 not. ``no_decay_of``
    (names from :func:`no_decay_names` of the unwrapped model) is needed when ``model`` is
    already FSDP-wrapped: its parameters are then flat 1-D shards whatever their shape."""
    skip = no_decay_of if no_decay_of is not None else no_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if clean_name(name) in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_eps)


class _StopFlag:
    """Set by SIGTERM: finish the step, save a checkpoint, exit."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.set = True


def _is_sharded(acc: Any) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _as_override(value: Any) -> str:
    """A saved config value as a ``key=value`` override takes it (lists comma-separated)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _check_resume(ckpt: Path, saved: TrainerState, cfg: TrainConfig, spec: ModelSpec,
                  world_size: int) -> dict[str, tuple[Any, Any]]:
    """Refuse what cannot resume; return the changed plan keys (old, new) to apply."""
    if saved.world_size != world_size:
        raise CheckpointError(
            f"{ckpt} was written by {saved.world_size} process(es), this run has {world_size}; "
            "the data position cannot be split differently. Resume with the same number of "
            "processes, or start a new --output")
    diffs = config_differences(saved.config, to_dict(cfg))
    structural = {k: v for k, v in diffs.items() if k in STRUCTURAL_KEYS}
    if structural:
        raise ConfigError(f"{ckpt} was trained with another model structure: "
                          + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in structural.items())
                          + "; start a new --output or restore those keys")
    order = {k: v for k, v in diffs.items() if k in DATA_ORDER_KEYS}
    if order:
        raise ConfigError(f"{ckpt} saved a data position made with other "
                          + ", ".join(f"{k}: {a!r} (now {b!r})" for k, (a, b) in order.items())
                          + "; the position indexes into the order and the rows they set, so "
                          "the run would repeat or skip samples. Resume with "
                          + " ".join(f"{k}={_as_override(a)}" for k, (a, _) in order.items())
                          + ", or start a new --output")
    if read_spec(ckpt) != spec:
        raise CheckpointError(f"{ckpt}: its {SPEC_FILE} differs from the model this run builds "
                              f"(saved {read_spec(ckpt)}, now {spec})")
    for k, (a, b) in diffs.items():
        if k not in PLAN_KEYS:
            print(f"llark train: resuming with {k} = {b!r} (checkpoint had {a!r})",
                  file=sys.stderr)
    return {k: v for k, v in diffs.items() if k in PLAN_KEYS}


def warmup_steps(warmup_ratio: float, max_steps: int) -> int:
    return math.ceil(warmup_ratio * max_steps)


def plan_schedule(plan: dict[str, Any]) -> Callable[[int], float]:
    """The lr factor of a plan given as config keys (``TrainConfig`` fields or a saved config),
    by scheduler step: the factor of step ``k`` is the lr of optimizer step ``k + 1``."""
    return schedule_factor(warmup_steps(float(plan["warmup_ratio"]), int(plan["max_steps"])),
                           int(plan["max_steps"]), str(plan["lr_schedule"]),
                           float(plan["min_lr_ratio"]))


def apply_plan(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> None:
    """Set the optimizer's hyper-parameters of ``cfg`` (the lr is set by the scheduler).

    Groups as :func:`make_optimizer` makes them: decayed weights first, then the rest.
    """
    for i, group in enumerate(optimizer.param_groups):
        group["weight_decay"] = cfg.weight_decay if i == 0 else 0.0
        group["betas"] = (cfg.adam_beta1, cfg.adam_beta2)
        group["eps"] = cfg.adam_eps


def describe_replan(step: int, sched_step: int, changes: dict[str, tuple[Any, Any]],
                    saved: dict[str, Any], cfg: TrainConfig) -> str:
    """The resume log line: which plan applies from ``step`` on, and what that does to the lr.

    ``saved`` is the checkpoint's config, ``sched_step`` the scheduler steps taken so far.
    """
    if not changes:
        return f"llark train: resuming at step {step} with the checkpoint's plan"
    now = to_dict(cfg)
    old = {k: saved.get(k, now[k]) for k in PLAN_KEYS}
    parts = [f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()]
    old_warmup = warmup_steps(float(old["warmup_ratio"]), int(old["max_steps"]))
    new_warmup = warmup_steps(cfg.warmup_ratio, cfg.max_steps)
    if old_warmup != new_warmup:
        parts.append(f"warmup {old_warmup} -> {new_warmup} steps")
    old_lr = float(old["learning_rate"]) * plan_schedule(old)(sched_step)
    new_lr = cfg.learning_rate * plan_schedule(now)(sched_step)
    return (f"llark train: schedule re-planned from step {step}: " + ", ".join(parts)
            + f"; lr for step {step + 1}: {new_lr:.3e} (the old plan: {old_lr:.3e}); the new "
            "plan applies from here on as if the run had been planned with it from the start")


def configure_deepspeed(ds_config: dict[str, Any], cfg: TrainConfig, accum: int) -> None:
    """What DeepSpeed must know from the TrainConfig (the loader is not prepared).

    The engine's own accumulation count is ``accum``: it then divides each micro-batch loss by
    ``accum`` (compensated in :func:`optimizer_step`) and steps only at the boundary that
    :func:`optimizer_step` marks on the last micro-batch. ``train_batch_size`` stays "auto":
    accelerate fills it with micro-batch x ``accum`` x processes.
    """
    ds_config["train_micro_batch_size_per_gpu"] = cfg.per_device_batch_size
    ds_config["gradient_accumulation_steps"] = accum
    ds_config["gradient_clipping"] = cfg.max_grad_norm
    zero = ds_config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        # every checkpoint's model.safetensors is gathered on rank 0 (accelerate refuses to
        # gather ZeRO-3 weights without this: the first save would fail)
        zero["stage3_gather_16bit_weights_on_model_save"] = True


def optimizer_step(acc: Any, model: Any, optimizer: Any, micro: list[Batch],
                   max_grad_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over the micro-batches ``micro`` of this rank.

    The loss is the sum of token cross-entropies over the supervised tokens of the whole global
    batch (every rank, every micro-batch). Gradients are synchronised, and the DeepSpeed engine
    steps, only on the last micro-batch: accelerate's DeepSpeed ``backward`` steps the engine
    whenever ``sync_gradients`` is set, so it is cleared for the others. Returns this rank's
    ``(loss sum, supervised tokens)`` for the log.
    """
    from accelerate.utils import DistributedType

    world, accum = acc.num_processes, len(micro)
    n_sup = torch.tensor(sum(int((b.labels[:, 1:] != IGNORE_INDEX).sum()) for b in micro),
                         device=acc.device, dtype=torch.float32)
    n_sup_global = acc.reduce(n_sup.clone(), reduction="sum") if world > 1 else n_sup
    # DDP averages gradients over ranks, hence x world; DeepSpeed also divides every
    # micro-batch loss by its gradient_accumulation_steps (= accum), hence x accum there
    scale = world * (accum if acc.distributed_type == DistributedType.DEEPSPEED else 1)
    loss_sum = torch.zeros((), device=acc.device)
    sup = torch.zeros((), device=acc.device)
    model.train()
    try:
        for i, b in enumerate(micro):
            b = b.to(acc.device)
            last = i == accum - 1
            acc.gradient_state._set_sync_gradients(last)
            with acc.no_sync(model) if not last else contextlib.nullcontext():
                out = model(b.input_ids, b.attention_mask, b.audio, b.audio_lengths,
                            labels=b.labels)
                acc.backward(out.loss_sum * scale / n_sup_global.clamp(min=1))
            loss_sum += out.loss_sum.detach().float()
            sup += out.n_supervised.detach().float()
    finally:
        acc.gradient_state._set_sync_gradients(True)
    if max_grad_norm > 0:
        acc.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, sup


def save_checkpoint(acc: Any, model: Any, optimizer: Any, scheduler: Any, tokenizer: Any,
                    spec: ModelSpec, cfg: TrainConfig, state: TrainerState,
                    position: StreamState, output: Path) -> Path:
    """Write ``output/checkpoints/checkpoint-<step>`` (collective: every rank calls it)."""
    from accelerate.utils import gather_object

    state.data = gather_object([position.to_dict()])
    state.scheduler = scheduler_state(scheduler)
    state.config = to_dict(cfg)
    folder = output / CHECKPOINTS
    final = folder / checkpoint_name(state.step)
    tmp = folder / (final.name + ".tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    state_dict = acc.get_state_dict(model)            # gathers FSDP / ZeRO-3 shards on rank 0
    if acc.is_main_process:
        write_model_files(tmp, acc.unwrap_model(model), state_dict, spec, tokenizer, to_dict(cfg))
    if _is_sharded(acc):
        acc.save_state(str(tmp / "accelerate_state"))
    elif acc.is_main_process:
        save_optimizer(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    save_rng(tmp / "rng", acc.process_index)
    acc.wait_for_everyone()
    if acc.is_main_process:
        finish(tmp, final, state, cfg.keep_last)
    acc.wait_for_everyone()
    return final


def train(cfg: TrainConfig, shards: str | Path, output: str | Path, stop_at: int = 0,
          resume: bool = True, on_checkpoint: Callable[[Path], None] | None = None
          ) -> TrainResult:
    """Train until ``cfg.max_steps`` (or ``stop_at``, which simulates an interruption).
    ``on_checkpoint`` is called on the main process with each complete checkpoint's folder
    (a bucket run uploads it there)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, broadcast_object_list, gather_object, set_seed
    from tqdm.auto import tqdm

    output = Path(output)
    trackers = resolve_trackers(cfg.trackers)
    # accelerate keeps one process-wide state; a second train() in the same process (tests,
    # notebooks, benchmarks) may use another precision. The process group (PartialState) stays.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    # without a GPU, say so: accelerate then runs DDP over gloo when launched with N processes
    acc = Accelerator(mixed_precision=cfg.mixed_precision, log_with=trackers or None,
                      project_dir=str(output), cpu=not torch.cuda.is_available())
    main, world, rank = acc.is_main_process, acc.num_processes, acc.process_index
    accum = cfg.accumulation_steps(world)

    # ---- the shard set: checked once (main process), the verdict shared with every rank
    verdict: list[Any] = [None]
    if main:
        try:
            open_shard_set(shards, verify_checksums=cfg.verify_checksums)
        except ShardError as exc:
            verdict = [str(exc)]
    broadcast_object_list(verdict)
    if verdict[0] is not None:
        raise ShardError(verdict[0])
    shard_set = open_shard_set(shards, verify_checksums=False)

    # ---- model, optimizer, schedule
    set_seed(cfg.seed)
    spec = ModelSpec.from_config(cfg, shard_set.audio_dim, shard_set.encoder,
                                 shard_set.frame_rate_hz)
    tokenizer = build_tokenizer(spec, hub_download=cfg.hub_download)
    model = build_model(spec, tokenizer, seed=cfg.seed, hub_download=cfg.hub_download)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    # FSDP: the optimizer is made after the model is wrapped (accelerate remaps an earlier
    # one only for FSDP2; the meta parameters of cpu-ram-efficient loading are replaced)
    fsdp = acc.distributed_type == DistributedType.FSDP
    skip_decay = no_decay_names(model)
    optimizer = None if fsdp else make_optimizer(model, cfg, skip_decay)
    state = TrainerState(world_size=world, config=to_dict(cfg))

    ckpt = latest_checkpoint(output) if resume else None
    changes: dict[str, tuple[Any, Any]] = {}
    if ckpt is not None:
        saved = read_state(ckpt)
        changes = _check_resume(ckpt, saved, cfg, spec, world)
        if not _is_sharded(acc):
            # FSDP / DeepSpeed restore model and optimizer from accelerate_state after
            # prepare (below); reading the consolidated weights file here as well would load
            # the whole LM on every rank, undoing the meta-device loading off local rank 0
            load_weights(model, ckpt / WEIGHTS_FILE, spec)
            optimizer.load_state_dict(load_optimizer(ckpt / OPTIMIZER_FILE))
        state = saved
    start_step = state.step
    result = TrainResult(start_step, start_step, ckpt)
    if state.step >= cfg.max_steps:
        if main:
            print(f"llark train: {ckpt} is at step {state.step} >= max_steps {cfg.max_steps}; "
                  "nothing to do")
        return result

    if acc.state.deepspeed_plugin is not None:
        configure_deepspeed(acc.state.deepspeed_plugin.deepspeed_config, cfg, accum)
    if fsdp:
        model = acc.prepare(model)
        optimizer = make_optimizer(model, cfg, skip_decay)
    raw_optimizer = optimizer                 # the schedule drives its param groups
    if fsdp:
        optimizer = acc.prepare(optimizer)
    else:
        model, optimizer = acc.prepare(model, optimizer)
    if ckpt is not None:
        if _is_sharded(acc):
            acc.load_state(str(ckpt / "accelerate_state"))
        load_rng(ckpt / "rng", rank)

    # ---- the schedule: this run's plan, from the current step on (a loaded optimizer state
    # brings the old lr and hyper-parameters; the plan given now replaces them)
    sched_step = int(state.scheduler.get("last_epoch", state.step)) if ckpt is not None else 0
    apply_plan(raw_optimizer, cfg)
    scheduler = make_scheduler(raw_optimizer, warmup_steps(cfg.warmup_ratio, cfg.max_steps),
                               cfg.max_steps, cfg.lr_schedule, cfg.min_lr_ratio,
                               cfg.learning_rate, start_step=sched_step)
    if ckpt is not None and main:
        print(describe_replan(state.step, sched_step, changes, state.config, cfg),
              file=sys.stderr)

    position = (StreamState.from_dict(state.data[rank]) if ckpt is not None
                else StreamState(max(cfg.num_workers, 1)))
    stream = ShardStream(shard_set, tokenizer, StreamConfig(
        seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
        shuffle_buffer_bytes=int(cfg.shuffle_buffer_mb * (1 << 20)),
        family_weights=cfg.family_weights,
        splits=tuple(cfg.splits), rank=rank, world_size=world, num_workers=cfg.num_workers,
        system_prompt=cfg.system_prompt, max_length=cfg.max_length,
        max_audio_frames=cfg.max_audio_frames, audio_pool=cfg.audio_pool),
        resume=position if ckpt is not None else None)
    loader = make_loader(stream, cfg.per_device_batch_size, tokenizer.pad_token_id,
                         pin_memory=acc.device.type == "cuda")

    if main:
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
        total, trainable = count_parameters(acc.unwrap_model(model))
        print(f"llark train: {spec.lm} + {spec.projector} projector ({spec.audio_dim} -> LM), "
              f"{total / 1e6:.2f}M parameters, {trainable / 1e6:.2f}M trainable "
              f"({cfg.trainable}); {world} process(es) x {cfg.per_device_batch_size} x {accum} "
              f"accumulation = global batch {world * cfg.per_device_batch_size * accum}; "
              f"{shard_set.total_rows} clips in {len(shard_set.paths)} shard(s); "
              + (f"resuming from {ckpt.name}" if ckpt else "starting fresh"))
    if trackers:
        flat = {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
                for k, v in to_dict(cfg).items()}
        acc.init_trackers("llark", config=flat)

    stop = _StopFlag()
    previous_handler = signal.signal(signal.SIGTERM, stop) if _main_thread() else None
    metrics = open(output / METRICS_FILE, "a") if main else None
    trace = open(output / TRACE_FILE, "a") if main and cfg.trace_data else None
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not main, desc="train",
               dynamic_ncols=True, file=sys.stderr)
    window_loss = torch.zeros((), device=acc.device)
    window_sup = torch.zeros((), device=acc.device)
    window_tokens = window_samples = 0
    window_start = time.perf_counter()
    run_start = time.perf_counter()
    last_saved = None
    it = iter(loader)
    try:
        while state.step < cfg.max_steps:
            micro = [next(it) for _ in range(accum)]
            # the lr this step used (the log shows it; after scheduler.step() it is the next's)
            step_lr = scheduler.get_last_lr()[0]
            loss_sum, n_sup = optimizer_step(acc, model, optimizer, micro, cfg.max_grad_norm)
            if not acc.optimizer_step_was_skipped:
                scheduler.step()
            window_loss += loss_sum
            window_sup += n_sup

            state.step += 1
            for b in micro:
                position.update(b.worker, b.position)
            n_samples = sum(len(b) for b in micro)
            n_tokens = sum(b.n_tokens for b in micro)
            state.samples_seen += n_samples * world
            state.tokens_seen += n_tokens * world
            window_samples += n_samples
            window_tokens += n_tokens
            bar.update(1)
            if cfg.trace_data:
                ids = gather_object([[(c, v) for b in micro
                                      for c, v in zip(b.clip_ids, b.conversation_ids)]])
                if trace is not None:
                    trace.write(json.dumps({"step": state.step, "samples": ids}) + "\n")
                    trace.flush()

            if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                sums = torch.stack([window_loss, window_sup,
                                    torch.tensor(float(window_tokens), device=acc.device),
                                    torch.tensor(float(window_samples), device=acc.device)])
                if world > 1:
                    sums = acc.reduce(sums, reduction="sum")
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                loss_mean = float(sums[0] / sums[1].clamp(min=1))
                lr = step_lr
                line = format_log_line(state.step, loss_mean, lr, float(sums[2]) / elapsed,
                                       float(sums[3]) / elapsed)
                result.losses[state.step] = loss_mean
                # one record for the console line, metrics.jsonl and the trackers
                record = {"loss": loss_mean, "lr": lr, "tokens_per_s": float(sums[2]) / elapsed,
                          "samples_per_s": float(sums[3]) / elapsed}
                if main:
                    tqdm.write(line, file=sys.stdout)
                    sys.stdout.flush()
                    metrics.write(json.dumps({"step": state.step, **record}) + "\n")
                    metrics.flush()
                if trackers:
                    acc.log(record, step=state.step)
                window_loss.zero_()
                window_sup.zero_()
                window_tokens = window_samples = 0
                window_start = time.perf_counter()

            stopping = stop.set
            if world > 1:
                flag = acc.reduce(torch.tensor(float(stopping), device=acc.device), "sum")
                stopping = bool(flag > 0)
            stopping = stopping or (stop_at and state.step >= stop_at)
            if (state.step % cfg.save_every == 0 or state.step == cfg.max_steps or stopping):
                state.elapsed_s += time.perf_counter() - run_start
                run_start = time.perf_counter()
                last_saved = save_checkpoint(acc, model, optimizer, scheduler, tokenizer, spec,
                                             cfg, state, position, output)
                if on_checkpoint is not None and acc.is_main_process:
                    on_checkpoint(last_saved)
            if stopping:
                result.stopped_early = True
                break
    finally:
        bar.close()
        del it
        if metrics is not None:
            metrics.close()
        if trace is not None:
            trace.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        if trackers:
            acc.end_training()

    result.step = state.step
    result.checkpoint = last_saved
    result.skipped = position.skipped
    if main:
        how = "stopped" if result.stopped_early else "finished"
        last = next(reversed(result.losses.values()), float("nan"))
        print(f"llark train: {how} at step {state.step}/{cfg.max_steps} (from {start_step}); "
              f"last loss {last:.4f}; {state.samples_seen} samples, {state.tokens_seen} tokens "
              f"seen; checkpoint {last_saved}; skipped samples {result.skipped or 'none'}")
    return result


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="llark train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys can also be given as key=value after the flags, e.g. max_steps=30.")
    p.add_argument("--shards", required=True, help="shard set folder (with _index.json)")
    p.add_argument("--output", required=True,
                   help="run folder: checkpoints/, metrics.jsonl, config.json; a run resumes "
                        "from the latest checkpoint here")
    p.add_argument("--config", default=None,
                   help="'tiny', 'paper' or a YAML file of TrainConfig keys (default: the "
                        "dataclass defaults, which are the tiny recipe)")
    p.add_argument("--no-resume", action="store_true",
                   help="ignore checkpoints in --output (they are kept until overwritten)")
    p.add_argument("--stop-at", type=int, default=0,
                   help="stop (with a checkpoint) after this step, as if interrupted; the "
                        "schedule still spans max_steps")
    add_arguments(p, TrainConfig)
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p


def resolve_config(ns: argparse.Namespace) -> TrainConfig:
    yaml_path = str(config_path(ns.config)) if ns.config else None
    return from_args(TrainConfig, ns, yaml_path, ns.overrides)


def run(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(ns)
        # a gs:// or s3:// run folder: trained in a local copy, each checkpoint uploaded as soon
        # as it is complete
        with run_folder(ns.output, cfg.keep_last) as folder:
            train(cfg, ns.shards, folder.local, stop_at=ns.stop_at, resume=not ns.no_resume,
                  on_checkpoint=folder.on_checkpoint)
    except (ConfigError, ShardError, CheckpointError) as exc:
        print(f"llark train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        close_process_group()
    return 0


def close_process_group() -> None:
    """Destroy the default process group of a multi-process run, if one is up. Left to the
    interpreter's exit, gloo's threads can be torn down while still joinable and the rank
    aborts ("terminate called without an active exception", exit -6) after a finished run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(run())
