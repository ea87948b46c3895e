"""Encoders: the shared 10 Hz frame grid, features-v1, and the tiny random Jukebox against the
jukebox-infer package's own forward pass; long windows; weights loading and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embed.base import DEFAULT_CLIP_FRAMES, EncoderInfo, expected_frames, n_frames
from embed.features import DIM, LAYOUT, FeaturesEncoder, features_v1
from embed.jukebox import (
    PRIOR_FILE,
    SAMPLE_RATE_HZ,
    VQVAE_FILE,
    JukeboxConfig,
    JukeboxEncoder,
    pooling_plan,
    resolve_checkpoint_dir,
)
from embed.registry import build_encoder, encoder_info, resolve_device
from llark.errors import ConfigError, EncoderError
from tests.shards_testdata import tone

JSR = SAMPLE_RATE_HZ


# --------------------------------------------------------------------------- frame grid

@pytest.mark.parametrize("n, sr, want", [(1, 22050, 1), (2205, 22050, 1), (2206, 22050, 2),
                                         (22050, 22050, 10), (524283, 22050, 238),
                                         (1048566, 44100, 238), (4410 * 7, 44100, 7)])
def test_frame_grid(n, sr, want):
    assert n_frames(n, sr) == want


def test_frame_grid_agrees_with_window_durations():
    for ms in (1000, 2500, 5001, 23777, 30000):
        seconds = ms / 1000
        for sr in (22050, 44100):
            assert n_frames(round(seconds * sr), sr) == expected_frames(seconds)
    with pytest.raises(EncoderError):
        n_frames(0, 22050)


def test_a_default_clip_has_238_frames_at_every_encoder_rate():
    """The figure the benchmarks default to (DEFAULT_CLIP_FRAMES) is what encoders produce for
    a default clip (llark.windows.DEFAULT_CLIP_SECONDS) at their own input rates."""
    from llark.windows import DEFAULT_CLIP_SECONDS

    assert DEFAULT_CLIP_FRAMES == 238
    for sr in (22050, 44100):
        assert n_frames(round(DEFAULT_CLIP_SECONDS * sr), sr) == DEFAULT_CLIP_FRAMES


# --------------------------------------------------------------------------- features

def test_features_shapes_frame_rate_and_layout():
    enc = FeaturesEncoder()
    assert enc.info == EncoderInfo("features-v1", 22050, 10.0, 128)
    assert LAYOUT[0][1] == 0 and LAYOUT[-1][2] == DIM
    assert all(a[2] == b[1] for a, b in zip(LAYOUT, LAYOUT[1:]))          # contiguous
    windows = [tone(s, 440.0) for s in (0.05, 1.0, 2.37, 3.0)]
    out = enc(windows)
    assert [o.shape for o in out] == [(1, 128), (10, 128), (24, 128), (30, 128)]
    assert all(o.dtype == np.float32 and np.isfinite(o).all() for o in out)


def test_features_follow_the_music_in_time():
    # 1 s of silence then 1 s of an A: RMS and chroma change at frame 10, not before.
    sr = 22050
    a = np.concatenate([np.zeros(sr, np.float32),
                        0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)])
    f = features_v1(a)
    rms = f[:, 116] * 50
    assert rms[:9].max() < -90 and rms[11:].min() > -10
    chroma = f[:, 96:108]
    assert int(np.argmax(chroma[15])) == 9                                   # A = index 9
    onset = f[:, 115]
    assert int(np.argmax(onset)) in (9, 10)


def test_features_rejects_bad_windows():
    enc = FeaturesEncoder()
    with pytest.raises(EncoderError, match="mono"):
        enc([np.zeros((100, 2), np.float32)])
    with pytest.raises(EncoderError, match="NaN"):
        enc([np.array([0.0, np.nan], np.float32)])
    with pytest.raises(EncoderError, match="no samples"):
        enc([np.zeros(0, np.float32)])


# --------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("n", [1, 127, 128, 4410, 4411, 44100, 100_000, 1_048_566])
def test_pooling_plan_covers_every_sample_once(n):
    first, w1, second, w2, lengths = pooling_plan(n)
    frames = n_frames(n, JSR)
    assert len(lengths) == frames and math.isclose(lengths.sum(), n)
    per_frame = np.bincount(first, w1, frames) + np.bincount(second, w2, frames)
    np.testing.assert_allclose(per_frame, lengths)                         # weights = lengths
    assert len(first) == math.ceil(n / 128)
    assert math.isclose(w1.sum() + w2.sum(), n)                            # every sample once


# --------------------------------------------------------------------------- tiny Jukebox

@pytest.fixture(scope="module")
def tiny() -> JukeboxEncoder:
    return JukeboxEncoder.random(JukeboxConfig.tiny(), "cpu", seed=0)


def _direct(enc: JukeboxEncoder, piece: np.ndarray, monkeypatch) -> torch.Tensor:
    """The package's own path for one piece: SimplePrior.encode (all VQ-VAE levels), the
    label conditioner (SimplePrior.get_cond) and ConditionalAutoregressive2D.forward with
    only_encode=True, on a zero-padded full context. Its CUDA-only type asserts are satisfied
    by letting torch.cuda.LongTensor stand for any tensor, in this test only."""
    monkeypatch.setattr(torch.cuda, "LongTensor", torch.Tensor)
    prior, cfg = enc.prior, enc.cfg
    audio = np.zeros((1, cfg.context_samples), np.float32)
    audio[0, :piece.size] = piece
    with torch.no_grad():
        z = prior.encode(torch.from_numpy(audio)[:, :, None])[0]           # (1, n_ctx)
        total = int(cfg.total_length_s * JSR) // 128 * 128
        labels = prior.labeller.get_batch_labels(
            [dict(artist="unknown", genre="unknown", lyrics="", total_length=total, offset=0)],
            "cpu")
        x_cond, y_cond, _ = prior.get_cond(None, prior.get_y(labels, 0))
        prior.prior.only_encode = True
        try:
            acts = prior.prior.forward(z, x_cond=x_cond, y_cond=y_cond, fp16=False)
        finally:
            prior.prior.only_encode = False
    return acts[0]                                                         # (n_ctx, W)


def _reference_pool(acts: np.ndarray, n: int) -> np.ndarray:
    """Frame j = mean over its samples of the code covering each sample (written plainly)."""
    frames = n_frames(n, JSR)
    out = np.zeros((frames, acts.shape[1]))
    for j in range(frames):
        lo, hi = j * 4410, min((j + 1) * 4410, n)
        k0, k1 = lo // 128, (hi - 1) // 128
        for k in range(k0, k1 + 1):
            overlap = min(hi, (k + 1) * 128) - max(lo, k * 128)
            out[j] += overlap * acts[k]
        out[j] /= hi - lo
    return out


def test_tiny_jukebox_shapes_and_info(tiny):
    assert tiny.info == EncoderInfo("jukebox-tiny-random", 44100, 10.0, 32)
    windows = [tone(s, 330.0, JSR, seed=k) for k, s in enumerate((0.01, 0.5, 1.0, 2.3))]
    out = tiny(windows)
    assert [o.shape for o in out] == [(1, 32), (5, 32), (10, 32), (23, 32)]
    assert all(np.isfinite(o).all() and o.dtype == np.float32 for o in out)
    assert not np.allclose(out[2][0], out[2][-1])                          # varies in time


def test_tiny_jukebox_matches_the_packages_forward_pass(tiny, monkeypatch):
    piece = tone(0.5, 220.0, JSR, seed=3)                                  # < one context
    peak = np.abs(piece).max()
    ref_acts = _direct(tiny, piece / peak, monkeypatch).numpy()
    with torch.no_grad():
        audio = np.zeros((1, tiny.cfg.context_samples), np.float32)
        audio[0, :piece.size] = piece / peak
        codes = tiny.codes(torch.from_numpy(audio))
        z_pkg = tiny.prior.encode(torch.from_numpy(audio)[:, :, None])[0]
        assert torch.equal(codes, z_pkg)                                   # top level only
        assert codes[0, :170].unique().numel() > 3                         # a real code path
        short = tiny.activations(codes[:, :176])[0].numpy()                # truncated (causal)
    np.testing.assert_allclose(short, ref_acts[:176], rtol=1e-4, atol=1e-6)
    n_codes = math.ceil(piece.size / 128)
    want = _reference_pool(ref_acts[:n_codes], piece.size)
    got = tiny([piece])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_tiny_jukebox_batch_equals_one_by_one(tiny):
    windows = [tone(s, 200.0 + 50 * k, JSR, seed=k) for k, s in enumerate((0.3, 1.1, 0.7))]
    together = tiny(windows)
    for w, t in zip(windows, together):
        np.testing.assert_allclose(tiny([w])[0], t, rtol=1e-4, atol=1e-6)


def test_long_window_is_encoded_in_full_context_pieces(tiny, monkeypatch):
    ctx = tiny.cfg.context_samples                                         # 32768 (0.74 s)
    n = 2 * ctx + 5000                                                     # three pieces
    w = tone(n / JSR, 260.0, JSR, seed=9)
    peak = np.abs(w).max()
    pieces = [w[i:i + ctx] / peak for i in range(0, n, ctx)]
    acts = np.concatenate([_direct(tiny, p, monkeypatch).numpy()[:math.ceil(p.size / 128)]
                           for p in pieces])
    assert acts.shape[0] == math.ceil(n / 128)                             # every sample's code
    got = tiny([w])[0]
    assert got.shape == (n_frames(n, JSR), 32)
    np.testing.assert_allclose(got, _reference_pool(acts, n), rtol=1e-4, atol=1e-6)
    # The last 0.11 s (the third piece) is really encoded: changing it changes the last frame
    # and leaves the first frames alone.
    w2 = w.copy()
    w2[-4000:] = tone(4000 / JSR, 1500.0, JSR, seed=1)
    got2 = tiny([w2])[0]
    assert not np.allclose(got2[-1], got[-1])
    np.testing.assert_allclose(got2[:10], got[:10], rtol=1e-5, atol=1e-7)


def test_silence_and_peak_normalisation(tiny):
    w = tone(0.4, 300.0, JSR)
    np.testing.assert_allclose(tiny([w])[0], tiny([0.1 * w])[0], rtol=1e-4, atol=1e-6)
    silent = tiny([np.zeros(JSR // 2, np.float32)])[0]
    assert silent.shape == (5, 32) and np.isfinite(silent).all()


# --------------------------------------------------------------------------- weights

def _save_tiny_checkpoints(folder, depth: int) -> JukeboxEncoder:
    """A 'release' of the tiny architecture: a full-depth random model saved as the two
    Jukebox files (state dicts under 'model', DataParallel 'module.' prefixes included)."""
    full = JukeboxEncoder.random(JukeboxConfig.tiny(layers=depth), "cpu", seed=5)
    torch.save({"model": {f"module.{k}": v for k, v in full.vqvae.state_dict().items()}},
               folder / VQVAE_FILE)
    torch.save({"model": full.prior.state_dict(), "step": 1}, folder / PRIOR_FILE)
    return full


def test_checkpoint_loads_and_keeps_only_the_first_layers(tmp_path, monkeypatch):
    full = _save_tiny_checkpoints(tmp_path, depth=4)
    enc = JukeboxEncoder.from_checkpoint(tmp_path, JukeboxConfig.tiny(layers=2), "cpu")
    assert len(enc.prior.prior.transformer._attn_mods) == 2
    for k, v in enc.prior.state_dict().items():
        torch.testing.assert_close(v, full.prior.state_dict()[k])
    # Layer-2 activations of the loaded model = the full model cut after block 2.
    full.prior.prior.transformer._attn_mods = full.prior.prior.transformer._attn_mods[:2]
    piece = tone(0.3, 440.0, JSR, seed=2)
    ref = _direct(full, piece / np.abs(piece).max(), monkeypatch).numpy()
    got = enc([piece])[0]
    want = _reference_pool(ref[:math.ceil(piece.size / 128)], piece.size)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The environment variable works like --checkpoint-dir.
    monkeypatch.setenv("LLARK_JUKEBOX_DIR", str(tmp_path))
    assert resolve_checkpoint_dir(None) == tmp_path


def test_missing_weights_name_the_files_and_never_download(tmp_path, monkeypatch):
    monkeypatch.delenv("LLARK_JUKEBOX_DIR", raising=False)
    with pytest.raises(EncoderError) as err:
        build_encoder("jukebox", tmp_path, device="cpu")
    msg = str(err.value)
    assert VQVAE_FILE in msg and PRIOR_FILE in msg and "openaipublic" in msg
    assert "--checkpoint-dir" in msg and "LLARK_JUKEBOX_DIR" in msg
    with pytest.raises(EncoderError, match="LLARK_JUKEBOX_DIR is not set"):
        resolve_checkpoint_dir(None)


def test_wrong_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _save_tiny_checkpoints(tmp_path, depth=4)
    with pytest.raises(EncoderError, match="does not fit"):
        JukeboxEncoder.from_checkpoint(tmp_path, JukeboxConfig.tiny(width=64, layers=2), "cpu")
    (tmp_path / PRIOR_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderError, match="cannot read"):
        JukeboxEncoder.from_checkpoint(tmp_path, JukeboxConfig.tiny(layers=2), "cpu")


def test_checkpoint_with_pickled_objects_needs_explicit_trust(tmp_path, monkeypatch):
    full = _save_tiny_checkpoints(tmp_path, depth=2)
    torch.save({"model": full.prior.state_dict(), "hps": np.float64(62.0)}, tmp_path / PRIOR_FILE)
    monkeypatch.delenv("LLARK_JUKEBOX_TRUST_PICKLE", raising=False)
    with pytest.raises(EncoderError, match="LLARK_JUKEBOX_TRUST_PICKLE=1"):
        JukeboxEncoder.from_checkpoint(tmp_path, JukeboxConfig.tiny(), "cpu")
    monkeypatch.setenv("LLARK_JUKEBOX_TRUST_PICKLE", "1")
    enc = JukeboxEncoder.from_checkpoint(tmp_path, JukeboxConfig.tiny(), "cpu")
    w = tone(0.2, 440.0, JSR)
    np.testing.assert_allclose(enc([w])[0], full([w])[0], rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- registry

def test_registry():
    assert encoder_info("features").dim == 128
    assert encoder_info("jukebox") == EncoderInfo("jukebox-5b-layer36", 44100, 10.0, 4800)
    assert encoder_info("jukebox-tiny-random").dim == 32
    with pytest.raises(ConfigError, match="unknown encoder"):
        encoder_info("wav2vec")
    assert isinstance(build_encoder("features"), FeaturesEncoder)
    with pytest.raises(ConfigError):
        JukeboxConfig.tiny(dtype="float8")
    with pytest.raises(ConfigError):
        JukeboxConfig(layers=73)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_jukebox_without_gpu_says_what_to_do():
    with pytest.raises(EncoderError, match="needs a CUDA GPU"):
        resolve_device("jukebox", "auto")
    with pytest.raises(EncoderError, match="no CUDA GPU"):
        resolve_device("jukebox-tiny-random", "cuda")
    assert resolve_device("jukebox-tiny-random", "auto") == "cpu"


# --------------------------------------------------------------------------- GPU benchmark

def test_gpu_benchmark_dry_run(tmp_path):
    """benchmarks/jukebox_gpu.py cannot run here (no GPU); its --dry-run builds the tiny model
    on CPU and goes through every step the GPU run takes."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "jukebox_gpu.py"
    spec = importlib.util.spec_from_file_location("jukebox_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    assert mod.main(["--dry-run", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dry_run"] and [r["batch"] for r in res["results"]] == [1, 2]
    assert all(r["frames"] == [20] and r["dim"] == 32 and r["pieces"] == 3 * r["batch"]
               for r in res["results"])


# --------------------------------------------------------------------------- real recordings

@pytest.mark.integration
def test_encoders_on_a_real_recording(real_audio_dir, tiny):
    from llark.audio import load_audio

    path = sorted(real_audio_dir.glob("*.ogg"))[0]
    a22, _ = load_audio(path, 22050, 0.0, 23.777)
    a44, _ = load_audio(path, 44100, 0.0, 23.777)
    f = FeaturesEncoder()([a22])[0]
    assert f.shape == (238, 128) and np.isfinite(f).all()
    assert f[:, 116].std() > 0                                  # loudness varies over 24 s
    j = tiny([a44])[0]                                          # 32 pieces of the toy context
    assert j.shape == (238, 32) and np.isfinite(j).all()
