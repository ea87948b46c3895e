"""Bucket paths for the trainer, inference and evaluation (``gs://``, ``s3://``; no Beam).

Shards are read in place (:func:`model.data.open_shard`, range reads). What these commands write
(checkpoints, metrics, predictions, scores) is written to a local working folder and copied to
the bucket with :mod:`llark.storage`; the file that marks a thing complete goes last (a
checkpoint's ``trainer_state.json``; the runner's done marker comes after the whole command), so
a reader never sees half a checkpoint:

* :func:`run_folder`: the training output. A remote one is downloaded first (so a run resumes
  from its latest checkpoint) and uploaded when training returns, also after an error or a
  SIGTERM stop, so completed checkpoints are kept.
* :func:`fetch_checkpoint`: the checkpoint inference loads, downloaded without its optimizer.
* :func:`output_file` / :func:`output_folder`: a predictions file or a scores folder, uploaded
  only when the command succeeded.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from llark import storage

# model.checkpoint (torch) is imported only where a checkpoint is handled: `llark eval` uses
# this module without torch.


def cache_dir(url: str) -> Path:
    """A local folder for one remote path: ``$LLARK_CACHE_DIR`` (default
    ``~/.cache/llark``) ``/remote/<bucket-and-path-hash>``."""
    root = Path(os.environ.get("LLARK_CACHE_DIR") or Path.home() / ".cache" / "llark")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return root / "remote" / f"{storage.name(url) or 'root'}-{digest}"


def fetch_checkpoint(path: str | Path) -> Path:
    """A local checkpoint folder for ``path``: a checkpoint, or a training output (→ its latest
    complete checkpoint), local or on a bucket. A remote one is downloaded (not its optimizer
    state, which inference does not need) into :func:`cache_dir`; complete checkpoints never
    change, so a second call reads the cache."""
    from model.checkpoint import OPTIMIZER_FILE, STATE_FILE, CheckpointError, resolve_checkpoint

    if not storage.is_remote(path):
        return resolve_checkpoint(path)
    url = os.fspath(path).rstrip("/")
    state = storage.join(url, STATE_FILE)
    if storage.is_file(state):
        remote = url
    else:
        found = []
        pattern = re.compile(r"(?:^|/)(checkpoint-(\d+))/" + re.escape(STATE_FILE) + "$")
        for f in storage.list_files(url, "*" + STATE_FILE):
            m = pattern.search(f[len(url):])
            if m:
                found.append((int(m.group(2)), f[: -len(STATE_FILE) - 1]))
        if not found:
            raise CheckpointError(f"{url}: neither a checkpoint (no {STATE_FILE}) nor a training "
                                  "output with complete checkpoints")
        remote = max(found)[1]
    local = cache_dir(remote)
    if (local / STATE_FILE).is_file():
        return local
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=_ensure(local.parent)))
    try:
        for f in storage.list_files(remote):
            rel = f[len(remote):].lstrip("/")
            if storage.name(rel) == OPTIMIZER_FILE:
                continue
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(storage.read_bytes(f))
        if local.exists():
            shutil.rmtree(local)
        os.replace(tmp, local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return local


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def run_folder(output: str | Path) -> Iterator[Path]:
    """The training output as a local folder. Remote: the bucket's copy is downloaded first
    (resume) and everything is uploaded when the block ends, checkpoint state files last."""
    from model.checkpoint import STATE_FILE

    if not storage.is_remote(output):
        yield Path(output)
        return
    url = os.fspath(output).rstrip("/")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        from llark.errors import ConfigError

        raise ConfigError(f"--output {url}: a bucket run folder works with one training process; "
                          "with several (accelerate launch), give a local or shared folder and "
                          "copy it to the bucket afterwards")
    with tempfile.TemporaryDirectory(prefix="llark-run-") as tmp:
        local = Path(tmp) / "run"
        local.mkdir()
        storage.download_tree(url, local)
        try:
            yield local
        finally:
            if any(local.iterdir()):
                storage.upload_tree(local, url, last=(STATE_FILE,))


@contextmanager
def output_file(path: str | Path) -> Iterator[Path]:
    """A file to write: itself locally; remote, a local file uploaded once the block succeeded
    (one object: it appears whole or not at all)."""
    if not storage.is_remote(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="llark-out-") as tmp:
        local = Path(tmp) / storage.name(path)
        yield local
        storage.write_bytes(path, local.read_bytes())


@contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """A folder to write: itself locally; remote, a local folder uploaded once the block
    succeeded."""
    if not storage.is_remote(path):
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="llark-out-") as tmp:
        yield Path(tmp)
        storage.upload_tree(tmp, os.fspath(path).rstrip("/"))


def local_input_file(path: str | Path) -> Path:
    """A file to read whole (e.g. predictions): itself locally; remote, downloaded to
    :func:`cache_dir`."""
    if not storage.is_remote(path):
        return Path(path)
    local = cache_dir(os.fspath(path)) / storage.name(path)
    _ensure(local.parent)
    local.write_bytes(storage.read_bytes(path))
    return local
