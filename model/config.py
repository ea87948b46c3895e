"""The trainer's configuration: one frozen dataclass, documented fields, validation.

Resolution order (``llark.config.from_args``): dataclass defaults < ``--config`` YAML (``tiny``,
``paper`` or a path) < ``key=value`` overrides on the command line. The defaults are the
``tiny`` recipe (a random 2-layer Llama built in code, runs on a CPU); ``model/configs/paper.yaml``
holds the paper's recipe for Llama-2-7B-chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llark.config import doc
from llark.errors import ConfigError
from pipelines.schema import FAMILIES, SPLITS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROJECTORS = ("linear", "mlp")
TRAINABLE = ("projector", "projector+lm", "lora")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("no", "bf16", "fp16")
TRACKERS = ("auto", "tensorboard", "wandb")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
# keys that change the model's structure: a checkpoint made with other values cannot resume
STRUCTURAL_KEYS = ("model", "tiny_hidden_size", "tiny_layers", "tiny_heads",
                   "tiny_intermediate_size", "projector", "projector_hidden_size", "trainable",
                   "lora_r", "lora_alpha", "lora_target_modules", "audio_pool")
# keys of the optimisation plan: a resumed run applies changed values from its current step on
# (the schedule re-planned, the optimizer's hyper-parameters set); see docs/training.md
PLAN_KEYS = ("max_steps", "learning_rate", "warmup_ratio", "lr_schedule", "min_lr_ratio",
             "weight_decay", "adam_beta1", "adam_beta2", "adam_eps")
# keys the saved data position depends on: a resumed run with other values is refused. The
# seed orders every epoch's row groups and rows, num_workers deals them (a position indexes into
# that order); shuffle_buffer = 0 turns that order off and, with shuffle_buffer_mb, bounds the
# buffer that sets the order of the samples (the saved buffer was filled under the old bounds);
# splits pick the rows (the saved buffer holds rows of the old splits). Resumed with other
# values, a run would neither continue the old stream nor start the new one. Family weights,
# max_length, max_audio_frames and system_prompt change what a row's sample is (a weight set to
# or from 0 also shifts later random draws), never which rows an epoch holds or the position's
# meaning: they apply from the next sample on, with a notice (docs/training.md).
DATA_ORDER_KEYS = ("seed", "num_workers", "shuffle_buffer", "shuffle_buffer_mb", "splits")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``llark train`` needs besides ``--shards`` and ``--output``."""

    # ---------------------------------------------------------------- model
    model: str = doc("'tiny' (a random-initialised Llama built in code, byte-level tokenizer, no "
                     "download) or a Hugging Face causal LM: a local folder, or a hub name "
                     "already in the Hugging Face cache (or fetched with hub_download=true)",
                     default="tiny")
    hub_download: bool = doc("let transformers download the model and tokenizer from the "
                             "Hugging Face hub when they are not local (default: local files "
                             "only, nothing is downloaded at run time)", default=False)
    tiny_hidden_size: int = doc("hidden size of the tiny Llama", default=64)
    tiny_layers: int = doc("decoder layers of the tiny Llama", default=2)
    tiny_heads: int = doc("attention heads of the tiny Llama", default=4)
    tiny_intermediate_size: int = doc("MLP width of the tiny Llama", default=128)
    attn_implementation: str = doc(f"attention kernel of the LM, one of {ATTENTION}",
                                   default="sdpa")
    projector: str = doc("audio projector: 'linear' (the paper: Linear(dim -> hidden)) or 'mlp' "
                         "(Linear-GELU-Linear)", default="linear")
    projector_hidden_size: int = doc("inner width of the 'mlp' projector; 0 = the LM's hidden size",
                                     default=0)
    trainable: str = doc(f"what trains, one of {TRAINABLE}: the projector only, the projector and "
                         "the whole LM (the paper), or the projector plus LoRA adapters (needs "
                         "peft)", default="projector+lm")
    lora_r: int = doc("LoRA rank", default=16)
    lora_alpha: int = doc("LoRA alpha", default=32)
    lora_dropout: float = doc("LoRA dropout", default=0.05)
    lora_target_modules: tuple[str, ...] = doc(
        "LM modules that get LoRA adapters (comma-separated on the command line)",
        default=("q_proj", "k_proj", "v_proj", "o_proj"))
    gradient_checkpointing: bool = doc("recompute LM activations in the backward pass (saves "
                                       "memory, costs ~30 % more compute)", default=False)

    # ---------------------------------------------------------------- data
    system_prompt: str = doc("system message put before every conversation ('' = none; the "
                             "tokenizer's chat template decides how it is rendered)", default="")
    mir_weight: float = doc("sampling weight of the MIR Q&A family", default=0.3)
    caption_weight: float = doc("sampling weight of the caption family", default=0.15)
    reasoning_weight: float = doc("sampling weight of the reasoning family", default=0.55)
    splits: tuple[str, ...] = doc(f"clip splits to train on (any of {SPLITS}); empty = all rows",
                                  default=("train",))
    max_length: int = doc("most tokens per sample (audio placeholders + text); longer samples "
                          "are cut at the end, and skipped with a count when nothing "
                          "supervised is left", default=1024)
    max_audio_frames: int = doc("keep at most this many audio frames per clip (0 = all)",
                                default=0)
    audio_pool: int = doc("average every N consecutive frames into one audio token (1 = none; "
                          "10 turns 10 Hz frames into one token a second). Part of the model: "
                          "saved in the checkpoint's spec and applied by llark infer and "
                          "llark benchmark too", default=1)
    shuffle_buffer: int = doc("most rows held by each data worker's shuffle buffer (0 = no "
                              "shuffling: row groups and rows in stored order)", default=64)
    shuffle_buffer_mb: float = doc(
        "most MB (2^20 bytes) of embeddings held by the shuffle buffers of one rank, split "
        "evenly over its data workers; a buffer holds whichever is fewer, shuffle_buffer rows "
        "or this many bytes (Jukebox rows are 2.18 MB: 256 MB = ~117 rows). Host memory per "
        "rank for data is about this + (1 + num_workers) row groups + prefetched batches "
        "(docs/training.md)", default=256.0)
    num_workers: int = doc("DataLoader worker processes per rank (0 = load in the training "
                           "process)", default=0)
    verify_checksums: bool = doc("check every shard's sha256 against _index.json before "
                                 "training (sizes are always checked)", default=True)

    # ---------------------------------------------------------------- optimisation
    per_device_batch_size: int = doc("samples per device per micro-batch", default=4)
    global_batch_size: int = doc("samples per optimizer step over all devices; 0 = "
                                 "per_device_batch_size x grad_accum_steps x devices. When set, "
                                 "grad_accum_steps is derived from it", default=0)
    grad_accum_steps: int = doc("micro-batches per optimizer step (ignored when "
                                "global_batch_size is set)", default=1)
    learning_rate: float = doc("peak learning rate", default=3e-3)
    weight_decay: float = doc("AdamW weight decay (not applied to biases and norms)", default=0.0)
    adam_beta1: float = doc("AdamW beta1", default=0.9)
    adam_beta2: float = doc("AdamW beta2", default=0.999)
    adam_eps: float = doc("AdamW epsilon", default=1e-8)
    max_grad_norm: float = doc("gradient clipping norm (0 = no clipping)", default=1.0)
    lr_schedule: str = doc(f"one of {SCHEDULES}, both after a linear warmup", default="cosine")
    warmup_ratio: float = doc("fraction of max_steps spent warming up (the paper: 0.03)",
                              default=0.03)
    min_lr_ratio: float = doc("cosine floor as a fraction of the peak learning rate", default=0.0)
    max_steps: int = doc("optimizer steps to train", default=100)
    mixed_precision: str = doc(f"one of {PRECISIONS}: autocast precision; weights, gradients "
                               "and optimizer state stay float32", default="no")
    seed: int = doc("seed of the model initialisation, data order and sampling", default=0)

    # ---------------------------------------------------------------- checkpoints and logs
    save_every: int = doc("save a checkpoint every N steps (a final one is always saved)",
                          default=50)
    keep_last: int = doc("checkpoints kept in OUTPUT/checkpoints (older ones are deleted)",
                         default=3)
    log_every: int = doc("print the log line every N steps", default=10)
    trackers: tuple[str, ...] = doc(
        f"experiment trackers among {TRACKERS}: 'auto' = TensorBoard when installed (W&B only "
        "when named); empty = none", default=("auto",))
    trace_data: bool = doc("append the clip and conversation ids of every step to "
                           "OUTPUT/data_trace.jsonl (for checking data order)", default=False)

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"TrainConfig: {msg}")

        if not self.model:
            bad("model must be 'tiny' or a path/name of a causal LM")
        for name in ("tiny_hidden_size", "tiny_layers", "tiny_heads", "tiny_intermediate_size",
                     "per_device_batch_size", "grad_accum_steps", "max_steps", "save_every",
                     "keep_last", "log_every", "max_length", "lora_r", "lora_alpha",
                     "audio_pool"):
            if getattr(self, name) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("projector_hidden_size", "max_audio_frames", "shuffle_buffer", "num_workers",
                     "global_batch_size"):
            if getattr(self, name) < 0:
                bad(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.tiny_hidden_size % self.tiny_heads:
            bad(f"tiny_hidden_size {self.tiny_hidden_size} is not divisible by tiny_heads "
                f"{self.tiny_heads}")
        if self.projector not in PROJECTORS:
            bad(f"projector {self.projector!r} not in {PROJECTORS}")
        if self.trainable not in TRAINABLE:
            bad(f"trainable {self.trainable!r} not in {TRAINABLE}")
        if self.lr_schedule not in SCHEDULES:
            bad(f"lr_schedule {self.lr_schedule!r} not in {SCHEDULES}")
        if self.mixed_precision not in PRECISIONS:
            bad(f"mixed_precision {self.mixed_precision!r} not in {PRECISIONS}")
        if self.attn_implementation not in ATTENTION:
            bad(f"attn_implementation {self.attn_implementation!r} not in {ATTENTION}")
        unknown = set(self.trackers) - set(TRACKERS)
        if unknown:
            bad(f"trackers {sorted(unknown)} not in {TRACKERS}")
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            bad(f"splits {sorted(unknown)} not in {SPLITS}")
        weights = self.family_weights
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            bad(f"family weights must be >= 0 with a positive sum, got {weights}")
        if not 0 <= self.warmup_ratio < 1:
            bad(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.min_lr_ratio <= 1:
            bad(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.shuffle_buffer_mb <= 0:
            bad(f"shuffle_buffer_mb must be > 0, got {self.shuffle_buffer_mb}")
        if self.learning_rate <= 0:
            bad(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            bad(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.max_grad_norm < 0 or self.weight_decay < 0:
            bad("max_grad_norm and weight_decay must be >= 0")
        if self.global_batch_size and self.global_batch_size % self.per_device_batch_size:
            bad(f"global_batch_size {self.global_batch_size} is not a multiple of "
                f"per_device_batch_size {self.per_device_batch_size}")

    @property
    def family_weights(self) -> dict[str, float]:
        weights = {"mir": self.mir_weight, "caption": self.caption_weight,
                   "reasoning": self.reasoning_weight}
        assert tuple(weights) == FAMILIES
        return weights

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each of ``world_size`` devices."""
        if not self.global_batch_size:
            return self.grad_accum_steps
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not divisible by "
                f"per_device_batch_size {self.per_device_batch_size} x {world_size} device(s)")
        return self.global_batch_size // per_step


def config_path(name_or_path: str) -> Path:
    """``tiny`` / ``paper`` → the shipped YAML; anything else is a path to a YAML file."""
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")):
        if not shipped.exists():
            names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(f"no shipped config {name_or_path!r}; shipped: {names}, or give a "
                              "path to a YAML file")
        return shipped
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    return path
