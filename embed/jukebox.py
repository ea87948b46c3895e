"""Jukebox-5B layer-36 embeddings, as in the LLark paper, on current PyTorch and GPUs.

The model is OpenAI's Jukebox as packaged by ``jukebox-infer`` (the original code ported to
torch >= 2.7): its VQ-VAE turns 44.1 kHz audio into top-level codes (one per 128 samples) and
the top-level 5B prior, cut after its 36th transformer block, turns 8,192 codes into 4,800-d
activations. We mean-pool those to the shared 10 Hz frame grid of :mod:`embed.base`.

What this module does on top of the package (and why):

* **Weights** load only from a local folder (``checkpoint_dir`` or ``$LLARK_JUKEBOX_DIR``) holding
  ``vqvae.pth.tar`` and ``prior_level_2.pth.tar``. When they are missing the error names them and
  where to get them; nothing is ever downloaded. Only blocks ``0 .. layers-1`` of the prior are
  built and loaded (the 36 of 72 that the paper uses: half the memory and FLOPs).
* **Whole windows.** Audio is peak-normalised per window, cut into pieces of the context
  (``n_ctx * 128`` = 1,048,576 samples), each piece padded with zeros to the context and encoded;
  the codes of all pieces are concatenated, so a window longer than the context is encoded in
  full (each piece sees only its own context) and no audio goes unencoded.
* **Short pieces cost what they hold.** The prior is causal (every attention layer of
  ``attn_order=2`` looks only backwards), so the activations of the first ``L`` codes do not
  depend on the codes after them: the transformer runs on the real codes only, rounded up to
  its 64-code block, instead of on a full zero-padded context. The VQ-VAE still encodes the full
  padded context, exactly as a direct call would. Tests check both against the package's own
  forward pass.
* **Batched, half precision.** Pieces from all windows of a call are sorted by length and run
  ``batch_pieces`` at a time; on CUDA the transformer's matrix weights are cast to ``float16``
  (the original release's inference precision) or ``bfloat16``; layer norms and softmax stay
  in float32 as in the package. The VQ-VAE and the pooling run in float32.
* **No CUDA-only code paths.** The package's forward passes assert ``torch.cuda.LongTensor``
  inputs; we call its modules (VQ-VAE encoder, bottleneck, embeddings, label conditioner
  tables, transformer) directly, so the same code runs on CPU with a tiny random model of the
  same architecture (:meth:`JukeboxConfig.tiny`), which is what the tests use.

Conditioning follows Castellon et al. (``jukemirlib``, which LLark used): artist and genre
"unknown", total length 62 s, offset 0, for every piece.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embed.base import FRAME_RATE_HZ, Encoder, EncoderInfo, check_windows, n_frames
from llark.config import doc
from llark.errors import ConfigError, EncoderError

log = logging.getLogger("llark.embed")

SAMPLE_RATE_HZ = 44100
HOP_SAMPLES = 128                  # samples per top-level code: 2**3 * 2**2 * 2**2
CHECKPOINT_ENV = "LLARK_JUKEBOX_DIR"
VQVAE_FILE = "vqvae.pth.tar"
PRIOR_FILE = "prior_level_2.pth.tar"
CHECKPOINT_URLS = {
    VQVAE_FILE: "https://openaipublic.azureedge.net/jukebox/models/5b/vqvae.pth.tar",
    PRIOR_FILE: "https://openaipublic.azureedge.net/jukebox/models/5b/prior_level_2.pth.tar",
}
TOP_LEVEL = 2
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class JukeboxConfig:
    """Architecture and run settings. Defaults are Jukebox-5B cut at layer 36 (the paper's)."""

    layers: int = doc("transformer blocks of the top prior to keep (activations after the "
                      "last one are the embedding); the paper uses 36 of 72", default=36)
    width: int = doc("prior width = embedding dimension", default=4800)
    heads: int = doc("attention heads", default=8)
    blocks: int = doc("factorised-attention blocks per context", default=128)
    n_ctx: int = doc("codes per context (8192 x 128 samples = 1,048,576 = 23.78 s)",
                     default=8192)
    checkpoint_depth: int = doc("transformer blocks in the prior checkpoint (5B: 72)", default=72)
    vqvae_width: int = doc("VQ-VAE residual width", default=32)
    vqvae_depth: int = doc("VQ-VAE residual depth", default=4)
    emb_width: int = doc("VQ-VAE code width", default=64)
    l_bins: int = doc("VQ-VAE codebook size", default=2048)
    dtype: str = doc("transformer compute dtype on CUDA: float16, bfloat16 or float32 "
                     "(CPU always uses float32)", default="float16")
    batch_pieces: int = doc("context-sized pieces per forward pass", default=8)
    total_length_s: float = doc("song length given to the label conditioner (jukemirlib: 62)",
                                default=62.0)
    name: str = doc("encoder name stored with the embeddings", default="jukebox-5b-layer36")

    def __post_init__(self) -> None:
        if self.layers < 1 or self.layers > self.checkpoint_depth:
            raise ConfigError(f"layers must be in 1..{self.checkpoint_depth}, got {self.layers}")
        if self.n_ctx % self.blocks:
            raise ConfigError(f"n_ctx {self.n_ctx} is not a multiple of blocks {self.blocks}")
        if self.width % self.heads or (self.width // 4) % self.heads:
            raise ConfigError(f"width {self.width} does not split into {self.heads} heads")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.batch_pieces < 1:
            raise ConfigError(f"batch_pieces must be >= 1, got {self.batch_pieces}")

    @property
    def context_samples(self) -> int:
        return self.n_ctx * HOP_SAMPLES

    @property
    def block_ctx(self) -> int:
        return self.n_ctx // self.blocks

    @classmethod
    def tiny(cls, **overrides: Any) -> "JukeboxConfig":
        """Same architecture, toy sizes: 256-code context (32,768 samples = 0.74 s), width 32,
        2 of 4 blocks kept. For tests on CPU; its embeddings mean nothing."""
        base = cls(layers=2, width=32, heads=2, blocks=16, n_ctx=256, checkpoint_depth=4,
                   vqvae_width=8, vqvae_depth=1, emb_width=16, l_bins=64, dtype="float32",
                   batch_pieces=4, name="jukebox-tiny-random")
        return replace(base, **overrides)


def _quiet():
    """The package prints progress to stdout while building; keep our output readable."""
    return contextlib.redirect_stdout(io.StringIO())


def resolve_checkpoint_dir(checkpoint_dir: str | os.PathLike | None) -> Path:
    """``checkpoint_dir`` or ``$LLARK_JUKEBOX_DIR``, checked to hold both weight files."""
    given = checkpoint_dir or os.environ.get(CHECKPOINT_ENV, "")
    missing = [f for f in (VQVAE_FILE, PRIOR_FILE) if not given or not (Path(given) / f).is_file()]
    if missing:
        where = (f"in {given}" if given else
                 f"(no --checkpoint-dir given and ${CHECKPOINT_ENV} is not set)")
        urls = "\n".join(f"  {f}: {CHECKPOINT_URLS[f]}" for f in (VQVAE_FILE, PRIOR_FILE))
        raise EncoderError(
            f"Jukebox weights not found {where}: missing {', '.join(missing)}. The jukebox "
            f"encoder needs OpenAI's Jukebox-5B release files {VQVAE_FILE} (the VQ-VAE) and "
            f"{PRIOR_FILE} (the 5B top-level prior, ~10 GB) in one local folder. Download them "
            f"once on a machine with internet access:\n{urls}\nthen pass the folder with "
            f"--checkpoint-dir DIR or ${CHECKPOINT_ENV}=DIR. llark never downloads weights "
            "itself; use --encoder features for the CPU encoder without weights.")
    return Path(given)


def _hparams(cfg: JukeboxConfig) -> tuple[Any, Any]:
    from jukebox_infer.hparams import setup_hparams

    vq = setup_hparams("vqvae", dict(sample_length=cfg.context_samples, restore_vqvae="",
                                     width=cfg.vqvae_width, depth=cfg.vqvae_depth,
                                     emb_width=cfg.emb_width, l_bins=cfg.l_bins))
    pr = setup_hparams("prior_5b", dict(restore_prior="", prior_depth=cfg.layers,
                                        prior_width=cfg.width, heads=cfg.heads,
                                        blocks=cfg.blocks, n_ctx=cfg.n_ctx, fp16_params=False))
    if pr.res_scale:
        # res_scale = 1/depth would change every block's scale when we build fewer blocks.
        raise EncoderError("this prior uses res_scale; truncating it by building fewer blocks "
                           "would change the activations")
    return vq, pr


def build_modules(cfg: JukeboxConfig, device: str) -> tuple[Any, Any]:
    """The package's VQ-VAE and top prior (``cfg.layers`` blocks), randomly initialised, built
    directly on ``device`` (so a full-size model never passes through host memory)."""
    import torch
    from jukebox_infer.make_models import make_prior, make_vqvae

    vq_hps, prior_hps = _hparams(cfg)
    with _quiet(), torch.device(device):
        vqvae = make_vqvae(vq_hps, device)
        prior = make_prior(prior_hps, vqvae, device)
    return vqvae, prior


TRUST_ENV = "LLARK_JUKEBOX_TRUST_PICKLE"


def _load_state(path: Path) -> dict[str, Any]:
    """The ``model`` state dict of a checkpoint, read with ``weights_only=True`` (tensors and
    plain containers only). A file that also pickles other objects (e.g. hyperparameters) is
    refused unless ``$LLARK_JUKEBOX_TRUST_PICKLE=1`` says it comes from a trusted source."""
    import torch

    source = CHECKPOINT_URLS.get(path.name, "the Jukebox release")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            # Files saved in torch's legacy (pre-zip) format cannot be memory-mapped.
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise EncoderError(f"{path}: cannot read it as a torch checkpoint (corrupt or not a "
                               f"checkpoint); re-download it from {source}") from exc
        if os.environ.get(TRUST_ENV) != "1":
            detail = next((line.strip() for line in str(exc).splitlines()
                           if "Unsupported global" in line), "")
            raise EncoderError(
                f"{path}: holds pickled objects besides tensors, which torch's safe loader "
                f"refuses ({detail}). If the file is OpenAI's own ({source}), set "
                f"{TRUST_ENV}=1 to load it with full unpickling (this runs code from the "
                "file: only for files from a source you trust)") from exc
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, OSError,
                RuntimeError) as exc2:
            raise EncoderError(f"{path}: cannot unpickle it ({exc2})") from exc2
    except (EOFError, OSError, RuntimeError) as exc:
        raise EncoderError(f"{path}: cannot read it as a torch checkpoint ({exc}); re-download "
                           f"it from {source}") from exc
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise EncoderError(f"{path}: holds no state dict ('model' key)")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _keep_layers(state: dict[str, Any], layers: int) -> dict[str, Any]:
    """Drop transformer blocks ``>= layers`` from a prior state dict."""
    prefix = "prior.transformer._attn_mods."
    out = {}
    for k, v in state.items():
        if k.startswith(prefix) and int(k[len(prefix):].split(".", 1)[0]) >= layers:
            continue
        out[k] = v
    return out


def _load_into(module: Any, state: dict[str, Any], path: Path) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{what}: {keys[:3]}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for what, keys in (("missing", missing), ("unexpected", unexpected),
                               ("wrong shape", wrong)) if keys)
        raise EncoderError(f"{path} does not fit this model ({details}); is it the Jukebox-5B "
                           f"file {path.name} from {CHECKPOINT_URLS.get(path.name, '')}?")
    module.load_state_dict(state, strict=True)


def load_modules(cfg: JukeboxConfig, checkpoint_dir: str | os.PathLike | None,
                 device: str) -> tuple[Any, Any]:
    """VQ-VAE and top prior (first ``cfg.layers`` blocks) with weights from the folder.

    The modules are built on PyTorch's ``meta`` device (no memory, no random init), the
    transformer's matrices are given their compute dtype, and only then is memory allocated on
    ``device`` and filled from the checkpoint: the GPU never holds a float32 copy of the 2.5 B
    parameters (10 GB), only the half-precision one (5 GB).
    """
    import torch

    folder = resolve_checkpoint_dir(checkpoint_dir)
    dtype = getattr(torch, cfg.dtype) if torch.device(device).type == "cuda" else torch.float32
    vqvae, prior = build_modules(cfg, "meta")
    cast_matrices(prior, dtype)
    vqvae, prior = vqvae.to_empty(device=device), prior.to_empty(device=device)
    _load_into(vqvae, _load_state(folder / VQVAE_FILE), folder / VQVAE_FILE)
    prior_state = _keep_layers(_load_state(folder / PRIOR_FILE), cfg.layers)
    _load_into(prior, prior_state, folder / PRIOR_FILE)
    return vqvae, prior


def cast_matrices(prior: Any, dtype: Any) -> None:
    """Cast the transformer's matrix weights (the package's ``Conv1D``) to ``dtype``; layer
    norms stay float32, as in the package's own half-precision mode."""
    from jukebox_infer.transformer.ops import Conv1D

    for module in prior.prior.transformer.modules():
        if isinstance(module, Conv1D):
            module.w.data = module.w.data.to(dtype)
            module.b.data = module.b.data.to(dtype)


def _init_codebook(vqvae: Any, cfg: JukeboxConfig, device: str) -> None:
    """Give a random top-level codebook entries drawn from the encoder's own outputs (what
    Jukebox's training does first) plus noise, so random audio maps to many different codes
    and no two entries are near-ties; an untrained codebook is all zeros and every code would
    be the same."""
    import torch

    t = torch.arange(cfg.context_samples, device=device, dtype=torch.float32) / SAMPLE_RATE_HZ
    tone = sum(torch.sin(2 * math.pi * f * t) for f in (110.0, 440.0, 1760.0))
    audio = 0.3 * tone + 0.3 * torch.randn(cfg.context_samples, device=device)
    audio = audio * (1.5 + torch.sin(2 * math.pi * 0.5 * t))           # slow swell, no silence
    with torch.no_grad():
        x_in = vqvae.preprocess(audio[None, :, None])
        h = vqvae.encoders[TOP_LEVEL](x_in)[-1][0].T                   # (n_ctx, emb_width)
        block = vqvae.bottleneck.level_blocks[TOP_LEVEL]
        pick = torch.randperm(h.shape[0], device=device)[:block.k_bins] % h.shape[0]
        if pick.numel() < block.k_bins:
            pick = pick.repeat(math.ceil(block.k_bins / pick.numel()))[:block.k_bins]
        block.k.copy_(h[pick] + 0.3 * h.std(dim=0) * torch.randn_like(h[pick]))


def pooling_plan(n_samples: int, sample_rate_hz: int = SAMPLE_RATE_HZ,
                 hop: int = HOP_SAMPLES, frame_rate_hz: float = FRAME_RATE_HZ
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How codes map onto 10 Hz frames: a time-weighted mean over the samples each covers.

    Code ``k`` covers samples ``[hop k, hop (k+1))`` clipped to the window, frame ``j`` covers
    ``[j sr/rate, (j+1) sr/rate)``. A code straddles at most two frames (128 < 4,410), so the
    plan is two (frame, weight) pairs per code plus each frame's length in samples:
    ``frame[j] = sum_k w_k code[k] / length[j]``. Returns
    ``(first_frame, first_weight, second_frame, second_weight, frame_length)``.
    """
    frames = n_frames(n_samples, sample_rate_hz, frame_rate_hz)
    n_codes = math.ceil(n_samples / hop)
    frame_len = sample_rate_hz / frame_rate_hz                                # 4410.0
    start = np.arange(n_codes, dtype=np.float64) * hop                         # (n_codes,)
    stop = np.minimum(start + hop, n_samples)
    first = np.minimum(np.floor(start / frame_len).astype(np.int64), frames - 1)
    boundary = (first + 1) * frame_len
    w_first = np.minimum(stop, boundary) - start
    w_second = np.maximum(stop - boundary, 0.0)
    second = np.minimum(first + 1, frames - 1)
    w_first = np.where(second == first, w_first + w_second, w_first)          # last frame
    w_second = np.where(second == first, 0.0, w_second)
    lengths = np.minimum((np.arange(frames) + 1) * frame_len, n_samples) - np.arange(frames) * frame_len
    return first, w_first, second, w_second, lengths


@dataclass
class _Piece:
    window: int            # index of the window in the call
    number: int            # piece number within the window
    audio: np.ndarray      # (<= context,) float32, peak-normalised
    codes: int             # real codes: ceil(len / 128)
    acts: Any = field(default=None)   # (codes, width) on the device, compute dtype


class JukeboxEncoder(Encoder):
    """Layer-``cfg.layers`` Jukebox activations pooled to 10 Hz, ``(frames, cfg.width)``."""

    def __init__(self, cfg: JukeboxConfig, vqvae: Any, prior: Any, device: str) -> None:
        import torch

        self.cfg = cfg
        self.device = torch.device(device)
        self.compute_dtype = (getattr(torch, cfg.dtype) if self.device.type == "cuda"
                              else torch.float32)
        self.vqvae = vqvae.eval()
        self.prior = prior.eval()
        for p in list(self.vqvae.parameters()) + list(self.prior.parameters()):
            p.requires_grad_(False)
        cast_matrices(self.prior, self.compute_dtype)
        self._info = EncoderInfo(cfg.name, SAMPLE_RATE_HZ, FRAME_RATE_HZ, cfg.width)
        self._y_cond, self._x_cond = self._conditioning()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | os.PathLike | None,
                        cfg: JukeboxConfig | None = None, device: str = "cuda"
                        ) -> "JukeboxEncoder":
        """The real encoder: weights from ``checkpoint_dir`` (or ``$LLARK_JUKEBOX_DIR``)."""
        cfg = cfg or JukeboxConfig()
        vqvae, prior = load_modules(cfg, checkpoint_dir, device)
        return cls(cfg, vqvae, prior, device)

    @classmethod
    def random(cls, cfg: JukeboxConfig | None = None, device: str = "cpu", seed: int = 0
               ) -> "JukeboxEncoder":
        """Random weights (tests: tiny config; GPU benchmark: full size, same FLOPs)."""
        import torch

        cfg = cfg or JukeboxConfig.tiny()
        torch.manual_seed(seed)
        vqvae, prior = build_modules(cfg, device)
        _init_codebook(vqvae, cfg, device)
        return cls(cfg, vqvae, prior, device)

    def _conditioning(self) -> tuple[Any, Any]:
        """``y_cond`` (1, 1, W) start token and ``x_cond`` (1, n_ctx, W) positions, computed
        once as ``SimplePrior.get_cond`` would, without its CUDA-only type asserts."""
        import torch

        prior, cfg = self.prior, self.cfg
        total = int(cfg.total_length_s * SAMPLE_RATE_HZ) // HOP_SAMPLES * HOP_SAMPLES
        meta = dict(artist="unknown", genre="unknown", lyrics="", total_length=total, offset=0)
        with _quiet():
            labels = prior.labeller.get_batch_labels([meta], str(self.device))
        y = prior.get_y(labels, 0)                                   # (1, 4 + genre slots)
        ye = prior.y_emb
        with torch.no_grad():
            total_length, offset, length = y[:, 0:1], y[:, 1:2], y[:, 2:3]
            artist, genre = y[:, 3:4], y[:, 4:4 + ye.max_bow_genre_size]
            artist_emb = ye.artist_emb.emb(artist)                   # (1, 1, W)
            mask = (genre >= 0).float().unsqueeze(2)
            genre_emb = (ye.bow_genre_emb.emb(genre.clamp(0)) * mask).sum(dim=1, keepdim=True)
            start, end = offset.float(), (offset + length).float()
            total_f = total_length.float()
            pos = (ye.total_length_emb(total_f) + ye.absolute_pos_emb(start, end)
                   + ye.relative_pos_emb(start / total_f, end / total_f))  # (1, n_ctx, W)
        return genre_emb + artist_emb, pos

    # ------------------------------------------------------------------ interface

    @property
    def info(self) -> EncoderInfo:
        return self._info

    def codes(self, audio: Any) -> Any:
        """(B, context) float32 tensor -> (B, n_ctx) int64 top-level VQ-VAE codes (only the
        top-level encoder runs; ``vqvae.encode`` would run all three levels' encoders)."""
        x_in = self.vqvae.preprocess(audio[:, :, None])              # (B, 1, context)
        h = self.vqvae.encoders[TOP_LEVEL](x_in)[-1]                 # (B, emb_width, n_ctx)
        return self.vqvae.bottleneck.level_blocks[TOP_LEVEL].encode(h)  # (B, n_ctx)

    def activations(self, codes: Any) -> Any:
        """(B, L) codes, L a multiple of the block size -> (B, L, W) activations after block
        ``cfg.layers`` (compute dtype); equal to the first L positions of a full-context pass."""
        ar = self.prior.prior                                        # ConditionalAutoregressive2D
        n, length = codes.shape
        x = ar.x_emb(codes)                                          # (B, L, W) float32
        x = x.roll(1, dims=1)                                        # shift right by one
        x[:, 0] = self._y_cond.view(1, -1)                           # start token
        x_cond = self._x_cond[:, :length]                            # (1, L, W)
        x = x + ar.pos_emb()[:length] + x_cond
        x = ar.transformer(x.to(self.compute_dtype), encoder_kv=None, sample=False,
                           fp16=False, fp16_out=True)                # (B, L, W)
        if ar.add_cond_after_transformer:
            x = x + x_cond.to(x.dtype)
        return x

    def _pieces(self, windows: list[np.ndarray]) -> list[_Piece]:
        ctx = self.cfg.context_samples
        pieces = []
        for i, w in enumerate(windows):
            peak = float(np.abs(w).max())
            w = w / peak if peak > 0 else w                          # peak-normalised
            for n, start in enumerate(range(0, w.size, ctx)):
                chunk = w[start:start + ctx]
                pieces.append(_Piece(i, n, chunk, math.ceil(chunk.size / HOP_SAMPLES)))
        return pieces

    def _run(self, pieces: list[_Piece]) -> None:
        import torch

        ctx, block = self.cfg.context_samples, self.cfg.block_ctx
        order = sorted(pieces, key=lambda p: -p.codes)
        for b in range(0, len(order), self.cfg.batch_pieces):
            batch = order[b:b + self.cfg.batch_pieces]
            audio = np.zeros((len(batch), ctx), dtype=np.float32)    # zero-padded context
            for row, p in enumerate(batch):
                audio[row, :p.audio.size] = p.audio
            x = torch.from_numpy(audio).to(self.device)
            z = self.codes(x)                                        # (B, n_ctx)
            length = min(self.cfg.n_ctx, math.ceil(batch[0].codes / block) * block)
            acts = self.activations(z[:, :length])                   # (B, length, W)
            for row, p in enumerate(batch):
                p.acts = acts[row, :p.codes]

    def _pool(self, acts: Any, n_samples: int) -> np.ndarray:
        import torch

        first, w1, second, w2, lengths = pooling_plan(n_samples)
        dev = acts.device
        a = acts.float()                                             # (codes, W)
        out = torch.zeros(len(lengths), a.shape[1], dtype=torch.float32, device=dev)
        out.index_add_(0, torch.from_numpy(first).to(dev),
                       a * torch.from_numpy(w1).float().to(dev)[:, None])
        out.index_add_(0, torch.from_numpy(second).to(dev),
                       a * torch.from_numpy(w2).float().to(dev)[:, None])
        out /= torch.from_numpy(lengths).float().to(dev)[:, None]
        return out.cpu().numpy()                                     # (frames, W)

    def __call__(self, windows: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        windows = check_windows(windows, self.name)
        pieces = self._pieces(windows)
        with torch.inference_mode():
            self._run(pieces)
            out = []
            for i, w in enumerate(windows):
                mine = sorted((p for p in pieces if p.window == i), key=lambda p: p.number)
                acts = torch.cat([p.acts for p in mine], dim=0)      # (ceil(n/128), W)
                out.append(self._pool(acts, w.size))
        for p in pieces:
            p.acts = None
        return out
