"""A stand-in Dataflow job service on 127.0.0.1 for tests: a real HTTP server speaking the part
of the Dataflow REST API (``/v1b3``) that a launcher and a canceller use.

Beam's DataflowRunner talks to it over REST when given ``--dataflow_endpoint
http://localhost:PORT --no_auth`` (Beam picks the REST transport for an endpoint naming
``localhost``). It answers:

* ``POST /v1b3/projects/P/locations/R/jobs``: creates a job (``JOB_STATE_RUNNING``) and returns
  it with a fresh id;
* ``GET  .../jobs/ID``: the job and its current state;
* ``GET  .../jobs/ID/messages`` and ``.../metrics``: empty answers;
* ``PUT  .../jobs/ID`` with ``{"requestedState": "JOB_STATE_CANCELLED"}``: the job becomes
  ``JOB_STATE_CANCELLED``.

Every request is appended to a JSON-lines log (:class:`ServiceRequest`) that the test reads.
Run it in a child process: ``python -m tests.dataflow_service PORT LOG``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

JOBS = re.compile(r"^/v1b3/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/jobs"
                  r"(?:/(?P<job>[^/?]+))?(?:/(?P<sub>messages|metrics))?(?:\?.*)?$")


@dataclass(frozen=True)
class ServiceRequest:
    """One request the stand-in answered."""

    method: str
    """HTTP method."""
    path: str
    """Request path and query."""
    body: dict
    """The JSON body (``{}`` when there was none)."""
    status: int
    """The status code answered."""
    answer: dict
    """The JSON answered."""


def serve(port: int, log_path: Path) -> None:
    """Serve on 127.0.0.1:``port`` until killed, logging each request to ``log_path``."""
    jobs: dict[str, dict] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw.strip() else {}
            status, reply = self._route(body)
            # logged before answering: a client that has its answer finds its request logged
            with lock, open(log_path, "a") as log:
                log.write(json.dumps(asdict(ServiceRequest(self.command, self.path, body,
                                                           status, reply))) + "\n")
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, body: dict) -> tuple[int, dict]:
            m = JOBS.match(self.path)
            if m is None:
                return 404, {"error": {"code": 404, "message": f"no route {self.path}"}}
            job_id, sub = m.group("job"), m.group("sub")
            with lock:
                if job_id is None and self.command == "POST":
                    job_id = f"2026-12-07_00_00_00-{uuid.uuid4().int % 10**19}"
                    jobs[job_id] = {"id": job_id, "projectId": m.group("project"),
                                    "location": m.group("region"),
                                    "name": body.get("name", ""),
                                    "type": body.get("type", "JOB_TYPE_BATCH"),
                                    "currentState": "JOB_STATE_RUNNING"}
                    return 200, jobs[job_id]
                job = jobs.get(job_id or "")
                if job is None:
                    return 404, {"error": {"code": 404, "message": f"no job {job_id}"}}
                if sub is not None:
                    return 200, {}
                if self.command == "PUT":
                    if body.get("requestedState") == "JOB_STATE_CANCELLED":
                        job["currentState"] = "JOB_STATE_CANCELLED"
                    return 200, job
                return 200, job

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def read_log(log_path: Path) -> list[ServiceRequest]:
    """The requests logged so far."""
    return [ServiceRequest(**json.loads(line))
            for line in log_path.read_text().splitlines() if line.strip()]


def created_jobs(log: list[ServiceRequest]) -> list[str]:
    """The ids of the jobs the stand-in created."""
    return [r.answer["id"] for r in log if r.method == "POST" and r.status == 200]


def cancels(log: list[ServiceRequest]) -> list[str]:
    """The job ids a ``PUT`` asked to cancel."""
    return [r.path.split("?")[0].rsplit("/", 1)[1] for r in log
            if r.method == "PUT" and r.body.get("requestedState") == "JOB_STATE_CANCELLED"]


if __name__ == "__main__":   # python -m tests.dataflow_service PORT LOG
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m tests.dataflow_service PORT LOG")
    serve(int(sys.argv[1]), Path(sys.argv[2]))

