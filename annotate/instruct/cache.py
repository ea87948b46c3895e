"""On-disk cache of LLM replies keyed by sha256 of (model, params, messages).

A rerun asks the cache first and sends nothing for a request it has seen, so it costs nothing
and produces the same output. Every HTTP-200 reply is stored (also replies our validation later
rejects: that rejection is deterministic, so a rerun reaches the same result). Failures (429,
5xx, timeouts) are never stored.

Storage is a :class:`CacheStore`: :class:`LocalCacheStore` writes
``{root}/{key[:2]}/{key}.json`` atomically (temp file in the same folder + ``os.replace``), so
concurrent threads and worker processes never see half a file (entries are not fsynced: after a
power loss an entry may be unreadable, which counts as a miss and is rewritten); ``pipelines/instruct.py`` adds a
store over Beam's ``FileSystems`` for ``gs://`` cache folders. The key and the stored files hold
no credentials: the API key and the server URL are not part of a request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("llark.instruct")

CACHE_FORMAT = 1


class CacheStore(Protocol):
    def read(self, key: str) -> bytes | None: ...
    def write(self, key: str, data: bytes) -> None: ...


class LocalCacheStore:
    """Files under a local folder, one per key, written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:12]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:     # no fsync: a crash may leave an unreadable
                f.write(data)                   # entry, which reads as a miss (never as a
            os.replace(tmp, path)               # half-written reply: rename is atomic)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        return f"LocalCacheStore({str(self.root)!r})"


def request_key(model: str, params: dict[str, Any], messages: list[dict[str, str]]) -> str:
    """sha256 of the canonical JSON of (model, params, messages)."""
    blob = json.dumps({"model": model, "params": params, "messages": messages},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class RequestCache:
    """Reply cache over a :class:`CacheStore`; unreadable entries count as misses."""

    def __init__(self, store: CacheStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self.corrupt = 0

    def get(self, key: str) -> CachedReply | None:
        data = self.store.read(key)
        if data is None:
            return None
        try:
            entry = json.loads(data)
            if entry.get("format") != CACHE_FORMAT or entry.get("key") != key:
                raise ValueError("format or key mismatch")
            reply = entry["reply"]
            return CachedReply(str(reply["text"]), int(reply["prompt_tokens"]),
                               int(reply["completion_tokens"]), str(reply["finish_reason"]))
        except (ValueError, KeyError, TypeError) as exc:
            with self._lock:
                self.corrupt += 1
            log.warning("ignoring unreadable cache entry %s (%s); it will be rewritten",
                        key[:16], exc)
            return None

    def put(self, key: str, model: str, params: dict[str, Any], messages: list[dict[str, str]],
            reply: CachedReply) -> None:
        entry = {"format": CACHE_FORMAT, "key": key, "model": model, "params": params,
                 "messages": messages,
                 "reply": {"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                           "completion_tokens": reply.completion_tokens,
                           "finish_reason": reply.finish_reason}}
        self.store.write(key, json.dumps(entry, ensure_ascii=False, sort_keys=True).encode("utf-8"))
