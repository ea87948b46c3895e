"""Audio loading: formats, windows, mono mix, resampling, and the typed errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from llark import errors
from llark.audio import load_audio, probe_audio

SR = 22050


def tone(seconds: float, sr: int = SR, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("ext,fmt,subtype", [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"),
                                             ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", None)])
def test_formats_decode_window_and_resample(tmp_path, ext, fmt, subtype):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(3.0, channels=2), SR, format=fmt, subtype=subtype)
    info = probe_audio(path)
    assert info.sample_rate_hz == SR and info.channels == 2
    assert abs(info.duration_s - 3.0) < 0.1
    x, sr = load_audio(path, 16000, start_s=1.0, end_s=2.0)
    assert sr == 16000 and x.dtype == np.float32 and x.ndim == 1
    assert x.shape == (16000,)
    # the tone survives decoding: dominant frequency near 440 Hz
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 16000 / len(x) - 440) < 5


def test_bytes_source_and_stereo(tmp_path):
    path = tmp_path / "s.wav"
    st = np.stack([tone(1.0), np.zeros(SR, np.float32)], axis=1)
    sf.write(path, st, SR)
    x, _ = load_audio(path.read_bytes())
    assert np.allclose(x, st.mean(axis=1), atol=1e-4)
    y, _ = load_audio(path, mono=False)
    assert y.shape == (SR, 2)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_fallback_for_formats_soundfile_cannot_read(tmp_path):
    import subprocess
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(2.0), SR)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    info = probe_audio(m4a)
    assert info.decoder == "ffmpeg" and abs(info.duration_s - 2.0) < 0.1
    x, sr = load_audio(m4a, 16000, 0.5, 1.5)
    assert sr == 16000 and abs(len(x) - 16000) <= 1


def test_5_1_downmix(tmp_path):
    path = tmp_path / "six.wav"
    sf.write(path, tone(1.0, channels=6), SR)
    x, _ = load_audio(path)
    assert x.ndim == 1 and len(x) == SR


def test_missing_empty_corrupt(tmp_path):
    with pytest.raises(errors.AudioNotFoundError):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(errors.EmptyAudioError):
        load_audio(tmp_path / "empty.mp3")
    with pytest.raises(errors.EmptyAudioError):
        load_audio(b"")
    (tmp_path / "junk.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(errors.UndecodableAudioError):
        load_audio(tmp_path / "junk.mp3")


def test_truncated_and_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(2.0), SR)
    with pytest.raises(errors.TruncatedAudioError, match="only 1.000s"):
        load_audio(path, start_s=1.0, end_s=5.0)
    with pytest.raises(errors.TruncatedAudioError):
        load_audio(path, start_s=3.0, end_s=4.0)
    with pytest.raises(errors.AudioTooShortError, match="2.000s"):
        load_audio(path, min_duration_s=5.0)
    # within tolerance: padded to the requested length
    x, _ = load_audio(path, start_s=1.0, end_s=2.1)
    assert len(x) == int(round(1.1 * SR))


def test_nan_audio_is_refused(tmp_path):
    path = tmp_path / "nan.wav"
    data = tone(1.0)
    data[100:200] = np.nan
    sf.write(path, data, SR, subtype="FLOAT")
    with pytest.raises(errors.InvalidAudioError, match="100 of"):
        load_audio(path)


def test_bad_window_arguments(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0), SR)
    with pytest.raises(ValueError):
        load_audio(path, start_s=0.5, end_s=0.5)


@pytest.mark.integration
def test_real_recordings_decode(real_audio_dir):
    for path in sorted(real_audio_dir.glob("*.ogg")):
        info = probe_audio(path)
        assert info.sample_rate_hz == 22050 and info.duration_s > 20
        x, sr = load_audio(path, 44100, 5.0, 15.0)
        assert sr == 44100 and len(x) == 441000 and np.abs(x).max() > 0.01
