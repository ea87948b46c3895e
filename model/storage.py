"""Bucket paths for the trainer, inference and evaluation (``gs://``, ``s3://``; no Beam).

Shards are read in place (:func:`model.data.open_shard`, range reads). What these commands write
(checkpoints, metrics, predictions, scores) is written to a local working folder and copied to
the bucket with :mod:`llark.storage`; the file that marks a thing complete goes last (a
checkpoint's ``trainer_state.json``; the runner's done marker comes after the whole command), so
a reader never sees half a checkpoint:

* :func:`run_folder`: the training output. For a remote one, its own files and latest complete
  checkpoint are downloaded first (so a run resumes from it), each new checkpoint is uploaded as
  soon as it is complete (a machine that dies loses at most the steps since the last one), and
  checkpoints beyond ``keep_last`` are deleted on the bucket too.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

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
        storage.download_tree(remote, tmp, skip=(OPTIMIZER_FILE,))
        if local.exists():
            shutil.rmtree(local)
        os.replace(tmp, local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return local


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class RunFolder:
    """A training output as the trainer sees it: a local folder, and for a bucket run the hook
    that copies each checkpoint up as soon as it is complete."""

    local: Path
    on_checkpoint: Callable[[Path], None] | None = None


class _RunSync:
    """Keeps a bucket run folder in step with its local copy (one training process)."""

    def __init__(self, local: Path, url: str, keep_last: int) -> None:
        self.local, self.url, self.keep_last = local, url, keep_last
        self.uploaded: set[str] = set()

    def _small_files(self) -> None:
        """The run's own files (metrics.jsonl, config.json, ...), everything but checkpoints."""
        from model.checkpoint import CHECKPOINTS

        for path in sorted(self.local.iterdir()):
            if path.is_file():
                storage.write_bytes(storage.join(self.url, path.name), path.read_bytes())
            elif path.is_dir() and path.name != CHECKPOINTS:
                storage.upload_tree(path, storage.join(self.url, path.name))

    def checkpoint(self, final: Path) -> None:
        """Upload one complete checkpoint (its state file last), then delete on the bucket the
        complete checkpoints beyond ``keep_last`` (state file first, so a half-deleted one
        never looks complete), then refresh the run's small files."""
        from model.checkpoint import CHECKPOINTS, STATE_FILE

        remote = storage.join(self.url, CHECKPOINTS, final.name)
        storage.upload_tree(final, remote, last=(STATE_FILE,))
        self.uploaded.add(final.name)
        self._prune()
        self._small_files()

    def _prune(self) -> None:
        """Delete on the bucket the complete checkpoints beyond ``keep_last`` (state file first,
        so a half-deleted one never looks complete) and what a killed run left of older ones."""
        from model.checkpoint import CHECKPOINTS, STATE_FILE

        base = storage.join(self.url, CHECKPOINTS)
        folders: dict[str, list[str]] = {}
        for f in storage.list_files(base):
            folders.setdefault(storage.relative(f, base).split("/", 1)[0], []).append(f)
        complete = sorted((int(m.group(1)), name) for name, files in folders.items()
                          if (m := _CHECKPOINT_NAME.match(name))
                          and storage.join(base, name, STATE_FILE) in files)
        if not complete:
            return
        keep = {name for _, name in complete[-self.keep_last:]}
        oldest_kept = min(step for step, name in complete if name in keep)
        for name, files in sorted(folders.items()):
            m = _CHECKPOINT_NAME.match(name)
            if m is None or name in keep or int(m.group(1)) > oldest_kept:
                continue
            state = storage.join(base, name, STATE_FILE)
            storage.delete([state] if state in files else [])
            storage.delete([f for f in files if f != state])

    def close(self) -> None:
        """At the end (also after an error or SIGTERM): checkpoints not yet up, and the run's
        small files."""
        from model.checkpoint import list_checkpoints

        for _, path in list_checkpoints(self.local):
            if path.name not in self.uploaded:
                self.checkpoint(path)
        self._small_files()


_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def remote_checkpoints(url: str) -> list[str]:
    """Complete checkpoints (with their state file) of a bucket run folder, oldest first."""
    from model.checkpoint import CHECKPOINTS, STATE_FILE

    base = storage.join(url, CHECKPOINTS)
    pattern = re.compile(r"^(checkpoint-(\d+))/" + re.escape(STATE_FILE) + "$")
    found = []
    for f in storage.list_files(base, "*" + STATE_FILE):
        m = pattern.match(storage.relative(f, base))
        if m:
            found.append((int(m.group(2)), storage.join(base, m.group(1))))
    return [u for _, u in sorted(found)]


@contextmanager
def run_folder(output: str | Path, keep_last: int) -> Iterator[RunFolder]:
    """The training output as a local folder. Remote: the run's own files and its latest
    complete checkpoint are downloaded first (resume; older checkpoints stay on the bucket and
    are not fetched), each new checkpoint is uploaded as soon as it is complete, checkpoints
    beyond ``keep_last`` are deleted on the bucket, and the rest goes up when the block ends."""
    from model.checkpoint import CHECKPOINTS

    if not storage.is_remote(output):
        yield RunFolder(Path(output))
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
        for f in storage.list_files(url):
            rel = storage.relative(f, url)
            if rel.split("/", 1)[0] != CHECKPOINTS:
                storage.download_file(f, local / rel)
        latest = remote_checkpoints(url)[-1:]
        sync = _RunSync(local, url, keep_last)
        for ckpt in latest:
            name = storage.name(ckpt)
            storage.download_tree(ckpt, local / CHECKPOINTS / name)
            sync.uploaded.add(name)
        try:
            yield RunFolder(local, sync.checkpoint)
        finally:
            sync.close()


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
