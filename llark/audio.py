"""Audio decoding: one function for every format, a window at a time.

``load_audio`` reads wav/flac/ogg/mp3 with soundfile (libsndfile) first and falls back to the
``ffmpeg`` command for anything it cannot read (m4a, opus, webm, odd mp3s). It mixes to mono,
resamples with soxr and returns float32 for the window ``[start_s, end_s)``. Every failure is a
typed :mod:`llark.errors` exception with the numbers that were wrong.

Sources are local paths or raw bytes (the Beam glue reads remote URIs through Beam's
filesystems and hands over the bytes), so this module needs neither Beam nor a local disk.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from llark.errors import (
    AudioNotFoundError,
    AudioTooShortError,
    EmptyAudioError,
    InvalidAudioError,
    TruncatedAudioError,
    UndecodableAudioError,
)

AudioSource = str | os.PathLike | bytes

#: A window may end up to this much past the decoded end before it counts as truncated
#: (mp3 encoders pad/trim up to a frame or two; headers round durations).
END_TOLERANCE_S = 0.15


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about a file, before decoding samples."""

    sample_rate_hz: int
    channels: int
    frames: int
    duration_s: float
    decoder: str  # "soundfile" or "ffmpeg"


def _check_source(source: AudioSource) -> None:
    if isinstance(source, bytes):
        if len(source) == 0:
            raise EmptyAudioError("audio source is 0 bytes")
        return
    path = os.fspath(source)
    if not os.path.exists(path):
        raise AudioNotFoundError(f"audio file not found: {path}")
    if os.path.getsize(path) == 0:
        raise EmptyAudioError(f"audio file is 0 bytes: {path}")


def _name(source: AudioSource) -> str:
    return "<bytes>" if isinstance(source, bytes) else os.fspath(source)


def _sf_source(source: AudioSource):
    return io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)


def probe_audio(source: AudioSource) -> AudioInfo:
    """Sample rate, channels and length without decoding the samples (ffprobe as fallback)."""
    _check_source(source)
    import soundfile as sf

    header_format = ""
    try:
        info = sf.info(_sf_source(source))
        if info.frames > 0 and info.samplerate > 0:
            return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames),
                             info.frames / info.samplerate, "soundfile")
        header_format = str(info.format)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        pass
    try:
        return _ffprobe(source)
    except UndecodableAudioError:
        if header_format:
            # a readable header (e.g. WAV) that counts 0 samples: empty, not undecodable
            raise EmptyAudioError(f"{_name(source)}: a {header_format} header with 0 "
                                  "samples") from None
        raise


def _ffmpeg_bin(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UndecodableAudioError(
            f"soundfile cannot read this file and {name} is not installed "
            "(install it with `make system-deps` or your package manager)")
    return found


def _ffprobe(source: AudioSource) -> AudioInfo:
    cmd = [_ffmpeg_bin("ffprobe"), "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels:format=duration", "-of", "default=nw=1", "-i",
           "pipe:0" if isinstance(source, bytes) else os.fspath(source)]
    proc = subprocess.run(cmd, input=source if isinstance(source, bytes) else None,
                          capture_output=True, timeout=120)
    fields = dict(line.split("=", 1) for line in proc.stdout.decode().splitlines() if "=" in line)
    try:
        sr, ch, dur = int(fields["sample_rate"]), int(fields["channels"]), float(fields["duration"])
    except (KeyError, ValueError) as exc:
        raise UndecodableAudioError(f"cannot decode {_name(source)}: "
                                    f"{_ffmpeg_reason(proc.stderr, source)}") from exc
    if dur <= 0:
        raise EmptyAudioError(f"{_name(source)} holds no audio samples")
    return AudioInfo(sr, ch, int(round(dur * sr)), dur, "ffmpeg")


def _ffmpeg_reason(stderr: bytes, source: AudioSource) -> str:
    """ffmpeg's last error line without the file name it repeats; a hint when it says little."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    reason = lines[-1] if lines else "no audio stream found"
    name = _name(source)
    if reason.startswith(name + ":"):
        reason = reason[len(name) + 1:].strip()
    if reason in ("Invalid argument", "Invalid data found when processing input"):
        reason = f"{reason} (not an audio file, or a corrupt or truncated one)"
    return reason


def _read_soundfile(source: AudioSource, start_s: float, end_s: float | None
                    ) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(_sf_source(source)) as f:
        sr = int(f.samplerate)
        start = int(round(start_s * sr))
        stop = f.frames if end_s is None else int(round(end_s * sr))
        if start > 0:
            f.seek(min(start, f.frames))
        data = f.read(frames=max(0, stop - start), dtype="float32", always_2d=True)
    return data, sr


def _read_ffmpeg(source: AudioSource, start_s: float, end_s: float | None
                 ) -> tuple[np.ndarray, int]:
    info = _ffprobe(source)
    cmd = [_ffmpeg_bin("ffmpeg"), "-nostdin", "-v", "error"]
    if start_s > 0:
        cmd += ["-ss", f"{start_s:.6f}"]
    cmd += ["-i", "pipe:0" if isinstance(source, bytes) else os.fspath(source)]
    if end_s is not None:
        cmd += ["-t", f"{end_s - start_s:.6f}"]
    cmd += ["-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, input=source if isinstance(source, bytes) else None,
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise UndecodableAudioError(f"ffmpeg cannot decode {_name(source)}: "
                                    f"{_ffmpeg_reason(proc.stderr, source)}")
    data = np.frombuffer(proc.stdout, dtype="<f4")
    usable = len(data) - len(data) % info.channels
    return data[:usable].reshape(-1, info.channels).copy(), info.sample_rate_hz


def to_mono(data: np.ndarray) -> np.ndarray:
    """``(frames, channels)`` → ``(frames,)`` by averaging the channels."""
    return data.mean(axis=1, dtype=np.float32) if data.ndim == 2 else data.astype(np.float32)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op when the rates agree."""
    if sr_in == sr_out:
        return audio
    import soxr

    return soxr.resample(audio, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load_audio(source: AudioSource, sample_rate_hz: int | None = None, start_s: float = 0.0,
               end_s: float | None = None, mono: bool = True,
               min_duration_s: float = 0.0) -> tuple[np.ndarray, int]:
    """Decode ``[start_s, end_s)`` of ``source``; return ``(samples, sample_rate_hz)``.

    ``samples`` is float32, ``(n,)`` when ``mono`` else ``(n, channels)``. ``sample_rate_hz=None``
    keeps the file's rate. Raises ``AudioNotFoundError``, ``EmptyAudioError``,
    ``UndecodableAudioError``, ``TruncatedAudioError`` (the file ends before ``end_s``),
    ``AudioTooShortError`` (fewer than ``min_duration_s`` seconds) or ``InvalidAudioError``
    (NaN/inf samples).
    """
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise ValueError(f"bad window: start_s={start_s} end_s={end_s}")
    _check_source(source)
    import soundfile as sf

    try:
        data, sr = _read_soundfile(source, start_s, end_s)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        data, sr = _read_ffmpeg(source, start_s, end_s)
    got_s = data.shape[0] / sr
    if data.shape[0] == 0:
        if start_s > 0:
            raise TruncatedAudioError(
                f"{_name(source)}: window starts at {start_s:.3f}s but the audio ends before it")
        raise EmptyAudioError(f"{_name(source)} decodes to 0 samples")
    if end_s is not None:
        want = int(round((end_s - start_s) * sr))
        missing_s = (want - data.shape[0]) / sr
        if missing_s > END_TOLERANCE_S:
            raise TruncatedAudioError(
                f"{_name(source)}: window {start_s:.3f}-{end_s:.3f}s needs {end_s - start_s:.3f}s "
                f"but only {got_s:.3f}s could be decoded")
        if missing_s > 0:
            data = np.pad(data, ((0, want - data.shape[0]), (0, 0)))
    if got_s < min_duration_s:
        raise AudioTooShortError(
            f"{_name(source)}: {got_s:.3f}s of audio, shorter than the minimum {min_duration_s:.3f}s")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InvalidAudioError(f"{_name(source)}: {bad} of {data.size} samples are NaN or infinite")
    out = to_mono(data) if mono else data
    if sample_rate_hz is not None and sample_rate_hz != sr:
        if mono:
            out = resample(out, sr, sample_rate_hz)
        else:
            out = np.stack([resample(np.ascontiguousarray(out[:, c]), sr, sample_rate_hz)
                            for c in range(out.shape[1])], axis=1)
        sr = sample_rate_hz
    return np.ascontiguousarray(out, dtype=np.float32), sr
