"""The LLaVA-style music LM: audio frames → projector → a Hugging Face causal LM.

A prompt holds ``<audio_start>``, one ``<audio>`` placeholder per frame and ``<audio_end>``.
:meth:`MusicLM.embed_inputs` looks up the text embeddings and writes the projected frames over
the placeholders, after checking that every sample has exactly as many placeholders as frames
(a :class:`ValueError` with the numbers otherwise).

The LM is either ``tiny`` (a random-initialised Llama built in code, with a byte-level
tokenizer also built in code: nothing is downloaded) or any causal LM that
``AutoModelForCausalLM`` loads from a local folder or a hub name. The three audio tokens (and a
pad token when missing) are added to its tokenizer; new embedding rows start at the mean of the
existing ones. Tokenizers without a chat template get :data:`model.masking.DEFAULT_CHAT_TEMPLATE`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llark.errors import ConfigError
from model.masking import AUDIO, AUDIO_END, AUDIO_START, AUDIO_TOKENS, DEFAULT_CHAT_TEMPLATE, \
    IGNORE_INDEX, ROLE_TOKENS

SPEC_FILE = "llark_model.json"


class PeftMissingError(ImportError):
    """``trainable=lora`` needs the optional ``peft`` package."""


class ModelNotFoundError(ConfigError):
    """The LM (or its tokenizer) is neither a local folder nor in the Hugging Face cache."""


def _not_found(name: str, what: str, exc: Exception) -> ModelNotFoundError:
    from huggingface_hub.constants import HF_HUB_CACHE

    path = Path(name).expanduser()
    where = (f"{path.resolve()} exists but does not hold a loadable {what} ({exc})"
             if path.exists() else f"no folder {path.resolve()}, and not in the Hugging Face "
             f"cache {HF_HUB_CACHE}")
    return ModelNotFoundError(
        f"model {name!r}: {where}; set model= to a local copy (a folder with config.json, the "
        "weights and the tokenizer files), or hub_download=true to fetch it from the Hugging "
        "Face hub (nothing is downloaded otherwise)")


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild the model's structure; written into every checkpoint."""

    lm: str                                  # "tiny" or a path / hub name
    audio_dim: int
    projector: str = "linear"
    projector_hidden_size: int = 0
    trainable: str = "projector+lm"
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_intermediate_size: int = 128
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    attn_implementation: str = "sdpa"
    encoder: str = ""
    frame_rate_hz: float = 0.0
    audio_pool: int = 1                      # frames averaged into one audio token
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_tiny(self) -> bool:
        return self.lm == "tiny"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        d = json.loads(text)
        d["lora_target_modules"] = tuple(d.get("lora_target_modules", ()))
        return cls(**d)

    @classmethod
    def from_config(cls, cfg: Any, audio_dim: int, encoder: str = "",
                    frame_rate_hz: float = 0.0) -> "ModelSpec":
        return cls(lm=cfg.model, audio_dim=audio_dim, projector=cfg.projector,
                   projector_hidden_size=cfg.projector_hidden_size, trainable=cfg.trainable,
                   tiny_hidden_size=cfg.tiny_hidden_size, tiny_layers=cfg.tiny_layers,
                   tiny_heads=cfg.tiny_heads, tiny_intermediate_size=cfg.tiny_intermediate_size,
                   lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                   lora_target_modules=tuple(cfg.lora_target_modules),
                   attn_implementation=cfg.attn_implementation, encoder=encoder,
                   frame_rate_hz=frame_rate_hz, audio_pool=cfg.audio_pool)


# --------------------------------------------------------------------------- tokenizer

def tiny_tokenizer() -> Any:
    """A byte-level tokenizer built in code: 256 byte tokens + special tokens, no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": list(ROLE_TOKENS) + list(AUDIO_TOKENS)})
    tok.chat_template = DEFAULT_CHAT_TEMPLATE
    return tok


def prepare_tokenizer(tok: Any) -> Any:
    """Add the audio tokens (and a pad token and chat template when missing)."""
    missing = [t for t in AUDIO_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing},
                               replace_extra_special_tokens=False)
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<pad>"})
    if not getattr(tok, "chat_template", None):
        roles = [t for t in ROLE_TOKENS if t not in tok.get_vocab()]
        if roles:
            tok.add_special_tokens({"additional_special_tokens": roles},
                                   replace_extra_special_tokens=False)
        tok.chat_template = DEFAULT_CHAT_TEMPLATE
    for t in AUDIO_TOKENS:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"the tokenizer splits {t!r} into {len(ids)} tokens; it must be one")
    return tok


def build_tokenizer(spec: ModelSpec, hub_download: bool = False) -> Any:
    """The spec's tokenizer with the audio tokens; local files only unless ``hub_download``."""
    if spec.is_tiny:
        return tiny_tokenizer()
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec.lm, local_files_only=not hub_download)
    except (OSError, ValueError) as exc:     # missing files; an invalid repo id is a ValueError
        raise _not_found(spec.lm, "tokenizer", exc) from exc
    return prepare_tokenizer(tok)


# --------------------------------------------------------------------------- model

class Projector(nn.Module):
    """Audio frames ``(B, T, D)`` → LM embeddings ``(B, T, H)``."""

    def __init__(self, audio_dim: int, hidden_size: int, kind: str = "linear",
                 inner_size: int = 0) -> None:
        super().__init__()
        if kind == "linear":
            self.net = nn.Linear(audio_dim, hidden_size)
        elif kind == "mlp":
            inner = inner_size or hidden_size
            self.net = nn.Sequential(nn.Linear(audio_dim, inner), nn.GELU(),
                                     nn.Linear(inner, hidden_size))
        else:
            raise ValueError(f"projector kind {kind!r} is not 'linear' or 'mlp'")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


@dataclass
class MusicLMOutput:
    logits: torch.Tensor                 # (B, L, V)
    loss_sum: torch.Tensor | None        # () summed token cross-entropy (float32)
    n_supervised: torch.Tensor | None    # () number of supervised tokens


class MusicLM(nn.Module):
    """A causal LM that reads audio frames through a projector."""

    def __init__(self, lm: nn.Module, projector: Projector, audio_token_id: int,
                 pad_token_id: int) -> None:
        super().__init__()
        self.lm = lm
        self.projector = projector
        self.audio_token_id = audio_token_id
        self.pad_token_id = pad_token_id

    def embed_inputs(self, input_ids: torch.Tensor, audio: torch.Tensor,
                     audio_lengths: torch.Tensor) -> torch.Tensor:
        """Text embeddings with the projected frames written over the ``<audio>`` positions.

        input_ids (B, L), audio (B, T, D), audio_lengths (B,) → (B, L, H).
        """
        is_audio = input_ids == self.audio_token_id                       # (B, L)
        placeholders = is_audio.sum(dim=1)                                # (B,)
        if placeholders.shape != audio_lengths.shape or not torch.equal(
                placeholders, audio_lengths.to(placeholders.device)):
            raise ValueError(
                f"audio placeholders and frames disagree: {placeholders.tolist()} {AUDIO} "
                f"tokens per sample, {audio_lengths.tolist()} frames per sample")
        if audio_lengths.numel() and int(audio_lengths.max()) > audio.shape[1]:
            raise ValueError(f"audio_lengths {audio_lengths.tolist()} exceed the audio tensor's "
                             f"{audio.shape[1]} frames")
        emb_layer = self.lm.get_input_embeddings()
        safe_ids = input_ids.masked_fill(is_audio, self.pad_token_id)     # (B, L)
        embeds = emb_layer(safe_ids)                                      # (B, L, H)
        t = torch.arange(audio.shape[1], device=audio.device)             # (T,)
        valid = t[None, :] < audio_lengths.to(audio.device)[:, None]      # (B, T)
        frames = audio[valid]                                             # (N, D)
        proj_dtype = next(self.projector.parameters()).dtype
        projected = self.projector(frames.to(proj_dtype))                 # (N, H)
        embeds = embeds.clone()
        embeds[is_audio] = projected.to(embeds.dtype)                     # row-major on both sides
        return embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                audio: torch.Tensor, audio_lengths: torch.Tensor,
                labels: torch.Tensor | None = None) -> MusicLMOutput:
        embeds = self.embed_inputs(input_ids, audio, audio_lengths)       # (B, L, H)
        out = self.lm(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False)
        logits = out.logits                                               # (B, L, V)
        if labels is None:
            return MusicLMOutput(logits, None, None)
        shift_logits = logits[:, :-1].float()                             # (B, L-1, V)
        shift_labels = labels[:, 1:]                                      # (B, L-1)
        loss_sum = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                   shift_labels.reshape(-1), ignore_index=IGNORE_INDEX,
                                   reduction="sum")
        n = (shift_labels != IGNORE_INDEX).sum()
        return MusicLMOutput(logits, loss_sum, n)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 audio: torch.Tensor, audio_lengths: torch.Tensor, max_new_tokens: int = 64,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 eos_token_id: int | list[int] | None = None,
                 suppress_token_ids: list[int] | None = None) -> torch.Tensor:
        """New tokens ``(B, N)`` for left-padded prompts ``(B, L)``."""
        embeds = self.embed_inputs(input_ids, audio, audio_lengths)       # (B, L, H)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                                  "pad_token_id": self.pad_token_id}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        if eos_token_id is not None:
            kwargs["eos_token_id"] = eos_token_id
        if suppress_token_ids:
            kwargs["suppress_tokens"] = suppress_token_ids
        return self.lm.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


def _tiny_lm(spec: ModelSpec, tokenizer: Any) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=spec.tiny_hidden_size,
                      intermediate_size=spec.tiny_intermediate_size,
                      num_hidden_layers=spec.tiny_layers, num_attention_heads=spec.tiny_heads,
                      num_key_value_heads=spec.tiny_heads, max_position_embeddings=4096,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    cfg._attn_implementation = spec.attn_implementation
    return LlamaForCausalLM(cfg)


def loads_without_values() -> bool:
    """True on the ranks that must not read the LM's weights: accelerate's FSDP with
    ``fsdp_cpu_ram_efficient_loading`` (it sets the two environment variables) on any local rank
    but 0. FSDP then broadcasts local rank 0's weights when it wraps the model
    (``fsdp_sync_module_states``), so one copy of the LM is read into host memory per node."""
    import torch.distributed as dist

    def flag(name: str) -> bool:
        return os.environ.get(name, "false").lower() in ("1", "true", "yes")

    return (dist.is_available() and dist.is_initialized() and flag("ACCELERATE_USE_FSDP")
            and flag("FSDP_CPU_RAM_EFFICIENT_LOADING")
            and int(os.environ.get("LOCAL_RANK", "0")) != 0)


def _hf_lm(spec: ModelSpec, tokenizer: Any, hub_download: bool = False) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        if loads_without_values():
            from accelerate import init_empty_weights

            config = AutoConfig.from_pretrained(spec.lm, local_files_only=not hub_download)
            with init_empty_weights(include_buffers=False):    # parameters on meta, buffers real
                lm = AutoModelForCausalLM.from_config(
                    config, dtype=torch.float32, attn_implementation=spec.attn_implementation)
        else:
            lm = AutoModelForCausalLM.from_pretrained(
                spec.lm, dtype=torch.float32, attn_implementation=spec.attn_implementation,
                local_files_only=not hub_download)
    except (OSError, ValueError) as exc:
        raise _not_found(spec.lm, "causal LM", exc) from exc
    if lm.get_input_embeddings().num_embeddings < len(tokenizer):
        # under FSDP's cpu-ram-efficient loading the ranks other than local rank 0 hold the LM
        # on the meta device (no values); rank 0's values, mean-initialised, are broadcast
        meta = lm.get_input_embeddings().weight.is_meta
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=not meta)
    return lm


def _apply_lora(spec: ModelSpec, lm: nn.Module) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise PeftMissingError("trainable=lora needs the 'peft' package (pip install peft); "
                               "or train with trainable=projector or projector+lm") from exc
    cfg = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                     target_modules=list(spec.lora_target_modules), task_type="CAUSAL_LM")
    return get_peft_model(lm, cfg)


def build_model(spec: ModelSpec, tokenizer: Any, seed: int = 0,
                hub_download: bool = False) -> MusicLM:
    """The model of ``spec`` with fresh projector (and, for ``tiny``, fresh LM) weights; a
    Hugging Face LM is loaded from local files only unless ``hub_download``."""
    torch.manual_seed(seed)
    lm = _tiny_lm(spec, tokenizer) if spec.is_tiny else _hf_lm(spec, tokenizer, hub_download)
    hidden = lm.get_input_embeddings().embedding_dim
    projector = Projector(spec.audio_dim, hidden, spec.projector, spec.projector_hidden_size)
    if spec.trainable == "lora":
        lm = _apply_lora(spec, lm)
    model = MusicLM(lm, projector, tokenizer.convert_tokens_to_ids(AUDIO), tokenizer.pad_token_id)
    set_trainable(model, spec.trainable)
    return model


def set_trainable(model: MusicLM, trainable: str) -> None:
    """Freeze what does not train: the LM for ``projector``; the base weights for ``lora``."""
    for p in model.projector.parameters():
        p.requires_grad_(True)
    if trainable == "projector":
        model.lm.requires_grad_(False)
    elif trainable == "projector+lm":
        model.lm.requires_grad_(True)
    elif trainable == "lora":
        for name, p in model.lm.named_parameters():    # peft already froze the base weights
            p.requires_grad_("lora_" in name)
    else:
        raise ValueError(f"trainable {trainable!r} is not projector, projector+lm or lora")


def enable_gradient_checkpointing(model: MusicLM) -> None:
    lm = model.lm
    if hasattr(lm, "activation_checkpointing_enable"):
        lm.activation_checkpointing_enable({"use_reentrant": False})
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def audio_token_ids(tokenizer: Any) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in (AUDIO_START, AUDIO_END, AUDIO)]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def read_spec(checkpoint: str | Path) -> ModelSpec:
    path = Path(checkpoint) / SPEC_FILE
    if not path.exists():
        raise FileNotFoundError(f"{checkpoint}: no {SPEC_FILE}; not a llark checkpoint")
    return ModelSpec.from_json(path.read_text())
