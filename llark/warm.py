"""Warm numba's on-disk cache once, in one process, before processes share it.

librosa compiles its numba functions with ``cache=True``: eagerly-typed ``@guvectorize`` /
``@vectorize`` kernels when their module is imported, the ``@jit`` ones (beat tracking, ...) on
first call. A GUFunc is cached as two files written without atomicity, and two processes that
compile at once on a cold cache can leave a pair from different compilations: the next process
that loads it crashes with a segmentation fault (numba issue #10128, fix not released). A fresh
CI machine (`make test` starts Beam workers and stage processes side by side) and a Dataflow
worker (several SDK processes per VM) both start cold.

So every fresh environment warms the cache here, once: ``make venv`` and each image in docker/
run ``python -m llark.warm``, which compiles every librosa numba function the project uses
(embed's features, the beat tracker) for float32 and float64 input. :func:`ensure_warm` does the
same under an exclusive file lock with a stamp in the cache, so processes that find a cold cache
(a new ``NUMBA_CACHE_DIR``) compile one at a time and the others only load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

#: librosa modules whose numba kernels compile (and are cached) at import.
EAGER_MODULES = ("librosa.util.utils", "librosa.util.matching", "librosa.core.audio",
                 "librosa.core.spectrum", "librosa.core.pitch", "librosa.core.notation",
                 "librosa.core.constantq", "librosa.filters", "librosa.feature.utils",
                 "librosa.sequence", "librosa.beat", "librosa.onset")


def cache_dir() -> Path:
    """Where numba caches librosa's functions: ``$NUMBA_CACHE_DIR`` if set, else librosa's own
    ``__pycache__`` (numba's in-tree cache; a read-only install falls back to a user folder)."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given:
        return Path(given)
    import importlib.util

    spec = importlib.util.find_spec("librosa")
    if spec is None or spec.origin is None:
        raise RuntimeError("librosa is not installed")
    pkg = Path(spec.origin).parent
    return pkg / "__pycache__" if os.access(pkg, os.W_OK) else _user_dir()


def _user_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"llark-numba-{os.getuid()}"


def _tag() -> str:
    from importlib.metadata import version

    return (f"librosa-{version('librosa')}-numba-{version('numba')}"
            f"-py{sys.version_info.major}{sys.version_info.minor}")


def stamp_path() -> Path:
    return cache_dir() / f".llark-warm-{_tag()}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created), released on exit or process death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_path() -> Path:
    """One lock per cache location, outside it (the cache folder may not exist yet)."""
    key = hashlib.sha1(str(cache_dir().resolve()).encode()).hexdigest()[:16]
    return _user_dir() / f"warm-{key}.lock"


def warm() -> float:
    """Compile (or load from the cache) every librosa numba function the project uses, for
    float32 and float64 audio; returns the seconds it took."""
    import importlib
    import warnings

    import numpy as np

    t0 = time.monotonic()
    for name in EAGER_MODULES:
        importlib.import_module(name)
    import librosa

    sr = 22050
    t = np.arange(6 * sr) / sr
    clicks = (np.sin(2 * np.pi * 880 * t) * (np.mod(t, 0.5) < 0.03)).astype(np.float64)
    for y in (clicks, clicks.astype(np.float32)):
        # the beat tracker (tests, llark analyze's reference) and its onset envelope
        librosa.beat.beat_track(y=y, sr=sr)
        librosa.beat.beat_track(onset_envelope=librosa.onset.onset_strength(y=y, sr=sr), sr=sr)
        # embed/features.py: features_v1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = librosa.stft(y, n_fft=2048, hop_length=512, window="hann", center=True)
        mag = np.abs(spec)
        power = mag ** 2
        mel = librosa.filters.mel(sr=sr, n_fft=2048, n_mels=96).astype(y.dtype) @ power
        mel_db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
        chroma = librosa.feature.chroma_stft(S=power, sr=sr, tuning=0.0)
        librosa.feature.tonnetz(chroma=chroma, sr=sr)
        librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=512)
        librosa.feature.spectral_centroid(S=mag, sr=sr)
        librosa.feature.spectral_rolloff(S=mag, sr=sr, roll_percent=0.85)
        librosa.feature.spectral_flatness(S=mag)
        librosa.feature.spectral_contrast(S=mag, sr=sr)
        librosa.util.localmax(mel_db, axis=-1)
        librosa.util.peak_pick(mel_db[0], pre_max=3, post_max=3, pre_avg=3, post_avg=5,
                               delta=0.5, wait=10)
    return time.monotonic() - t0


def ensure_warm() -> bool:
    """Warm the cache unless its stamp says it is; one process at a time per cache location.
    Returns True if this call did the warming."""
    stamp = stamp_path()
    if stamp.exists():
        return False
    with _locked(_lock_path()):
        if stamp.exists():              # another process warmed it while we waited
            return False
        warm()
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(_tag() + "\n")
    return True


def main() -> int:
    t0 = time.monotonic()
    did = ensure_warm()
    what = "warmed" if did else "already warm"
    print(f"llark.warm: numba cache {what} ({cache_dir()}, {time.monotonic() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
