"""LLM chat backends behind one small interface, with retries, a reply cache and usage
accounting.

:class:`ChatBackend` is the interface: ``complete(messages, tally) -> ChatReply``.
:class:`OpenAIChatBackend` implements it with the ``openai`` 3.x client against any
OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, Ollama) given by ``base_url``:

* the API key comes only from the environment variable named by ``api_key_env`` (default
  ``OPENAI_API_KEY``); it is never logged, stored, cached or put into an error message (server
  messages that echo it are redacted);
* the client's own retries are off; ours retry 429, 408/409, 5xx, timeouts and connection
  errors with exponential backoff and jitter, honouring ``Retry-After`` / ``retry-after-ms``;
* ``json_mode="auto"`` asks for ``response_format={"type": "json_object"}`` and falls back to
  plain text once if the server rejects it (400 naming ``response_format``);
* with a :class:`~annotate.instruct.cache.RequestCache`, a request seen before is answered from
  disk and sends nothing;
* every call adds to a ``tally`` (a ``Counter``): ``llm_calls``, ``llm_requests``,
  ``llm_cache_hits``, ``llm_retries``, ``llm_retry:<why>``, ``tokens_in``, ``tokens_out``,
  ``cost_usd``.

The client is thread-safe; callers run many ``complete`` calls in flight from a thread pool.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from annotate.instruct.cache import CachedReply, RequestCache, request_key
from annotate.instruct.prompts import ChatMessage
from llark.errors import ConfigError, LLMError

log = logging.getLogger("llark.instruct")

JSON_MODES = ("auto", "on", "off")
NO_KEY_PLACEHOLDER = "no-key-set"      # sent to servers that need no key (vLLM, Ollama...)
REDACTED = "<redacted>"


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the model and how hard to try (no secrets: only the key's variable name)."""

    model: str
    base_url: str = ""                 # "" = the openai client's default (api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_tokens: int = 1024
    json_mode: str = "auto"
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 120.0
    price_in_per_mtok: float = 0.0     # USD per million prompt tokens (0 = unknown)
    price_out_per_mtok: float = 0.0    # USD per million completion tokens

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("an LLM backend needs a model name (--model)")
        if self.json_mode not in JSON_MODES:
            raise ConfigError(f"json_mode must be one of {JSON_MODES}, got {self.json_mode!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise ConfigError(f"api_key_env must name an environment variable, got "
                              f"{self.api_key_env!r} (put the key itself in that variable)")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.backoff_initial_s < 0 \
                or self.backoff_max_s < self.backoff_initial_s or self.max_tokens < 1:
            raise ConfigError("timeout_s > 0, max_retries >= 0, 0 <= backoff_initial_s <= "
                              "backoff_max_s and max_tokens >= 1 are required")
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature}")


@dataclass(frozen=True)
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cached: bool


class ChatBackend(Protocol):
    name: str
    model: str

    def complete(self, messages: list[ChatMessage], tally: Counter) -> ChatReply: ...


def api_key_from_env(settings: LLMSettings) -> str:
    """The key from the named variable; servers other than OpenAI may need none."""
    value = os.environ.get(settings.api_key_env, "")
    if value:
        return value
    if not settings.base_url:
        raise ConfigError(f"the OpenAI API needs a key: set the environment variable "
                          f"{settings.api_key_env} (or name another one with --api-key-env)")
    return NO_KEY_PLACEHOLDER


def safe_url(url: str) -> str:
    """A URL without ``user:password@`` for messages."""
    return re.sub(r"//[^/@]*@", "//", url)


def retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIChatBackend:
    """Chat completions through the ``openai`` client (see module doc)."""

    name = "openai"

    def __init__(self, settings: LLMSettings, api_key: str, cache: RequestCache | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None) -> None:
        import openai   # the [llm] extra; imported here so the template path never needs it

        self._openai = openai
        self.settings = settings
        self.model = settings.model
        self._secret = api_key
        self._cache = cache
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._json_ok = settings.json_mode != "off"
        from openai.types.chat import ChatCompletion

        self._completion_type = ChatCompletion
        self._client = openai.OpenAI(api_key=api_key, base_url=settings.base_url or None,
                                     timeout=settings.timeout_s, max_retries=0)

    def __repr__(self) -> str:   # never shows the key
        return (f"OpenAIChatBackend(model={self.model!r}, "
                f"base_url={safe_url(self.settings.base_url or 'default')!r})")

    # ------------------------------------------------------------------ helpers

    def redact(self, text: str) -> str:
        if self._secret and len(self._secret) >= 4 and self._secret != NO_KEY_PLACEHOLDER:
            text = text.replace(self._secret, REDACTED)
        return re.sub(r"(Bearer\s+)\S+", r"\1" + REDACTED, text)

    def params(self, json_mode: bool) -> dict[str, Any]:
        p: dict[str, Any] = {"temperature": self.settings.temperature,
                             "max_tokens": self.settings.max_tokens}
        if json_mode:
            p["response_format"] = {"type": "json_object"}
        return p

    def backoff_s(self, attempt: int, retry_after: float | None) -> float:
        """Delay before retry number ``attempt + 1``: the server's ``Retry-After`` when given
        (capped, plus up to 10 % jitter so clients do not return in lockstep), else
        exponential backoff with jitter in [base/2, base]."""
        s = self.settings
        with self._rng_lock:
            u = self._rng.random()
        if retry_after is not None:
            return min(retry_after, s.max_retry_after_s) * (1 + 0.1 * u)
        base = min(s.backoff_max_s, s.backoff_initial_s * (2 ** attempt))
        return base * (0.5 + 0.5 * u)

    def _retryable(self, exc: Exception) -> tuple[str, float | None] | None:
        """``(reason, retry_after)`` when ``exc`` is worth retrying, else ``None``."""
        o = self._openai
        if isinstance(exc, o.APITimeoutError):
            return "timeout", None
        if isinstance(exc, o.APIConnectionError):
            return "connection", None
        if isinstance(exc, o.APIStatusError):
            status = exc.status_code
            if status == 429 or status in (408, 409) or status >= 500:
                return str(status), retry_after_s(exc.response.headers)
        return None

    def _describe(self, exc: Exception) -> str:
        o = self._openai
        if isinstance(exc, o.APIStatusError):
            message = exc.message
            body = exc.body
            if isinstance(body, dict):
                err = body.get("error", body)
                if isinstance(err, dict) and isinstance(err.get("message"), str):
                    message = err["message"]
            return self.redact(f"HTTP {exc.status_code}: {message}")
        return self.redact(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ the call

    def complete(self, messages: list[ChatMessage], tally: Counter) -> ChatReply:
        msgs = [m.as_dict() for m in messages]
        tally["llm_calls"] += 1
        keys: dict[bool, str] = {}   # json mode -> cache key, computed once per request
        if self._cache is not None:
            modes = [self._json_ok]
            if self.settings.json_mode == "auto":
                modes.append(not self._json_ok)   # a reply cached before a json-mode fallback
            for mode in modes:
                keys[mode] = request_key(self.model, self.params(mode), msgs)
                hit = self._cache.get(keys[mode])
                if hit is not None:
                    tally["llm_cache_hits"] += 1
                    return ChatReply(hit.text, hit.prompt_tokens, hit.completion_tokens,
                                     hit.finish_reason, True)
        return self._send(msgs, tally, keys)

    def _send(self, msgs: list[dict[str, str]], tally: Counter,
              keys: dict[bool, str] | None = None) -> ChatReply:
        o = self._openai
        where = safe_url(self.settings.base_url or "the OpenAI API")
        attempt = 0
        while True:
            json_mode = self._json_ok
            params = self.params(json_mode)
            tally["llm_requests"] += 1
            try:
                # the client's documented raw-body call: the same auth, timeouts, errors and
                # typed reply as chat.completions.create, without its per-request walk over
                # the typed message params (~4 ms of CPU per request, see the benchmark doc)
                resp = self._client.post("/chat/completions", cast_to=self._completion_type,
                                         body={"model": self.model, "messages": msgs, **params})
            except o.BadRequestError as exc:
                if json_mode and self.settings.json_mode == "auto" and \
                        "response_format" in self._describe(exc):
                    self._json_ok = False
                    tally["llm_json_mode_unsupported"] += 1
                    log.warning("%s rejects response_format; continuing without JSON mode", where)
                    continue
                raise LLMError(f"{where} refused the request: {self._describe(exc)}") from None
            except o.OpenAIError as exc:
                retry = self._retryable(exc)
                if retry is None:
                    raise LLMError(f"{where}: {self._describe(exc)} (not retried)") from None
                reason, after = retry
                if attempt >= self.settings.max_retries:
                    raise LLMError(f"{where}: gave up after {attempt + 1} attempts; last: "
                                   f"{self._describe(exc)}") from None
                delay = self.backoff_s(attempt, after)
                tally["llm_retries"] += 1
                tally[f"llm_retry:{reason}"] += 1
                log.info("LLM request failed (%s); retry %d/%d in %.2f s", reason, attempt + 1,
                         self.settings.max_retries, delay)
                self._sleep(delay)
                attempt += 1
                continue
            return self._finish(resp, msgs, params, tally, (keys or {}).get(json_mode))

    def _finish(self, resp: Any, msgs: list[dict[str, str]], params: dict[str, Any],
                tally: Counter, key: str | None = None) -> ChatReply:
        choice = resp.choices[0] if resp.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        finish = (choice.finish_reason or "") if choice is not None else "no_choice"
        usage = resp.usage
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        tally["tokens_in"] += pt
        tally["tokens_out"] += ct
        s = self.settings
        tally["cost_usd"] += (pt * s.price_in_per_mtok + ct * s.price_out_per_mtok) / 1e6
        if self._cache is not None:
            key = key or request_key(self.model, params, msgs)
            self._cache.put(key, self.model, params, msgs, CachedReply(text, pt, ct, finish))
        return ChatReply(text, pt, ct, finish, False)
