"""``llark infer``: answers from a trained checkpoint, for shard clips or an audio file.

    llark infer --checkpoint RUN_OR_CKPT --shards SHARDS --output preds.jsonl
                [--questions tasks|conversations] [--split test] [--limit N]
    llark infer --checkpoint RUN_OR_CKPT --audio song.wav --prompt "What key is this in?"
                [--encoder features|jukebox] [--start-s 0]

With ``--shards``, ``--questions tasks`` (the default) asks every clip the paper's evaluation
questions (key, tempo, genre, instruments: each one only where the clip has that label) and
``--questions conversations`` asks the first question of each of the clip's conversations.
Every line of the output holds the question, the model's answer, the reference answer and the
clip's labels, which is what ``llark eval`` scores. With ``--audio`` the encoder runs on the
file (one clip window from ``--start-s``) through ``embed.registry``. Generation is greedy by
default, sampled with ``--temperature > 0``, and batched.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from llark.errors import ConfigError, EncoderError, LlarkError, ShardError
# The questions and the labels they are scored against live with the scorer (torch-free), so
# that `llark benchmark --checkpoint annotator` and `llark eval` need no torch.
from model.evaluate import TASK_QUESTIONS, Labels
from model.checkpoint import WEIGHTS_FILE, CheckpointError, load_weights, resolve_checkpoint
from model.data import Sample, collate, open_shard_set, pool_frames, read_rows
from model.masking import build_prompt
from model.references import AUDIO_CONDITIONS, AUDIO_HEARD
from model.modeling import MusicLM, ModelSpec, audio_token_ids, build_model, read_spec
from model.storage import fetch_checkpoint, output_file
from pipelines.schema import decode_embedding

INFER_COLUMNS = ["id", "dataset", "split", "genres", "instruments", "tags", "annotation",
                 "conversations", "encoder", "n_frames", "dim", "embedding"]


@dataclass
class Request:
    clip_id: str
    task: str                  # key | tempo | genre | instruments | conversation | prompt
    question: str
    frames: np.ndarray         # (T, D)
    reference: str = ""
    conversation_id: str = ""
    family: str = ""
    labels: Labels = field(default_factory=Labels)
    condition: str = AUDIO_HEARD   # heard | zeroed | shuffled (model.references)


def ablate(requests: Sequence[Request], how: str, seed: int = 0) -> list[Request]:
    """Copies of ``requests`` without their own audio: ``zero`` sets every frame to 0,
    ``shuffle`` gives each clip the frames of another clip of the set (a random derangement of
    the clips, seeded, so no clip keeps its own)."""
    if how == "zero":
        return [replace(r, frames=np.zeros_like(r.frames), condition=AUDIO_CONDITIONS[how])
                for r in requests]
    if how != "shuffle":
        raise ConfigError(f"--ablate-audio must be one of {sorted(AUDIO_CONDITIONS)}, got {how!r}")
    frames: dict[str, np.ndarray] = {}
    for r in requests:
        frames.setdefault(r.clip_id, r.frames)
    clips = list(frames)
    if len(clips) < 2:
        raise ConfigError("--ablate-audio shuffle needs at least two clips to swap frames "
                          f"between, got {len(clips)}")
    order = [clips[i] for i in np.random.default_rng(seed).permutation(len(clips))]
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}  # no fixed point
    return [replace(r, frames=frames[donor[r.clip_id]], condition=AUDIO_CONDITIONS[how])
            for r in requests]


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0   # 0 = greedy
    top_p: float = 1.0
    batch_size: int = 8
    system_prompt: str = ""
    audio_pool: int = 1        # the checkpoint's (ModelSpec.audio_pool)


# --------------------------------------------------------------------------- loading

def load_for_inference(checkpoint: str | Path, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> tuple[MusicLM, Any, ModelSpec]:
    """The model, tokenizer and spec of a checkpoint (or of a run folder's latest)."""
    from transformers import AutoTokenizer

    ckpt = resolve_checkpoint(checkpoint)
    spec = read_spec(ckpt)
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt / "tokenizer"))
    model = build_model(spec, tokenizer)
    load_weights(model, ckpt / WEIGHTS_FILE, spec)
    model.to(device=device, dtype=dtype).eval()
    return model, tokenizer, spec


# --------------------------------------------------------------------------- requests

def row_labels(row: dict[str, Any]) -> Labels:
    ann = row.get("annotation") or {}
    tempo = ann.get("tempo_bpm")
    return Labels(dataset=row.get("dataset") or "", key=ann.get("key") or "",
                  tempo_bpm=float(tempo) if tempo else None,
                  genres=tuple(row.get("genres") or ()),
                  instruments=tuple(row.get("instruments") or ()))


def shard_requests(shards: str | Path, questions: str = "tasks", splits: Sequence[str] = (),
                   limit: int = 0, tasks: Sequence[str] = tuple(TASK_QUESTIONS),
                   verify_checksums: bool = True) -> Iterator[Request]:
    """Questions about every clip of a shard set, in stored order (``limit`` clips at most)."""
    if questions not in ("tasks", "conversations"):
        raise ConfigError(f"--questions must be 'tasks' or 'conversations', got {questions!r}")
    shard_set = open_shard_set(shards, verify_checksums=verify_checksums)
    for n, row in enumerate(read_rows(shard_set, INFER_COLUMNS, splits)):
        if limit and n >= limit:
            return
        frames = decode_embedding(row["embedding"], int(row["n_frames"]), int(row["dim"]))
        labels = row_labels(row)
        if questions == "conversations":
            for conv in row["conversations"] or []:
                turns = conv["turns"]
                if len(turns) < 2 or turns[0]["role"] != "user":
                    continue
                yield Request(row["id"], "conversation", turns[0]["content"], frames,
                              turns[1]["content"], conv["id"], conv["family"], labels)
            continue
        have = {"key": bool(labels.key), "tempo": labels.tempo_bpm is not None,
                "genre": bool(labels.genres), "instruments": bool(labels.instruments)}
        for task in tasks:
            if have[task]:
                yield Request(row["id"], task, TASK_QUESTIONS[task], frames, labels=labels)


def checkpoint_encoder(spec: ModelSpec, encoder_name: str = "") -> str:
    """The registry name of the encoder that makes the checkpoint's frames (``encoder_name``
    when given), checked against the projector's input size."""
    try:
        from embed.registry import ENCODERS, encoder_info
    except ImportError as exc:
        raise EncoderError(f"encoding audio needs the embed package ({exc})") from exc
    if not encoder_name:
        matches = [n for n in ENCODERS if encoder_info(n).name == spec.encoder]
        if not matches:
            raise ConfigError(f"the checkpoint was trained on {spec.encoder!r} embeddings and no "
                              f"registered encoder ({', '.join(ENCODERS)}) makes them; pass "
                              "--encoder")
        encoder_name = matches[0]
    info = encoder_info(encoder_name)
    if info.dim != spec.audio_dim:
        raise ConfigError(f"encoder {encoder_name!r} makes {info.dim}-d frames, the checkpoint's "
                          f"projector reads {spec.audio_dim}-d ({spec.encoder})")
    return encoder_name


def encode_window(audio: str | Path, encoder: Any, sample_rate_hz: int,
                  start_s: float = 0.0) -> np.ndarray:
    """One clip window of ``audio`` from ``start_s`` (shorter at the end of a short file)
    through ``encoder``: float16 frames (T, D)."""
    from llark.audio import load_audio, probe_audio
    from llark.windows import DEFAULT_CLIP_SECONDS

    duration = probe_audio(str(audio)).duration_s
    if start_s >= duration:
        raise ConfigError(f"--start-s {start_s} is past the end of {audio} ({duration:.2f} s)")
    end_s = min(start_s + DEFAULT_CLIP_SECONDS, duration)     # a short file is a short clip
    wave, _ = load_audio(str(audio), sample_rate_hz, start_s, end_s)
    (frames,) = encoder([wave])                                        # (T, D) float32
    return frames.astype(np.float16)


def audio_request(audio: str | Path, prompt: str, spec: ModelSpec, encoder_name: str = "",
                  start_s: float = 0.0, device: str = "auto") -> Request:
    """Encode one clip window of an audio file with the checkpoint's encoder (embed.registry)."""
    from embed.registry import build_encoder, encoder_info

    encoder_name = checkpoint_encoder(spec, encoder_name)
    encoder = build_encoder(encoder_name, device=device)
    frames = encode_window(audio, encoder, encoder_info(encoder_name).sample_rate_hz, start_s)
    return Request(str(audio), "prompt", prompt, frames)


# --------------------------------------------------------------------------- generation

def generate(model: MusicLM, tokenizer: Any, requests: Sequence[Request],
             cfg: GenerationConfig, device: str = "cpu") -> list[str]:
    """Answers for ``requests`` (batched, left-padded prompts)."""
    answers: list[str] = []
    suppress = audio_token_ids(tokenizer)
    eos = tokenizer.eos_token_id
    for start in range(0, len(requests), cfg.batch_size):
        chunk = requests[start:start + cfg.batch_size]
        samples = []
        for r in chunk:
            frames = pool_frames(np.asarray(r.frames, np.float16), cfg.audio_pool)
            ids = build_prompt(tokenizer, r.question, len(frames), cfg.system_prompt)
            samples.append(Sample(ids, [-100] * len(ids), frames,
                                  r.clip_id, r.conversation_id, r.family, 0, {}))
        batch = collate(samples, tokenizer.pad_token_id, padding_side="left").to(device)
        new = model.generate(batch.input_ids, batch.attention_mask, batch.audio,
                             batch.audio_lengths, max_new_tokens=cfg.max_new_tokens,
                             do_sample=cfg.temperature > 0, temperature=cfg.temperature or 1.0,
                             top_p=cfg.top_p, eos_token_id=eos, suppress_token_ids=suppress)
        for row in new:                                                # (N,) new tokens
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


def prediction_record(r: Request, answer: str) -> dict[str, Any]:
    return {"clip_id": r.clip_id, "task": r.task, "question": r.question, "prediction": answer,
            "reference": r.reference, "conversation_id": r.conversation_id, "family": r.family,
            "labels": asdict(r.labels), "condition": r.condition}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llark infer", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint folder, or a training --output (its latest checkpoint)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--shards", help="shard set to answer questions about")
    src.add_argument("--audio", help="an audio file (one clip window is encoded)")
    p.add_argument("--prompt", help="the question about --audio")
    p.add_argument("--encoder", default="",
                   help="registry name of the encoder for --audio (default: the one that made "
                        "the checkpoint's training embeddings)")
    p.add_argument("--start-s", type=float, default=0.0, help="where the --audio window starts")
    p.add_argument("--questions", default="tasks", choices=("tasks", "conversations"),
                   help="--shards: the evaluation questions, or each conversation's first one")
    p.add_argument("--tasks", default=",".join(TASK_QUESTIONS),
                   help="--questions tasks: which of " + ", ".join(TASK_QUESTIONS))
    p.add_argument("--split", action="append", default=[],
                   help="only clips of this split (repeatable; default: all)")
    p.add_argument("--limit", type=int, default=0, help="at most this many clips (0 = all)")
    p.add_argument("--output", help="JSON-lines predictions file (default: stdout)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of sampled decoding")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--no-verify", action="store_true", help="skip the shards' sha256 check")
    p.add_argument("--ablate-audio", action="append", default=[],
                   choices=sorted(AUDIO_CONDITIONS),
                   help="also answer every question without the clip's audio: 'zero' = all "
                        "frames 0, 'shuffle' = another clip's frames (repeatable; each record's "
                        "'condition' field says which; llark eval scores them as references)")
    return p


def run(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.audio and not ns.prompt:
        print("llark infer: error: --audio needs --prompt", file=sys.stderr)
        return 2
    tasks = tuple(t for t in ns.tasks.split(",") if t)
    if set(tasks) - set(TASK_QUESTIONS) or ns.batch_size < 1 or ns.max_new_tokens < 1:
        print(f"llark infer: error: --tasks must be among {list(TASK_QUESTIONS)}, --batch-size "
              "and --max-new-tokens >= 1", file=sys.stderr)
        return 2
    device = ("cuda" if torch.cuda.is_available() else "cpu") if ns.device == "auto" else ns.device
    try:
        checkpoint = fetch_checkpoint(ns.checkpoint)    # a bucket's is downloaded (cached)
        model, tokenizer, spec = load_for_inference(checkpoint, device,
                                                    getattr(torch, ns.dtype))
        torch.manual_seed(ns.seed)                  # after building (which seeds the init)
        gen = GenerationConfig(ns.max_new_tokens, ns.temperature, ns.top_p, ns.batch_size,
                               system_prompt=_system_prompt(checkpoint),
                               audio_pool=spec.audio_pool)
        if ns.audio:
            requests = [audio_request(ns.audio, ns.prompt, spec, ns.encoder, ns.start_s,
                                      ns.device)]
        else:
            requests = list(shard_requests(ns.shards, ns.questions, ns.split, ns.limit, tasks,
                                           verify_checksums=not ns.no_verify))
        if not requests:
            raise ShardError(f"{ns.shards}: no clip with a question to ask (splits {ns.split})")
        heard = requests
        for how in dict.fromkeys(ns.ablate_audio):
            requests = requests + ablate(heard, how, ns.seed)
    except (LlarkError, CheckpointError, FileNotFoundError) as exc:
        print(f"llark infer: error: {exc}", file=sys.stderr)
        return 2
    with output_file(ns.output) if ns.output else nullcontext(None) as local_output:
        answers = _answer_all(model, tokenizer, requests, gen, device, ns.batch_size,
                              local_output)
    clips = len({r.clip_id for r in requests})
    print(f"llark infer: {len(answers)} answers for {clips} clip(s) from {spec.lm} "
          f"({'greedy' if ns.temperature <= 0 else f'temperature {ns.temperature}'})"
          + (f" -> {ns.output}" if ns.output else ""), file=sys.stderr)
    return 0


def _answer_all(model: Any, tokenizer: Any, requests: list[Any], gen: GenerationConfig,
                device: str, batch_size: int, output: Path | None) -> list[str]:
    """Generate every answer, writing prediction records to ``output`` (stdout when None)."""
    from tqdm.auto import tqdm

    out = open(output, "w") if output is not None else sys.stdout
    answers: list[str] = []
    try:
        bar = tqdm(total=len(requests), desc="infer", disable=output is None, file=sys.stderr)
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            got = generate(model, tokenizer, chunk, gen, device)
            for r, a in zip(chunk, got):
                out.write(json.dumps(prediction_record(r, a), ensure_ascii=False) + "\n")
            out.flush()
            answers += got
            bar.update(len(chunk))
        bar.close()
    finally:
        if output is not None:
            out.close()
    return answers


def _system_prompt(checkpoint: str | Path) -> str:
    """The system prompt the model was trained with (from the checkpoint's config)."""
    path = resolve_checkpoint(checkpoint) / "config.json"
    return json.loads(path.read_text()).get("system_prompt", "") if path.exists() else ""


if __name__ == "__main__":
    raise SystemExit(run())
