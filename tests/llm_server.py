"""A real OpenAI-compatible chat-completions server for tests and benchmarks.

``http.server.ThreadingHTTPServer`` on 127.0.0.1 (a random port by default) answering
``POST /v1/chat/completions``. What it answers is scripted: each request's user messages are
searched for the markers of :attr:`LLMServer.rules` (e.g. ``"[prose]"`` written into a test clip's
title, so a repair request for that clip matches too); the first rule that matches pops its
next behaviour (the last one repeats), otherwise
:attr:`LLMServer.default` is used. Behaviours:

``valid``            a JSON object fit for the requested family (grounded: no key/tempo claims)
``grounded``         valid JSON that restates the tempo and key shown in the prompt
``fenced``           valid JSON inside a ```json code fence with chatter around it
``truncated``        a JSON list cut off in the middle of its third item
``prose``            plain sentences, no JSON at all
``ungrounded_key``   valid JSON plus one answer claiming "D major"
``ungrounded_tempo`` valid JSON plus one answer claiming "around 90 BPM"
``metadata``         valid JSON plus one answer that mentions the metadata
``429``              HTTP 429 with ``Retry-After`` (seconds, :attr:`LLMServer.retry_after`)
``500``              HTTP 500
``slow``             valid JSON after :attr:`LLMServer.slow_s` seconds (longer than the timeout)
``auth``             HTTP 401 whose message echoes the bearer token (as OpenAI's does)
``no_json_mode``     HTTP 400 when ``response_format`` is set, else valid
``html``             HTTP 200 with an HTML page (a URL that is no chat-completions endpoint)

It counts requests (per behaviour too) and the most it had in flight at once, records every
``Authorization`` header and request body and the arrival and reply times of each HTTP-200 reply
(``time.monotonic``, the same clock in every process of the machine), adds a fixed
:attr:`LLMServer.latency_s` to each reply, answers the requests whose ordinals (1 = first) are in
:attr:`LLMServer.slow_requests` like ``slow``, can stop itself after ``stop_after`` replies (the
"server dies mid-run" test; kept-alive connections are dropped too), and restarts on the same
port. ``GET /v1/stats`` returns the counts and the timings as JSON (for a server in another
process).

Run standalone (for the benchmark): ``python -m tests.llm_server --latency 0.2`` prints the port.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VALID_QA = [
    {"question": "What mood does this music create?",
     "answer": "It feels warm and unhurried, with a gentle, steady energy."},
    {"question": "Where would this music fit well?",
     "answer": "It would suit a quiet evening at home or the background of a small cafe."},
    {"question": "How does the rhythm feel?",
     "answer": "The rhythm feels steady and easy to follow, never rushed."},
]
VALID_CAPTION = ("A warm, unhurried piece with a steady pulse and a gentle, flowing character. "
                 "The parts blend smoothly and the mood stays calm from start to finish.")


@dataclass
class _Rule:
    marker: str
    behaviours: list[str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512
    owner: "LLMServer"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass   # a connection dropped by stop() or by a client that timed out: not an error here

    def close_connections(self) -> None:
        """Drop kept-alive connections too: a stopped server answers nothing more."""
        with self.sockets_lock:
            doomed = list(self.open_sockets)
            self.open_sockets.clear()
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class LLMServer:
    """Start with :meth:`start` (or as a context manager); ``url`` is the ``base_url``."""

    def __init__(self, default: str = "valid", latency_s: float = 0.0, retry_after: str = "1",
                 slow_s: float = 2.0, stop_after: int | None = None, port: int = 0,
                 slow_requests: frozenset[int] = frozenset()) -> None:
        self.default = default
        self.latency_s = latency_s
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.slow_requests = slow_requests
        self.stop_after = stop_after
        self.port = port
        self.rules: list[_Rule] = []
        self.requests = 0
        self.replies_ok = 0
        self.by_behaviour: Counter[str] = Counter()
        self.in_flight = 0
        self._admitted = 0
        self.max_in_flight = 0
        self.auth_headers: list[str] = []
        self.headers: list[dict[str, str]] = []       # every chat request's headers
        self.bodies: list[dict[str, Any]] = []
        self.timings: list[tuple[float, float]] = []   # (arrival, reply sent) per HTTP-200 reply
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    def script(self, marker: str, *behaviours: str) -> "LLMServer":
        """Requests whose last user message contains ``marker`` get ``behaviours`` in turn."""
        self.rules.append(_Rule(marker, list(behaviours)))
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LLMServer":
        httpd = _Server(("127.0.0.1", self.port), _Handler)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> "LLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ behaviour

    def _choose(self, body: dict[str, Any]) -> str:
        user = "\n".join(str(m.get("content", "")) for m in body.get("messages", [])
                         if m.get("role") == "user")
        with self._lock:
            for rule in self.rules:
                if rule.marker in user:
                    return rule.behaviours.pop(0) if len(rule.behaviours) > 1 else rule.behaviours[0]
        return self.default

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _note(self, body: dict[str, Any], auth: str, behaviour: str,
              headers: dict[str, str] | None = None) -> str:
        """Record a chat request; returns its behaviour (``slow`` for a listed ordinal)."""
        with self._lock:
            self.headers.append(dict(headers or {}))
            self.requests += 1
            if self.requests in self.slow_requests:
                behaviour = "slow"
            self.by_behaviour[behaviour] += 1
            self.auth_headers.append(auth)
            self.bodies.append(body)
            return behaviour

    def _timed(self, arrived: float) -> None:
        with self._lock:
            self.timings.append((arrived, time.monotonic()))

    def stats(self) -> dict[str, Any]:
        """What ``GET /v1/stats`` returns."""
        with self._lock:
            return {"requests": self.requests, "replies_ok": self.replies_ok,
                    "max_in_flight": self.max_in_flight, "by_behaviour": dict(self.by_behaviour),
                    "timings": list(self.timings)}

    def _admit(self) -> bool:
        """False once ``stop_after`` requests were admitted: the server is "dead" to the rest."""
        with self._lock:
            self._admitted += 1
            return self.stop_after is None or self._admitted <= self.stop_after

    def _replied_ok(self) -> bool:
        """Count a successful reply; True when the server should now stop itself."""
        with self._lock:
            self.replies_ok += 1
            return self.stop_after is not None and self.replies_ok >= self.stop_after


def _family(body: dict[str, Any]) -> str:
    system = " ".join(m.get("content", "") for m in body.get("messages", [])
                      if m.get("role") == "system")
    found = re.search(r"Task family: (\w+)", system)
    return found.group(1) if found else "mir"


def _facts_value(body: dict[str, Any], label: str) -> str:
    user = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    found = re.search(rf"^{label}: (.+)$", user[-1] if user else "", re.M)
    return found.group(1) if found else ""


def reply_content(behaviour: str, body: dict[str, Any]) -> str:
    """The assistant text for a behaviour that answers with HTTP 200."""
    family = _family(body)
    qa = [dict(p) for p in VALID_QA]
    if family == "caption":
        payload: dict[str, Any] = {"caption": VALID_CAPTION}
        if behaviour == "ungrounded_key":
            payload = {"caption": VALID_CAPTION + " It is played in D major."}
        elif behaviour == "ungrounded_tempo":
            payload = {"caption": VALID_CAPTION + " It moves at around 90 BPM."}
    else:
        if behaviour == "ungrounded_key":
            qa.append({"question": "What key is the music in?", "answer": "It is in D major."})
        elif behaviour == "ungrounded_tempo":
            qa.append({"question": "How fast is it?", "answer": "It moves along at around 90 BPM."})
        elif behaviour == "metadata":
            qa.append({"question": "What genre is it?",
                       "answer": "The metadata lists it as rock music."})
        elif behaviour == "grounded":
            tempo = re.search(r"(\d+(?:\.\d+)?) BPM", _facts_value(body, "Tempo"))
            key = re.match(r"([A-G][#b]? (?:major|minor))", _facts_value(body, "Key"))
            if tempo:
                qa.append({"question": "How fast is the music?",
                           "answer": f"It moves at about {round(float(tempo.group(1)))} BPM."})
            if key:
                qa.append({"question": "What key is it in?", "answer": f"It is in {key.group(1)}."})
        payload = {"qa": qa}
    text = json.dumps(payload)
    if behaviour == "fenced":
        return f"Here you go:\n```json\n{json.dumps(payload, indent=2)}\n```\nHope this helps!"
    if behaviour == "truncated":
        full = json.dumps({"qa": qa}) if family != "caption" else text
        if family == "caption":
            return full[: len(full) // 2]
        cut = full.index('"answer"', full.index(qa[2]["question"]))
        return full[: cut + 5]
    if behaviour == "prose":
        return "Sure! This is a lovely piece. It feels calm and I think people would enjoy it."
    return text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # would add ~40 ms to every reply
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:   # keep test output quiet
        pass

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
              ) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):   # the client gave up (timeout test)
            pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/stats"):
            self._send(200, self.server.owner.stats())
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        owner = self.server.owner
        arrived = time.monotonic()
        owner._enter()
        try:
            self._post(owner, arrived)
        finally:
            owner._leave()

    def _post(self, owner: LLMServer, arrived: float) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not owner._admit():            # past stop_after: drop the connection, answer nothing
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(raw or b"{}")
        auth = self.headers.get("Authorization", "")
        behaviour = owner._note(body, auth, owner._choose(body), dict(self.headers.items()))
        if owner.latency_s:
            # the reply leaves latency_s after the request arrived, like a model server whose
            # own overhead is part of its latency: this Python server's parsing of a burst of
            # requests (serialised by its GIL) must not add to the fixed latency under test
            time.sleep(max(0.0, arrived + owner.latency_s - time.monotonic()))
        if behaviour == "429":
            self._send(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                       {"Retry-After": owner.retry_after})
            return
        if behaviour == "500":
            self._send(500, {"error": {"message": "The server had an error", "type": "server"}})
            return
        if behaviour == "auth":
            token = auth.removeprefix("Bearer ")
            self._send(401, {"error": {"message": f"Incorrect API key provided: {token}.",
                                       "type": "invalid_request_error"}})
            return
        if behaviour == "no_json_mode" and "response_format" in body:
            self._send(400, {"error": {"message": "response_format is not supported by this "
                                                  "server", "type": "invalid_request_error"}})
            return
        if behaviour == "html":
            self._send_raw(200, b"<html><body>It works!</body></html>", "text/html")
            return
        if behaviour == "slow":
            time.sleep(owner.slow_s)
        content = reply_content(behaviour, body)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion_tokens = len(content.split())
        self._send(200, {
            "id": f"chatcmpl-{owner.requests}", "object": "chat.completion",
            "created": 1700000000, "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })
        owner._timed(arrived)
        if owner._replied_ok():
            threading.Thread(target=owner.stop, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each reply")
    parser.add_argument("--default", default="valid", help="behaviour of unscripted requests")
    args = parser.parse_args(argv)
    server = LLMServer(default=args.default, latency_s=args.latency, port=args.port).start()
    print(server.port, flush=True)
    try:
        sys.stdin.read()          # run until stdin closes (the parent process ends or closes it)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
