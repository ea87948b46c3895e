"""The OpenAI-compatible backend and the LLM writer against a real HTTP server on 127.0.0.1
(tests/llm_server.py): retries and Retry-After, timeouts, JSON-mode fallback, redaction of the
key, the reply cache (zero requests on a rerun, atomic concurrent writes), tolerant replies,
grounding drops, reply retries, and many requests in flight."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from annotate.instruct.cache import LocalCacheStore, RequestCache, request_key
from annotate.instruct.cache import CachedReply
from annotate.instruct.facts import ChordSegment, ClipFacts
from annotate.instruct.generate import GenerationSettings, InstructionGenerator, LLMWriter
from annotate.instruct.llm import (
    NO_KEY_PLACEHOLDER,
    LLMSettings,
    OpenAIChatBackend,
    api_key_from_env,
    retry_after_s,
)
from annotate.instruct.prompts import ChatMessage
from llark.errors import ConfigError, InvalidReplyError, LLMError
from tests.llm_server import LLMServer

KEY = "sk-llark-FAKE-7c1e9d2b44a0-do-not-leak"
HELLO = [ChatMessage("system", "Task family: mir"), ChatMessage("user", "hello")]


def facts(i: int = 0, title: str = "") -> ClipFacts:
    return ClipFacts(clip_id=f"fma:{i:06d}:0-10000", dataset="fma", duration_s=10.0,
                     source_id=f"{i:06d}", audio_uri=f"/data/{i:06d}.mp3", title=title,
                     genres=("Rock",), tempo_bpm=140.0, tempo_confidence=0.9, meter=4,
                     meter_confidence=0.8, key="F# minor", key_confidence=0.7,
                     chords=(ChordSegment(0, 4, "F#:min"), ChordSegment(4, 8, "D:maj")),
                     chords_confidence=0.6)


class Sleeps:
    """Records the delays the backend asks for instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def server():
    with LLMServer() as srv:
        yield srv


def backend(srv: LLMServer, cache_dir: Path | None = None, sleep=None,
            max_in_flight: int | None = None, **settings) -> OpenAIChatBackend:
    defaults = dict(model="test-model", base_url=srv.url, backoff_initial_s=0.01,
                    backoff_max_s=0.05, timeout_s=5.0)
    defaults.update(settings)
    cache = RequestCache(LocalCacheStore(cache_dir)) if cache_dir is not None else None
    return OpenAIChatBackend(LLMSettings(**defaults), KEY, cache=cache, sleep=sleep or Sleeps(),
                             seed=0, max_in_flight=max_in_flight)


def generator(chat: OpenAIChatBackend, **settings) -> InstructionGenerator:
    s = GenerationSettings(**settings)
    return InstructionGenerator(LLMWriter(chat, s), s)


# --------------------------------------------------------------------------- requests

def test_request_shape_and_authorization(server):
    tally = Counter()
    reply = backend(server, temperature=0.2, max_tokens=300).complete(HELLO, tally)
    assert '"qa"' in reply.text and not reply.cached
    assert server.auth_headers == [f"Bearer {KEY}"]
    body = server.bodies[0]
    assert body["model"] == "test-model" and body["temperature"] == 0.2
    assert body["max_tokens"] == 300 and body["response_format"] == {"type": "json_object"}
    assert body["messages"] == [m.as_dict() for m in HELLO]
    assert tally["llm_requests"] == 1 and tally["tokens_in"] > 0 and tally["tokens_out"] > 0


def test_cost_estimate(server):
    tally = Counter()
    r = backend(server, price_in_per_mtok=2.0, price_out_per_mtok=10.0).complete(HELLO, tally)
    assert tally["cost_usd"] == pytest.approx((r.prompt_tokens * 2 + r.completion_tokens * 10) / 1e6)


def test_429_honours_retry_after(server):
    server.retry_after = "3"
    server.script("hello", "429", "valid")
    sleeps, tally = Sleeps(), Counter()
    backend(server, sleep=sleeps).complete(HELLO, tally)
    assert server.requests == 2
    assert len(sleeps.delays) == 1 and 3.0 <= sleeps.delays[0] <= 3.3   # Retry-After + jitter
    assert tally["llm_retries"] == 1 and tally["llm_retry:429"] == 1


def test_retry_after_forms():
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0   # past
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_500_backs_off_exponentially_then_gives_up(server):
    server.default = "500"
    sleeps, tally = Sleeps(), Counter()
    chat = backend(server, sleep=sleeps, max_retries=3, backoff_initial_s=1.0, backoff_max_s=3.0)
    with pytest.raises(LLMError, match="gave up after 4 attempts; last: HTTP 500"):
        chat.complete(HELLO, tally)
    assert server.requests == 4
    d = sleeps.delays
    assert len(d) == 3
    assert 0.5 <= d[0] <= 1.0 and 1.0 <= d[1] <= 2.0 and 1.5 <= d[2] <= 3.0   # capped at 3
    assert tally["llm_retry:500"] == 3


def test_timeout_is_retried(server):
    server.slow_s = 1.5
    server.script("hello", "slow", "valid")
    tally = Counter()
    reply = backend(server, timeout_s=0.3).complete(HELLO, tally)
    assert '"qa"' in reply.text
    assert tally["llm_retry:timeout"] == 1 and server.requests == 2


def test_connection_refused_is_retried_then_fails():
    srv = LLMServer().start()
    srv.stop()
    tally = Counter()
    with pytest.raises(LLMError, match="gave up after 3 attempts; last: ConnectError: .*refused"):
        backend(srv, max_retries=2).complete(HELLO, tally)
    assert tally["llm_retry:connection"] == 2


def test_auth_error_is_not_retried_and_the_key_is_redacted(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.default = "auth"
    with pytest.raises(LLMError) as info:
        backend(server).complete(HELLO, Counter())
    assert server.requests == 1
    assert "401" in str(info.value) and "<redacted>" in str(info.value)
    assert KEY not in str(info.value) and KEY not in caplog.text


def test_json_mode_falls_back_once_and_the_cache_still_answers(server, tmp_path):
    server.default = "no_json_mode"
    tally = Counter()
    chat = backend(server, cache_dir=tmp_path)
    chat.complete(HELLO, tally)
    chat.complete([HELLO[0], ChatMessage("user", "again")], tally)
    assert tally["llm_json_mode_unsupported"] == 1
    assert ["response_format" in b for b in server.bodies] == [True, False, False]
    fresh, tally2 = backend(server, cache_dir=tmp_path), Counter()      # json mode "auto" again
    fresh.complete(HELLO, tally2)
    assert tally2["llm_cache_hits"] == 1 and server.requests == 3


def test_key_from_the_environment_only(monkeypatch):
    monkeypatch.delenv("LLARK_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="LLARK_TEST_KEY"):
        api_key_from_env(LLMSettings(model="m", api_key_env="LLARK_TEST_KEY"))
    local = LLMSettings(model="m", base_url="http://127.0.0.1:1/v1", api_key_env="LLARK_TEST_KEY")
    assert api_key_from_env(local) == NO_KEY_PLACEHOLDER
    monkeypatch.setenv("LLARK_TEST_KEY", KEY)
    assert api_key_from_env(local) == KEY
    with pytest.raises(ConfigError, match="must name an environment variable"):
        LLMSettings(model="m", api_key_env=KEY)
    assert KEY not in repr(OpenAIChatBackend(local, KEY))


# --------------------------------------------------------------------------- cache

def test_rerun_from_cache_makes_zero_requests_and_identical_output(server, tmp_path):
    clips = [facts(i, title=f"Song {i}") for i in range(4)]      # distinct prompts
    first = generator(backend(server, cache_dir=tmp_path))
    out1 = [first.generate(f, fam, Counter()) for f in clips for fam in ("mir", "caption")]
    sent = server.requests
    assert sent == 8
    tally = Counter()
    second = generator(backend(server, cache_dir=tmp_path))
    out2 = [second.generate(f, fam, tally) for f in clips for fam in ("mir", "caption")]
    assert server.requests == sent                  # nothing sent
    assert tally["llm_cache_hits"] == 8 and tally["llm_requests"] == 0
    assert out2 == out1
    files = list(tmp_path.rglob("*"))
    assert all(KEY.encode() not in p.read_bytes() for p in files if p.is_file())


def test_cache_key_covers_model_params_and_messages():
    msgs = [m.as_dict() for m in HELLO]
    base = request_key("m", {"temperature": 0.7}, msgs)
    assert base == request_key("m", {"temperature": 0.7}, [dict(m) for m in msgs])
    assert base != request_key("m2", {"temperature": 0.7}, msgs)
    assert base != request_key("m", {"temperature": 0.8}, msgs)
    assert base != request_key("m", {"temperature": 0.7}, msgs[:1])


def test_cache_writes_are_atomic_under_concurrency(tmp_path):
    cache = RequestCache(LocalCacheStore(tmp_path))
    keys = [request_key("m", {}, [{"role": "user", "content": str(i % 5)}]) for i in range(200)]

    def put(i: int) -> None:
        cache.put(keys[i], "m", {}, [], CachedReply("x" * 5000 + str(i % 5), 1, 2, "stop"))
        got = cache.get(keys[i])
        assert got is not None and got.text.startswith("xxx")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(200)))
    assert len(list(tmp_path.rglob("*.json"))) == 5
    assert not list(tmp_path.rglob("*.tmp"))
    assert cache.corrupt == 0


def test_corrupt_cache_entry_is_a_miss_and_is_rewritten(server, tmp_path):
    chat = backend(server, cache_dir=tmp_path)
    chat.complete(HELLO, Counter())
    (entry,) = list(tmp_path.rglob("*.json"))
    entry.write_text('{"format": 1, "key": "trunc')
    tally = Counter()
    backend(server, cache_dir=tmp_path).complete(HELLO, tally)
    assert tally["llm_requests"] == 1 and server.requests == 2
    tally = Counter()
    backend(server, cache_dir=tmp_path).complete(HELLO, tally)
    assert tally["llm_cache_hits"] == 1


# --------------------------------------------------------------------------- replies

def run_one(server, title: str, family: str = "mir", **settings):
    tally = Counter()
    result = generator(backend(server), **settings).generate(facts(0, title), family, tally)
    return result, tally


def test_fenced_reply(server):
    server.script("[fenced]", "fenced")
    result, _ = run_one(server, "[fenced]")
    assert len(result.conversations) == 3
    assert "reply:code_fence" in result.conversations[0].notes


def test_truncated_reply_keeps_complete_pairs(server):
    server.script("[truncated]", "truncated")
    result, tally = run_one(server, "[truncated]")
    assert len(result.conversations) == 2
    assert all("reply:truncated" in c.notes for c in result.conversations)
    assert server.requests == 1


def test_prose_once_is_repaired(server):
    server.script("[prose]", "prose", "valid")
    result, tally = run_one(server, "[prose]")
    assert len(result.conversations) == 3
    assert tally["reply_retries"] == 1 and tally["invalid_reply:mir"] == 1
    assert "reply:attempt_2" in result.conversations[0].notes
    repair = server.bodies[1]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-2]["content"].startswith("Sure!")
    assert "could not be used" in repair[-1]["content"]


def test_prose_forever_raises_after_reply_retries(server):
    server.script("[prose]", "prose")
    with pytest.raises(InvalidReplyError, match="no usable reply after 3 attempt"):
        run_one(server, "[prose]", reply_retries=2)
    assert server.requests == 3


def test_ungrounded_key_and_tempo_are_dropped_and_counted(server):
    server.script("[key]", "ungrounded_key").script("[tempo]", "ungrounded_tempo")
    result, tally = run_one(server, "[key]")
    assert len(result.conversations) == 3 and tally["dropped:grounding_key"] == 1
    assert not any("D major" in c.turns[1].content for c in result.conversations)
    result, tally = run_one(server, "[tempo]")
    assert tally["dropped:grounding_tempo"] == 1
    server.script("[tempo-once]", "ungrounded_tempo", "valid")
    cap, tally = run_one(server, "[tempo-once]", family="caption")   # dropped, asked again
    assert tally["dropped:grounding_tempo"] == 1 and tally["reply_retries"] == 1
    assert len(cap.conversations) == 1 and "90 BPM" not in cap.conversations[0].turns[1].content


def test_identical_prompts_share_one_cached_reply(server, tmp_path):
    gen = generator(backend(server, cache_dir=tmp_path))
    a = gen.generate(facts(1), "mir", Counter())
    b = gen.generate(facts(2), "mir", Counter())        # same facts, other clip id
    assert server.requests == 1
    assert [c.turns for c in a.conversations] == [c.turns for c in b.conversations]


def test_grounded_claims_are_kept_with_notes(server):
    server.script("[grounded]", "grounded")
    result, tally = run_one(server, "[grounded]")
    notes = [n for c in result.conversations for n in c.notes]
    assert "grounded:tempo" in notes and "grounded:key" in notes
    assert not [k for k in tally if k.startswith("dropped:")]


def test_metadata_mention_is_dropped(server):
    server.script("[meta]", "metadata")
    result, tally = run_one(server, "[meta]")
    assert tally["dropped:disallowed_phrase"] == 1 and len(result.conversations) == 3


def test_many_requests_in_flight(server):
    server.latency_s = 0.2
    chat = backend(server)
    gen = generator(chat)
    units = [(facts(i), "mir") for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda u: gen.generate(u[0], u[1], Counter()), units))
    assert all(len(r.conversations) == 3 for r in results)
    assert server.max_in_flight >= 8          # threads really overlap their requests


def test_openai_client_headers_go_out(server, monkeypatch):
    """The openai client's headers (organisation and project from its environment variables,
    its user agent) are sent with our requests."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-llark-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-llark-test")
    backend(server).complete(HELLO, Counter())
    sent = server.headers[-1]
    assert sent["OpenAI-Organization"] == "org-llark-test"
    assert sent["OpenAI-Project"] == "proj-llark-test"
    assert sent["User-Agent"].startswith("OpenAI/Python")
    assert server.auth_headers == [f"Bearer {KEY}"]


def test_reply_that_is_not_json_is_a_clear_error(server):
    server.script("hello", "html")
    with pytest.raises(LLMError, match="not a JSON object .*It works.*OpenAI-compatible /v1"):
        backend(server).complete(HELLO, Counter())
    assert server.requests == 1                  # not retried: asking again changes nothing


def test_max_in_flight_caps_requests_not_threads(server):
    """12 threads, at most 3 requests out at once; the others wait for a slot, not for a
    thread."""
    server.latency_s = 0.1
    chat = backend(server, max_in_flight=3)
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda i: chat.complete(
            [HELLO[0], ChatMessage("user", f"hi {i}")], Counter()), range(18)))
    assert len(replies) == 18 and server.requests == 18
    assert server.max_in_flight == 3


def test_no_log_line_holds_the_key(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.script("hello", "429", "500", "valid")
    server.retry_after = "0"
    backend(server).complete(HELLO, Counter())
    assert server.requests == 3
    assert "retry" in caplog.text.lower()
    assert KEY not in caplog.text
    assert all(KEY not in str(r.args) for r in caplog.records)


def test_threads_share_one_client_safely(server):
    chat = backend(server)
    errors: list[Exception] = []

    def call(i: int) -> None:
        try:
            chat.complete([HELLO[0], ChatMessage("user", f"hi {i}")], Counter())
        except LLMError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and server.requests == 20
