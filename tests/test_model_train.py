"""model/train.py on the tiny config: CLI config, log line, checkpoints, exact resume (in-process
stop and a real SIGKILL), refusal of corrupt shards, reload + generation, infer and eval."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from llark.errors import ConfigError
from model.checkpoint import list_checkpoints, read_state
from model.config import TrainConfig
from model.infer import load_for_inference
from model.modeling import build_model
from model.train import build_parser, format_log_line, resolve_config, run
from tests.shard_factory import make_row, make_shard_set, write_shard_set

REPO = Path(__file__).resolve().parents[1]
LOG_LINE = re.compile(r"^step \d+ loss \d+\.\d{4} lr \d\.\de[-+]\d\d tokens/s \d+ samples/s "
                      r"\d+\.\d$")
# small and fast: 32-wide tiny Llama, 3 frames of 8 dims per clip
FAST = ["tiny_hidden_size=32", "tiny_intermediate_size=64", "per_device_batch_size=2",
        "log_every=1", "trackers=", "shuffle_buffer=4", "trace_data=true"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train-shards")
    make_shard_set(folder, n_rows=16, n_frames=3, dim=8, rows_per_shard=8, row_group_size=2,
                   vary_frames=True, multi_turn=True)
    return folder


def last_by_step(path: Path) -> dict[int, dict]:
    """Records of an appended JSONL log, the last one per step (a resumed run rewrites some)."""
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec
    return out


def train_args(shards: Path, out: Path, *extra: str) -> list[str]:
    return ["--shards", str(shards), "--output", str(out), *FAST, *extra]


# ---------------------------------------------------------------- config and log line

def test_config_files_and_overrides():
    ns = build_parser().parse_args(["--shards", "s", "--output", "o", "--config", "tiny",
                                    "--learning-rate", "0.01", "max_steps=30", "splits=train,test"])
    cfg = resolve_config(ns)
    assert (cfg.model, cfg.max_steps, cfg.learning_rate, cfg.splits) == \
        ("tiny", 30, 0.01, ("train", "test"))
    paper = resolve_config(build_parser().parse_args(["--shards", "s", "--output", "o",
                                                      "--config", "paper"]))
    assert (paper.global_batch_size, paper.learning_rate, paper.lr_schedule, paper.warmup_ratio,
            paper.max_steps, paper.mixed_precision) == (32, 5e-5, "cosine", 0.03, 100_000, "bf16")
    assert "Llama-2-7b-chat" in paper.model
    assert [paper.accumulation_steps(n) for n in (1, 4, 8)] == [8, 2, 1]
    smol = resolve_config(build_parser().parse_args(["--shards", "s", "--output", "o",
                                                     "--config", "smollm2"]))
    assert smol.model.endswith("SmolLM2-135M-Instruct") and smol.trainable == "lora"
    assert (smol.audio_pool, smol.lora_target_modules) == (10, ("q_proj", "k_proj", "v_proj",
                                                                "o_proj"))
    assert smol.system_prompt and smol.mir_weight == 0.7
    with pytest.raises(ConfigError, match="unknown key"):
        resolve_config(build_parser().parse_args(["--shards", "s", "--output", "o", "max_stepz=3"]))
    with pytest.raises(ConfigError, match="trainable"):
        TrainConfig(trainable="everything")
    with pytest.raises(ConfigError, match="no shipped config"):
        resolve_config(build_parser().parse_args(["--shards", "s", "--output", "o",
                                                  "--config", "huge"]))


def test_log_line_format():
    assert format_log_line(120, 2.31411, 1.8e-5, 3100.4, 12.43) == \
        "step 120 loss 2.3141 lr 1.8e-05 tokens/s 3100 samples/s 12.4"


# ---------------------------------------------------------------- a run and its checkpoints

def test_run_writes_checkpoints_logs_and_does_nothing_when_rerun(shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=5", "save_every=2", "keep_last=2")) == 0
    stdout = capsys.readouterr().out
    lines = [l for l in stdout.splitlines() if l.startswith("step ")]
    assert len(lines) == 5 and all(LOG_LINE.match(l) for l in lines), lines
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps == [4, 5]                         # keep_last=2; the end of the run is saved too
    ckpt = out / "checkpoints" / "checkpoint-00000005"
    for name in ("model.safetensors", "optimizer.safetensors", "llark_model.json",
                 "tokenizer/tokenizer.json", "config.json", "rng/rank0.json",
                 "rng/rank0.safetensors", "trainer_state.json"):
        assert (ckpt / name).exists(), name
    state = read_state(ckpt)
    assert state.step == 5 and state.samples_seen == 10 and state.world_size == 1
    assert state.config["max_steps"] == 5 and state.scheduler["last_epoch"] == 5
    (pos,) = state.data
    assert pos["num_workers"] == 1 and pos["workers"]["0"]["samples"] == 10
    assert not list((out / "checkpoints").glob("*.tmp"))
    metrics = last_by_step(out / "metrics.jsonl")
    assert sorted(metrics) == [1, 2, 3, 4, 5]
    # each step's own lr: 1 warmup step from 0 (ceil(0.03 x 5)), then the half cosine from the
    # peak 3e-3 over the 4 others: (1 + cos(pi j / 4)) / 2 for j = 0..3
    expected = [0.0, 3e-3, 3e-3 * (2 + 2 ** 0.5) / 4, 1.5e-3, 3e-3 * (2 - 2 ** 0.5) / 4]
    assert [metrics[s]["lr"] for s in range(1, 6)] == pytest.approx(expected, abs=1e-12)
    # a rerun of a finished run trains nothing and keeps the checkpoints as they are
    mtime = (ckpt / "model.safetensors").stat().st_mtime_ns
    assert run(train_args(shards, out, "max_steps=5", "save_every=2", "keep_last=2")) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (ckpt / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("workers,stop", [(0, 3), (2, 3)])
def test_stopped_run_resumes_like_an_uninterrupted_one(shards, tmp_path, workers, stop):
    """Stop after N steps, restart: step N+1.. see the same data and the same losses."""
    common = ["max_steps=7", "save_every=100", f"num_workers={workers}"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(train_args(shards, full, *common)) == 0
    assert run(train_args(shards, cut, *common, "--stop-at", str(stop))) == 0
    assert [s for s, _ in list_checkpoints(cut)] == [stop]
    assert run(train_args(shards, cut, *common)) == 0
    a, b = last_by_step(full / "data_trace.jsonl"), last_by_step(cut / "data_trace.jsonl")
    assert sorted(a) == sorted(b) == list(range(1, 8))
    assert all(a[s]["samples"] == b[s]["samples"] for s in a)
    la, lb = last_by_step(full / "metrics.jsonl"), last_by_step(cut / "metrics.jsonl")
    for s in range(1, 8):
        assert lb[s]["loss"] == pytest.approx(la[s]["loss"], rel=1e-5, abs=1e-6)
        assert lb[s]["lr"] == pytest.approx(la[s]["lr"])
    wa = load_for_inference(full)[0].state_dict()
    wb = load_for_inference(cut)[0].state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


@pytest.mark.slow
def test_sigkilled_run_resumes_from_its_last_checkpoint(shards, tmp_path):
    """A real SIGKILL mid-run: the restart continues from the last complete checkpoint with the
    same data order and losses as an uninterrupted run."""
    args = ["max_steps=14", "save_every=4", "num_workers=0"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run(train_args(shards, full, *args)) == 0
    cmd = [sys.executable, "-m", "model.train", *train_args(shards, killed, *args)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list_checkpoints(killed):
        assert proc.poll() is None, "the training process ended before its first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = [s for s, _ in list_checkpoints(killed)]
    assert saved and saved[-1] < 14, saved
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from checkpoint-{saved[-1]:08d}" in done.stdout
    a, b = last_by_step(full / "data_trace.jsonl"), last_by_step(killed / "data_trace.jsonl")
    assert sorted(b) == list(range(1, 15)) and all(a[s] == b[s] for s in a)
    la, lb = last_by_step(full / "metrics.jsonl"), last_by_step(killed / "metrics.jsonl")
    for s in range(saved[-1] + 1, 15):
        assert lb[s]["loss"] == pytest.approx(la[s]["loss"], rel=1e-4)


def test_resume_refuses_another_model_structure(shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=1")) == 0
    assert run(train_args(shards, out, "max_steps=2", "trainable=projector")) == 2
    assert "another model structure: trainable: 'projector+lm' -> 'projector'" in \
        capsys.readouterr().err


def test_truncated_shard_is_refused_before_training(tmp_path, capsys):
    make_shard_set(tmp_path / "s", n_rows=4, rows_per_shard=2)
    part = tmp_path / "s" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:-50])
    assert run(train_args(tmp_path / "s", tmp_path / "o", "max_steps=1")) == 2
    err = capsys.readouterr().err
    assert "part-00001.parquet" in err and "truncated or replaced" in err
    assert not (tmp_path / "o" / "checkpoints").exists()


# ---------------------------------------------------------------- reload, infer, eval

def test_checkpoint_reloads_with_its_projector_and_generates(shards, tmp_path):
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=3", "projector=mlp")) == 0
    model, tok, spec = load_for_inference(out)
    ckpt = list_checkpoints(out)[-1][1]
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        for name, p in model.named_parameters():
            assert torch.equal(p, f.get_tensor(name)), name
    fresh = build_model(spec, tok)
    assert not torch.equal(fresh.projector.net[0].weight, model.projector.net[0].weight)
    from model.infer import GenerationConfig, generate, shard_requests

    reqs = list(shard_requests(shards, "tasks", limit=2))
    answers = generate(model, tok, reqs, GenerationConfig(max_new_tokens=5, batch_size=3))
    again = generate(model, tok, reqs, GenerationConfig(max_new_tokens=5, batch_size=1))
    assert len(answers) == len(reqs) == 8 and answers == again   # greedy, batching-invariant


def test_projector_only_checkpoint_of_a_local_hf_lm_holds_only_the_projector(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from model.modeling import tiny_tokenizer

    lm_dir = tmp_path / "lm"
    tok = tiny_tokenizer()
    tok.chat_template = None
    LlamaForCausalLM(LlamaConfig(vocab_size=256 + 3, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2)).save_pretrained(lm_dir)
    tiny_tokenizer().save_pretrained(lm_dir)
    make_shard_set(tmp_path / "s", n_rows=4, n_frames=2, dim=8)
    out = tmp_path / "run"
    assert run(train_args(tmp_path / "s", out, "max_steps=2", f"model={lm_dir}",
                          "trainable=projector")) == 0
    ckpt = list_checkpoints(out)[-1][1]
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == ["projector.net.bias", "projector.net.weight"]
    model, _, spec = load_for_inference(out)
    assert spec.lm == str(lm_dir) and spec.trainable == "projector"


@pytest.mark.slow
def test_overfit_train_infer_eval_end_to_end(tmp_path, capsys):
    """Two clips, same question, different keys: the reloaded model answers each from its
    audio, and llark eval scores the key task 1.0."""
    from model.evaluate import run as evaluate
    from model.infer import run as infer

    rows = [make_row(i, n_frames=4, dim=16, families=("mir",), seed=5) for i in range(2)]
    keys = [r.annotation.key for r in rows]
    assert keys[0] != keys[1]
    write_shard_set(tmp_path / "s", rows)
    out = tmp_path / "run"
    assert run(["--shards", str(tmp_path / "s"), "--output", str(out), "max_steps=70",
                "log_every=35", "learning_rate=0.005", "per_device_batch_size=2",
                "shuffle_buffer=0", "warmup_ratio=0.05", "trackers="]) == 0
    preds = tmp_path / "preds.jsonl"
    assert infer(["--checkpoint", str(out), "--shards", str(tmp_path / "s"), "--tasks", "key",
                  "--output", str(preds)]) == 0
    got = [json.loads(l)["prediction"] for l in preds.read_text().splitlines()]
    assert got == [f"The key is {k}." for k in keys]
    assert evaluate(["--predictions", str(preds), "--output", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["key"]["weighted_score"] == 1.0 and metrics["key"]["n"] == 2
    assert "| key | 2 | MIREX weighted score | 1.000 |" in (tmp_path / "eval" / "report.md").read_text()


@pytest.mark.slow
def test_two_process_ddp_run_splits_data_by_rank_and_resumes(shards, tmp_path):
    """torchrun with 2 CPU processes (DDP over gloo): each rank trains on its own stream (the
    same samples ShardStream gives that rank in-process), and a stopped 2-process run resumes."""
    from model.data import ShardStream, StreamConfig, make_loader, open_shard_set
    from model.modeling import tiny_tokenizer

    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "model.train",
           *train_args(shards, out, "max_steps=6", "save_every=100")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd + ["--stop-at", "3"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 process(es) x 2 x 1 accumulation = global batch 4" in first.stdout
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from checkpoint-00000003" in second.stdout
    state = read_state(list_checkpoints(out)[-1][1])
    assert state.step == 6 and state.world_size == 2 and len(state.data) == 2
    assert (list_checkpoints(out)[-1][1] / "rng" / "rank1.json").exists()
    trace = last_by_step(out / "data_trace.jsonl")
    assert sorted(trace) == list(range(1, 7))
    tok = tiny_tokenizer()
    shard_set = open_shard_set(shards)
    for rank in range(2):
        stream = ShardStream(shard_set, tok, StreamConfig(
            seed=0, shuffle_buffer=4, splits=("train",), rank=rank, world_size=2,
            max_length=1024))
        it = iter(make_loader(stream, 2, tok.pad_token_id))
        for step in range(1, 7):
            b = next(it)
            expected = [[c, v] for c, v in zip(b.clip_ids, b.conversation_ids)]
            assert trace[step]["samples"][rank] == expected, (rank, step)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(shards, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "model.train",
           *train_args(shards, out, "max_steps=100000", "save_every=100000")]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and
                                          len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    (step, ckpt), = list_checkpoints(out)
    assert step >= 2 and read_state(ckpt).step == step
    assert f"stopped at step {step}/100000" in stdout


def test_bf16_autocast_with_gradient_checkpointing_keeps_fp32_weights(shards, tmp_path):
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=2", "mixed_precision=bf16",
                          "gradient_checkpointing=true", "tiny_layers=1")) == 0
    losses = last_by_step(out / "metrics.jsonl")
    assert all(np.isfinite(r["loss"]) for r in losses.values())
    with safe_open(str(list_checkpoints(out)[-1][1] / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    with safe_open(str(list_checkpoints(out)[-1][1] / "optimizer.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if "exp_avg" in k} == {torch.float32}


def test_lora_run_checkpoints_and_reloads(shards, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=2", "trainable=lora", "lora_r=2",
                          "lora_alpha=4")) == 0
    model, _, spec = load_for_inference(out)
    assert spec.trainable == "lora"
    with safe_open(str(list_checkpoints(out)[-1][1] / "model.safetensors"), "pt") as f:
        lora = [k for k in f.keys() if "lora_A" in k]
        assert lora
        for k in lora:
            assert torch.equal(model.state_dict()[k], f.get_tensor(k))


def test_trackers_are_used_only_when_installed(monkeypatch, capsys):
    import importlib.util

    from model.train import resolve_trackers

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert resolve_trackers(("auto",)) == []
    assert resolve_trackers(("wandb",)) == []
    assert "tracker 'wandb' is not installed" in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert resolve_trackers(("auto", "wandb")) == ["tensorboard", "wandb"]



def test_trackers_get_what_the_console_and_metrics_file_get(shards, tmp_path, monkeypatch):
    """TensorBoard / W&B receive the same record as metrics.jsonl (loss, lr, tokens/s,
    samples/s). Neither tracker is installed here: accelerate's tracker calls are recorded."""
    from accelerate import Accelerator

    import model.train as train_mod

    logged: list[tuple[int, dict]] = []
    monkeypatch.setattr(train_mod, "resolve_trackers", lambda names: ["tensorboard"])
    monkeypatch.setattr(Accelerator, "init_trackers", lambda self, *a, **k: None)
    monkeypatch.setattr(Accelerator, "end_training", lambda self: None)
    monkeypatch.setattr(Accelerator, "log", lambda self, values, step=None: logged.append(
        (step, dict(values))))
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=3")) == 0
    metrics = last_by_step(out / "metrics.jsonl")
    assert [s for s, _ in logged] == [1, 2, 3]
    for step, values in logged:
        assert values == {k: v for k, v in metrics[step].items() if k != "step"}
        assert set(values) == {"loss", "lr", "tokens_per_s", "samples_per_s"}


# ---------------------------------------------------------------- resuming with a changed plan

def _planned_lr(step: int, lr: float, max_steps: int, warmup_ratio: float = 0.03) -> float:
    """The lr of optimizer step ``step`` (1-based) in a fresh run of that cosine plan, written
    out from the schedule's definition (not taken from the trainer): step k comes after k - 1
    scheduler steps; W = ceil(warmup_ratio x max_steps) warmup steps rise linearly from 0,
    then a half cosine falls from the peak to 0 at max_steps."""
    warmup, done = math.ceil(warmup_ratio * max_steps), step - 1
    if done < warmup:
        return lr * done / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (done - warmup) / (max_steps - warmup)))


@pytest.mark.slow
def test_extended_run_follows_the_new_schedule_past_the_old_end(shards, tmp_path, capsys):
    """30 steps, then max_steps=40: steps 31-40 follow the 40-step cosine (not lr 0)."""
    out = tmp_path / "run"
    common = ["save_every=100", "log_every=1", "learning_rate=0.003"]
    assert run(train_args(shards, out, "max_steps=30", *common)) == 0
    capsys.readouterr()
    assert run(train_args(shards, out, "max_steps=40", *common)) == 0
    err = capsys.readouterr().err
    assert "re-planned from step 30: max_steps 30 -> 40" in err, err
    lrs = {s: r["lr"] for s, r in last_by_step(out / "metrics.jsonl").items()}
    assert sorted(lrs) == list(range(1, 41))
    # step 30, the old plan's last (1 warmup step): cos(pi 28 / 29), just above 0
    assert lrs[30] == pytest.approx(0.003 * 0.5 * (1 + math.cos(math.pi * 28 / 29)), rel=1e-6)
    assert lrs[30] < 1e-5
    for s in range(31, 41):
        assert lrs[s] == pytest.approx(_planned_lr(s, 0.003, 40), rel=1e-6), s
    assert lrs[35] > 1e-4                                       # well above 0: it trains


def test_resume_applies_a_changed_learning_rate_and_refuses_a_changed_seed(shards, tmp_path,
                                                                         capsys):
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=20", "learning_rate=0.003",
                          "--stop-at", "10")) == 0
    capsys.readouterr()
    assert run(train_args(shards, out, "max_steps=20", "seed=7", "learning_rate=0.003")) == 2
    err = capsys.readouterr().err
    assert "seed: 0 (now 7)" in err and "Resume with seed=0" in err, err
    assert run(train_args(shards, out, "max_steps=20", "learning_rate=0.001")) == 0
    err = capsys.readouterr().err
    assert "learning_rate 0.003 -> 0.001" in err, err
    lrs = {s: r["lr"] for s, r in last_by_step(out / "metrics.jsonl").items()}
    for s in range(1, 11):
        assert lrs[s] == pytest.approx(_planned_lr(s, 0.003, 20), rel=1e-6), s
    for s in range(11, 21):
        assert lrs[s] == pytest.approx(_planned_lr(s, 0.001, 20), rel=1e-6, abs=1e-12), s
    state = read_state(list_checkpoints(out)[-1][1])
    assert state.scheduler["base_lrs"] == [0.001, 0.001]


# ---------------------------------------------------------------- DeepSpeed accumulation

class _EngineStandIn:
    """Only what a GPU would run: DeepSpeed's engine, reduced to its documented accumulation
    contract (``backward`` divides the loss by ``gradient_accumulation_steps``; ``step`` updates
    the weights only at the boundary ``set_gradient_accumulation_boundary`` marked)."""

    def __init__(self, optimizer: torch.optim.Optimizer, gas: int) -> None:
        self.optimizer, self.gas = optimizer, gas
        self.boundary = False
        self.step_calls = self.updates = 0

    def set_gradient_accumulation_boundary(self, is_boundary: bool) -> None:
        self.boundary = is_boundary

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.gas).backward()

    def step(self) -> None:
        self.step_calls += 1
        if self.boundary:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.updates += 1

    def get_global_grad_norm(self) -> None:
        return None


def test_deepspeed_engine_steps_once_per_accumulation_and_matches_plain_training(shards,
                                                                               monkeypatch):
    """The trainer's step logic under accelerate's real DeepSpeed wrappers: with 3 micro-batches
    per step the engine steps once per optimizer step, and the weights equal plain training."""
    import copy

    from accelerate import Accelerator
    from accelerate.utils import DistributedType
    from accelerate.utils.deepspeed import DeepSpeedEngineWrapper, DeepSpeedOptimizerWrapper

    from model.data import ShardStream, StreamConfig, collate, open_shard_set
    from model.modeling import ModelSpec, tiny_tokenizer
    from model.train import make_optimizer, optimizer_step

    cfg = TrainConfig(tiny_hidden_size=32, tiny_intermediate_size=64, max_grad_norm=0.0)
    tok = tiny_tokenizer()
    shard_set = open_shard_set(shards)
    stream = iter(ShardStream(shard_set, tok, StreamConfig(shuffle_buffer=0)))
    micro = [collate([next(stream), next(stream)], tok.pad_token_id) for _ in range(6)]
    spec = ModelSpec.from_config(cfg, shard_set.audio_dim)
    plain = build_model(spec, tok, seed=0)
    staged = copy.deepcopy(plain)

    acc = Accelerator(cpu=True)
    opt_plain = make_optimizer(plain, cfg)
    for k in range(2):
        optimizer_step(acc, plain, opt_plain, micro[3 * k: 3 * k + 3], 0.0)

    opt = make_optimizer(staged, cfg)
    engine = _EngineStandIn(opt, gas=3)
    monkeypatch.setattr(Accelerator, "distributed_type",
                        property(lambda self: DistributedType.DEEPSPEED))
    acc.deepspeed_engine_wrapped = DeepSpeedEngineWrapper(engine)
    wrapped = DeepSpeedOptimizerWrapper(opt)
    for k in range(2):
        optimizer_step(acc, staged, wrapped, micro[3 * k: 3 * k + 3], 0.0)
    assert (engine.step_calls, engine.updates) == (2, 2)
    assert acc.sync_gradients                       # left as accelerate expects it
    a, b = plain.state_dict(), staged.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.equal(a[k], build_model(spec, tok, seed=0).state_dict()[k]) for k in a)


def test_train_refuses_a_model_that_is_not_local_without_downloading(shards, tmp_path, capsys):
    missing = tmp_path / "models" / "Llama-2-7b-chat-hf"
    assert run(train_args(shards, tmp_path / "run", f"model={missing}", "max_steps=1")) == 2
    err = capsys.readouterr().err
    assert f"no folder {missing}" in err and "hub_download=true" in err, err


def test_deepspeed_config_gets_the_trainers_batch_accumulation_and_clipping():
    """The shipped ZeRO-3 config, as accelerate's DeepSpeedPlugin reads it, after the trainer
    filled it in: the engine accumulates what the trainer accumulates, and checkpoints can
    gather the weights."""
    import yaml
    from accelerate.utils import DeepSpeedPlugin

    from model.train import configure_deepspeed

    shipped = yaml.safe_load((REPO / "model/configs/accelerate/deepspeed_zero3.yaml").read_text())
    ds = shipped["deepspeed_config"]
    plugin = DeepSpeedPlugin(
        zero_stage=ds["zero_stage"], gradient_accumulation_steps=ds["gradient_accumulation_steps"],
        gradient_clipping=ds["gradient_clipping"], zero3_init_flag=ds["zero3_init_flag"],
        zero3_save_16bit_model=False, offload_optimizer_device=ds["offload_optimizer_device"],
        offload_param_device=ds["offload_param_device"])
    cfg = TrainConfig(per_device_batch_size=4, global_batch_size=32, max_grad_norm=0.5)
    configure_deepspeed(plugin.deepspeed_config, cfg, cfg.accumulation_steps(4))
    c = plugin.deepspeed_config
    assert (c["train_micro_batch_size_per_gpu"], c["gradient_accumulation_steps"],
            c["gradient_clipping"]) == (4, 2, 0.5)
    assert c["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert c["train_batch_size"] == "auto"          # accelerate derives 4 x 2 x processes


def test_optimizer_groups_come_from_the_unwrapped_model():
    """Under FSDP the optimizer is made after wrapping, when every parameter is a flat 1-D
    shard: the decay groups then come from the names of the unwrapped model."""
    from model.modeling import ModelSpec, tiny_tokenizer
    from model.train import make_optimizer, no_decay_names

    cfg = TrainConfig(tiny_hidden_size=32, tiny_intermediate_size=64, weight_decay=0.1)
    model = build_model(ModelSpec.from_config(cfg, 8), tiny_tokenizer())
    plain = make_optimizer(model, cfg)
    names = no_decay_names(model)
    assert "projector.net.bias" in names and "lm.model.norm.weight" in names
    assert "projector.net.weight" not in names
    flat = build_model(ModelSpec.from_config(cfg, 8), tiny_tokenizer())
    for p in flat.parameters():                   # what FSDP's sharded views look like
        p.data = p.data.reshape(-1)
    # from the flat shards alone every parameter would look 1-D: nothing would be decayed
    assert make_optimizer(flat, cfg).param_groups[0]["params"] == []
    wrapped = make_optimizer(flat, cfg, names)
    assert [len(g["params"]) for g in wrapped.param_groups] == \
        [len(g["params"]) for g in plain.param_groups]
    assert [g["weight_decay"] for g in wrapped.param_groups] == [0.1, 0.0]


# ---------------------------------------------------------------- resume points, data order, lr

def test_every_interruption_point_resumes_with_the_samples_of_an_uninterrupted_run(tmp_path):
    """16 clips, seed 3, a 5-row buffer, 2 per batch: a run stopped after every step in turn
    (--stop-at 1, then 2, ... each resuming the one before) traces exactly the samples and
    losses of an uninterrupted run. The stops right after an epoch's last row (step 6 here)
    once failed with "found no usable row in a whole epoch" (exit 2)."""
    make_shard_set(tmp_path / "s", n_rows=16, n_frames=3, dim=8, rows_per_shard=8,
                   row_group_size=2, vary_frames=True, multi_turn=True)
    common = ["max_steps=15", "save_every=100", "seed=3", "shuffle_buffer=5"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(train_args(tmp_path / "s", full, *common)) == 0
    for stop in range(1, 15):
        assert run(train_args(tmp_path / "s", cut, *common, "--stop-at", str(stop))) == 0, stop
        assert [s for s, _ in list_checkpoints(cut)][-1] == stop
    assert run(train_args(tmp_path / "s", cut, *common)) == 0
    a, b = last_by_step(full / "data_trace.jsonl"), last_by_step(cut / "data_trace.jsonl")
    assert sorted(a) == sorted(b) == list(range(1, 16))
    assert [a[s]["samples"] for s in a] == [b[s]["samples"] for s in a]
    # 30 samples of 16 clips: the run crosses an epoch's end
    assert len({c for s in a for c, _ in a[s]["samples"][0]}) == 16          # rank 0
    la, lb = last_by_step(full / "metrics.jsonl"), last_by_step(cut / "metrics.jsonl")
    for s in range(1, 16):
        assert lb[s]["loss"] == pytest.approx(la[s]["loss"], rel=1e-5, abs=1e-6), s


@pytest.mark.parametrize("key,new,saved_as,override", [
    ("shuffle_buffer", "7", "4", "shuffle_buffer=4"),
    ("shuffle_buffer", "0", "4", "shuffle_buffer=4"),
    ("shuffle_buffer_mb", "0.001", "256.0", "shuffle_buffer_mb=256.0"),
    ("splits", "train,test", "['train']", "splits=train"),
])
def test_resume_refuses_a_changed_shuffle_or_splits(shards, tmp_path, capsys, key, new,
                                                    saved_as, override):
    """The saved position indexes into the order and the rows these keys set: a resume with
    other values is refused (exit 2) with the saved value to resume with; that value resumes."""
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=3", "--stop-at", "1")) == 0
    capsys.readouterr()
    assert run(train_args(shards, out, "max_steps=3", f"{key}={new}")) == 2
    err = capsys.readouterr().err
    assert f"saved a data position made with other {key}: {saved_as} (now" in err, err
    assert f"Resume with {override}, or start a new --output" in err, err
    assert [s for s, _ in list_checkpoints(out)] == [1]          # nothing trained
    assert run(train_args(shards, out, "max_steps=3", override)) == 0


def test_resume_applies_changed_family_weights_with_a_notice(shards, tmp_path, capsys):
    """Family weights change which conversation a row gives, not which rows come when: they
    apply from the next sample on."""
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=3", "--stop-at", "1")) == 0
    capsys.readouterr()
    assert run(train_args(shards, out, "max_steps=3", "mir_weight=0.9")) == 0
    assert "resuming with mir_weight = 0.9 (checkpoint had 0.3)" in capsys.readouterr().err


# closed-form factors of an 8-step plan with 2 warmup steps (0, 1/2), then for the 6 others
# min + (1 - min)(1 + cos(pi j / 6)) / 2, j = 0..5, cos = 1, r3/2, 1/2, 0, -1/2, -r3/2
_R3 = 3 ** 0.5
COSINE_MIN_01 = [0.0, 0.5, 1.0, 0.1 + 0.45 * (1 + _R3 / 2), 0.775, 0.55, 0.325,
                 0.1 + 0.45 * (1 - _R3 / 2)]
CONSTANT = [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("kind,factors", [("cosine", COSINE_MIN_01), ("constant", CONSTANT)])
def test_schedule_gives_each_step_its_closed_form_lr(kind, factors):
    """The lr of optimizer steps 1..8 (read before each scheduler step), fresh and resumed at
    every step (a schedule rebuilt from its step count, as a resumed run rebuilds it)."""
    from model.checkpoint import make_scheduler

    def fresh_opt() -> torch.optim.Optimizer:
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)

    opt = fresh_opt()
    sched = make_scheduler(opt, 2, 8, kind, 0.1, 0.004)
    got = []
    for _ in range(8):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert got == pytest.approx([0.004 * f for f in factors], abs=1e-12)
    for start in range(8):
        opt = fresh_opt()
        make_scheduler(opt, 2, 8, kind, 0.1, 0.004, start_step=start)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.004 * factors[start], abs=1e-12)


def test_logged_lr_is_the_steps_own(shards, tmp_path):
    """metrics.jsonl logs the lr each step trained with (not the next step's): 8 steps,
    warmup_ratio 0.25 (2 steps), cosine to min_lr_ratio 0.1 of the peak 0.004."""
    out = tmp_path / "run"
    assert run(train_args(shards, out, "max_steps=8", "warmup_ratio=0.25", "min_lr_ratio=0.1",
                          "learning_rate=0.004")) == 0
    lrs = [r["lr"] for _, r in sorted(last_by_step(out / "metrics.jsonl").items())]
    assert lrs == pytest.approx([0.004 * f for f in COSINE_MIN_01], abs=1e-12)
