"""Checkpoints: weights in safetensors, optimizer, scheduler, RNG and data position; no pickle.

Layout of ``OUTPUT/checkpoints/checkpoint-00000120/``::

    model.safetensors        what is needed to rebuild the model on top of its spec: the
                             trainable weights (projector; + LM or LoRA adapters), and the whole
                             LM when it is the random-initialised ``tiny`` one
    llark_model.json         the ModelSpec (which LM, projector, audio dim, what trains)
    tokenizer/               the tokenizer with the audio tokens (save_pretrained)
    config.json              the resolved TrainConfig
    optimizer.safetensors    AdamW state (tensors) + param groups (JSON in the metadata)
    rng/rank{r}.json|.safetensors   python / numpy / torch (+ CUDA) RNG state of each rank
    accelerate_state/        FSDP / DeepSpeed only: accelerate's sharded model + optimizer
    trainer_state.json       step, counters, scheduler state, every rank's data position;
                             written last: a checkpoint without it is incomplete

A checkpoint is written under ``checkpoint-N.tmp`` and renamed when complete, so an
interrupted save never looks like a checkpoint.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model.modeling import SPEC_FILE, MusicLM, ModelSpec

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
_NAME = re.compile(r"^checkpoint-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not fit the model being built."""


# --------------------------------------------------------------------------- discovery

def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:08d}"


def list_checkpoints(output: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``output/checkpoints`` (or ``output`` itself), oldest first."""
    output = Path(output)
    folder = output / CHECKPOINTS if (output / CHECKPOINTS).is_dir() else output
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            if m and (p / STATE_FILE).exists():
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(output: str | Path) -> Path | None:
    found = list_checkpoints(output)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a training output folder (→ its latest checkpoint)."""
    path = Path(path)
    if (path / STATE_FILE).exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path}: neither a checkpoint (no {STATE_FILE}) nor a training "
                              "output folder with complete checkpoints")
    return latest


# --------------------------------------------------------------------------- scheduler

def transformers_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int,
                          total_steps: int, kind: str, min_ratio: float,
                          last_epoch: int = -1) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr schedule from transformers: a linear warmup from 0 over ``warmup_steps``, then a
    half cosine from the peak down to ``min_ratio`` x peak at ``total_steps``
    (``get_cosine_with_min_lr_schedule_with_warmup``), or the peak kept (``kind='constant'``,
    ``get_constant_schedule_with_warmup``). The factor of scheduler step ``k`` (the lr of the
    optimizer step ``k + 1``) is ``k / warmup_steps`` during the warmup, then
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * (k - warmup) / (total - warmup))) / 2``."""
    from transformers import (get_constant_schedule_with_warmup,
                              get_cosine_with_min_lr_schedule_with_warmup)

    if kind == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup_steps, last_epoch=last_epoch)
    if kind != "cosine":
        raise ValueError(f"lr schedule {kind!r}: 'cosine' or 'constant'")
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, warmup_steps, total_steps, last_epoch=last_epoch, min_lr_rate=min_ratio)


def schedule_factor(warmup_steps: int, total_steps: int, kind: str,
                    min_ratio: float) -> Callable[[int], float]:
    """The lr factor of scheduler step ``k`` under :func:`transformers_schedule` (for messages
    about a plan without an optimizer of its own: built on a throwaway one)."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return transformers_schedule(probe, warmup_steps, total_steps, kind, min_ratio).lr_lambdas[0]


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                   kind: str, min_ratio: float, learning_rate: float,
                   start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of one plan (:func:`transformers_schedule`), positioned after
    ``start_step`` scheduler steps.

    Every param group's peak lr becomes ``learning_rate`` (whatever an optimizer state loaded
    from a checkpoint says), and the groups' lr is set to the plan's value at ``start_step``:
    a resumed run follows the plan it is given from its current step on, as if it had been
    planned that way from the start.
    """
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = learning_rate
    # last_epoch = start_step - 1: LambdaLR's first (initial) step lands on start_step
    return transformers_schedule(optimizer, warmup_steps, total_steps, kind, min_ratio,
                                 last_epoch=start_step - 1)


# --------------------------------------------------------------------------- weights

WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def clean_name(name: str) -> str:
    """A parameter name without FSDP / activation-checkpointing / compile wrapper parts."""
    for part in WRAPPER_PREFIXES:
        name = name.replace(part, "")
    return name


def weight_names(model: MusicLM, spec: ModelSpec) -> list[str]:
    """State-dict keys a checkpoint stores: trainable ones, or all of a ``tiny`` model."""
    names = [clean_name(n) for n, p in model.named_parameters() if p.requires_grad or spec.is_tiny]
    if spec.is_tiny:
        persistent = {clean_name(k) for k in model.state_dict()}
        names += [clean_name(n) for n, _ in model.named_buffers() if clean_name(n) in persistent]
    return sorted(set(names))


def save_weights(state_dict: dict[str, torch.Tensor], names: list[str], path: Path) -> None:
    """Save ``names`` of ``state_dict`` (tied tensors once, aliases in the metadata)."""
    tensors, aliases, seen = {}, {}, {}
    for name in names:
        if name not in state_dict:
            raise CheckpointError(f"weight {name!r} is not in the model's state dict")
        t = state_dict[name]
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu").contiguous()
    save_file(tensors, str(path), metadata={"aliases": json.dumps(aliases),
                                             "format": "pt"})


def load_weights(model: MusicLM, path: Path, spec: ModelSpec) -> list[str]:
    """Load a checkpoint's weights into ``model``; every weight it must hold has to be there."""
    if not path.exists():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    with safe_open(str(path), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    tensors = load_file(str(path))
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"{path}: holds weights this model does not have: "
                              f"{result.unexpected_keys[:8]} (spec mismatch?)")
    required = set(weight_names(model, spec))
    missing = sorted(required - set(tensors) - set(aliases))
    if missing:
        raise CheckpointError(f"{path}: lacks {len(missing)} weight(s) the model trains, e.g. "
                              f"{missing[:8]}")
    return sorted(tensors)


# --------------------------------------------------------------------------- optimizer

def save_optimizer(state: dict[str, Any], path: Path) -> None:
    """An optimizer ``state_dict`` as safetensors: tensors flat, everything else as JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, slots in state["state"].items():
        for k, v in slots.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    save_file(tensors, str(path), metadata={
        "param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)})


def load_optimizer(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    tensors = load_file(str(path))
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, idx, slot = key.split(".", 2)
        state.setdefault(int(idx), {})[slot] = t
    for key, v in json.loads(meta.get("scalars", "{}")).items():
        idx, slot = key.split(".", 1)
        state.setdefault(int(idx), {})[slot] = v
    return {"state": state, "param_groups": json.loads(meta["param_groups"])}


# --------------------------------------------------------------------------- RNG

def save_rng(folder: Path, rank: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    py = random.getstate()
    npy = np.random.get_state()
    (folder / f"rank{rank}.json").write_text(json.dumps({
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npy[0], npy[1].tolist(), int(npy[2]), int(npy[3]), float(npy[4])]}))
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    save_file(tensors, str(folder / f"rank{rank}.safetensors"))


def load_rng(folder: Path, rank: int) -> None:
    path = folder / f"rank{rank}.json"
    if not path.exists():
        raise CheckpointError(f"{path}: missing RNG state of rank {rank} (was the checkpoint "
                              "made with fewer processes?)")
    d = json.loads(path.read_text())
    random.setstate((d["python"][0], tuple(d["python"][1]), d["python"][2]))
    n = d["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    tensors = load_file(str(folder / f"rank{rank}.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- trainer state

@dataclass
class TrainerState:
    """Counters and positions saved in ``trainer_state.json``."""

    step: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    world_size: int = 1
    data: list[dict[str, Any]] = field(default_factory=list)   # StreamState per rank
    scheduler: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    created_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainerState":
        return cls(**json.loads(text))


def read_state(checkpoint: Path) -> TrainerState:
    path = checkpoint / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"{checkpoint}: no {STATE_FILE}; the checkpoint is incomplete")
    return TrainerState.from_json(path.read_text())


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    return json.loads(json.dumps(scheduler.state_dict()))


def write_model_files(folder: Path, model: MusicLM, state_dict: dict[str, torch.Tensor],
                      spec: ModelSpec, tokenizer: Any, config: dict[str, Any]) -> None:
    """What inference needs: weights, spec, tokenizer, config (main process only)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(state_dict, weight_names(model, spec), folder / WEIGHTS_FILE)
    (folder / SPEC_FILE).write_text(spec.to_json())
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def finish(tmp: Path, final: Path, state: TrainerState, keep_last: int) -> None:
    """Write the state file, rename ``tmp`` to ``final`` and delete old checkpoints."""
    state.created_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    (tmp / STATE_FILE).write_text(state.to_json())
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in list_checkpoints(final.parent)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def config_differences(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    keys = set(saved) | set(now)
    return {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}
