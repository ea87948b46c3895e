"""LLM chat backends behind one small interface, with retries, a reply cache and usage
accounting.

:class:`ChatBackend` is the interface: ``complete(messages, tally) -> ChatReply``.
:class:`OpenAIChatBackend` implements it for any OpenAI-compatible server (OpenAI, vLLM,
llama.cpp server, Ollama) given by ``base_url``: the ``openai`` 3.x client resolves the URL and
the headers (key, organisation, project, user agent), and each ``POST /chat/completions`` goes
out on an ``httpx`` client with the openai client's defaults (its request and reply layers cost
≈0.7 ms of CPU per request more; see docs/benchmarks.md):

* the API key comes only from the environment variable named by ``api_key_env`` (default
  ``OPENAI_API_KEY``); it is never logged, stored, cached or put into an error message (server
  messages that echo it are redacted);
* our retries (the only ones) cover 429, 408/409, 5xx, timeouts and connection
  errors with exponential backoff and jitter, honouring ``Retry-After`` / ``retry-after-ms``;
* ``json_mode="auto"`` asks for ``response_format={"type": "json_object"}`` and falls back to
  plain text once if the server rejects it (400 naming ``response_format``);
* with a :class:`~annotate.instruct.cache.RequestCache`, a request seen before is answered from
  disk and sends nothing;
* every call adds to a ``tally`` (a ``Counter``): ``llm_calls``, ``llm_requests``,
  ``llm_cache_hits``, ``llm_retries``, ``llm_retry:<why>``, ``tokens_in``, ``tokens_out``,
  ``cost_usd``.

The client is thread-safe; callers run many ``complete`` calls from a thread pool, and
``max_in_flight`` caps the HTTP requests out at once (the pool may have more threads, which
build prompts and check replies meanwhile).
"""

from __future__ import annotations

import email.utils
import json
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
from annotate.instruct.parse import excerpt
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


class HTTPStatusError(Exception):
    """A reply with an HTTP error status (internal: classified, then raised as LLMError)."""

    def __init__(self, status: int, message: str, headers: Any) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.headers = headers


class OpenAIChatBackend:
    """Chat completions for any OpenAI-compatible server (see module doc)."""

    name = "openai"

    def __init__(self, settings: LLMSettings, api_key: str, cache: RequestCache | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None,
                 max_in_flight: int | None = None) -> None:
        import httpx2   # the openai client's HTTP library
        import openai   # the [llm] extra; imported here so the template path never needs it

        self._httpx = httpx2
        self.settings = settings
        self.model = settings.model
        self._secret = api_key
        self._cache = cache
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._json_ok = settings.json_mode != "off"
        # at most this many HTTP requests at once, however many threads call complete(): a
        # caller may run more threads than that, which build prompts and check replies while
        # the requests are out (backoff sleeps hold no slot)
        self._slots = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        # The openai client resolves what the request needs: the base URL (``--base-url``, else
        # OPENAI_BASE_URL, else api.openai.com), the Authorization header, the organisation and
        # project headers (OPENAI_ORG_ID, OPENAI_PROJECT_ID) and its user agent. The request
        # itself goes out on an httpx client with the openai client's defaults (connection
        # limits, redirects): the openai client's own request and reply layers cost ≈0.7 ms
        # more CPU per request (docs/benchmarks.md).
        client = openai.OpenAI(api_key=api_key, base_url=settings.base_url or None,
                               timeout=settings.timeout_s, max_retries=0)
        self._url = str(client.base_url).rstrip("/") + "/chat/completions"
        self._headers = {k: v for k, v in {**client.default_headers,
                                            **client.auth_headers}.items()
                         if isinstance(v, str)}
        self._http = openai.DefaultHttpxClient(timeout=settings.timeout_s)

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
        if isinstance(exc, self._httpx.TimeoutException):
            return "timeout", None
        if isinstance(exc, self._httpx.TransportError):
            return "connection", None
        if isinstance(exc, HTTPStatusError):
            status = exc.status
            if status == 429 or status in (408, 409) or status >= 500:
                return str(status), retry_after_s(exc.headers)
        return None

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, HTTPStatusError):
            return self.redact(str(exc))
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
        where = safe_url(self.settings.base_url or "the OpenAI API")
        attempt = 0
        while True:
            json_mode = self._json_ok
            params = self.params(json_mode)
            tally["llm_requests"] += 1
            try:
                data = self._post({"model": self.model, "messages": msgs, **params})
            except HTTPStatusError as exc:
                if exc.status == 400 and json_mode and self.settings.json_mode == "auto" and \
                        "response_format" in exc.message:
                    self._json_ok = False
                    tally["llm_json_mode_unsupported"] += 1
                    log.warning("%s rejects response_format; continuing without JSON mode", where)
                    continue
                if exc.status == 400:
                    raise LLMError(f"{where} refused the request: {self._describe(exc)}") from None
                failure: Exception = exc
            except self._httpx.HTTPError as exc:      # timeouts, connection and protocol errors
                failure = exc
            else:
                return self._finish(data, msgs, params, tally, (keys or {}).get(json_mode))
            retry = self._retryable(failure)
            if retry is None:
                raise LLMError(f"{where}: {self._describe(failure)} (not retried)") from None
            reason, after = retry
            if attempt >= self.settings.max_retries:
                raise LLMError(f"{where}: gave up after {attempt + 1} attempts; last: "
                               f"{self._describe(failure)}") from None
            delay = self.backoff_s(attempt, after)
            tally["llm_retries"] += 1
            tally[f"llm_retry:{reason}"] += 1
            log.info("LLM request failed (%s); retry %d/%d in %.2f s", reason, attempt + 1,
                     self.settings.max_retries, delay)
            self._sleep(delay)
            attempt += 1

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One HTTP request (holding a slot when capped); the reply's JSON body, or
        :class:`HTTPStatusError`, or an ``httpx`` error."""
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if self._slots is None:
            resp = self._http.post(self._url, content=content, headers=self._headers)
        else:
            with self._slots:
                resp = self._http.post(self._url, content=content, headers=self._headers)
        if resp.status_code >= 400:
            raise HTTPStatusError(resp.status_code, _error_message(resp), resp.headers)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LLMError(f"{safe_url(self._url)}: HTTP {resp.status_code} but the reply is not "
                           f"a JSON object ({excerpt(resp.text, 80)!r}); is --base-url an "
                           "OpenAI-compatible /v1 endpoint?")
        return data

    def _finish(self, data: dict[str, Any], msgs: list[dict[str, str]], params: dict[str, Any],
                tally: Counter, key: str | None = None) -> ChatReply:
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and \
            isinstance(choices[0], dict) else None
        message = choice.get("message") if choice is not None else None
        content = message.get("content") if isinstance(message, dict) else None
        text = content if isinstance(content, str) else ""
        finish = str(choice.get("finish_reason") or "") if choice is not None else "no_choice"
        usage = data.get("usage")
        pt = _count(usage, "prompt_tokens")
        ct = _count(usage, "completion_tokens")
        tally["tokens_in"] += pt
        tally["tokens_out"] += ct
        s = self.settings
        tally["cost_usd"] += (pt * s.price_in_per_mtok + ct * s.price_out_per_mtok) / 1e6
        if self._cache is not None:
            key = key or request_key(self.model, params, msgs)
            self._cache.put(key, self.model, params, msgs, CachedReply(text, pt, ct, finish))
        return ChatReply(text, pt, ct, finish, False)


def _count(usage: Any, name: str) -> int:
    """A token count from a reply's ``usage`` (0 when absent or not a number)."""
    value = usage.get(name) if isinstance(usage, dict) else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _error_message(resp: Any) -> str:
    """The server's message for an HTTP error: ``error.message`` of a JSON body (OpenAI's
    shape), else the start of the body."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
    return excerpt(resp.text, 200) or resp.reason_phrase
