"""Object-store emulators on 127.0.0.1 for tests: a GCS emulator and moto's S3 server.

Real servers in child processes, not mocks:

* **GCS**: ``gcp-storage-emulator`` (PyPI, pure Python; in memory). Clients find it through
  ``STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT`` (google-cloud-storage, and therefore Beam's
  ``gs://`` filesystem; pyarrow's ``GcsFileSystem`` is pointed at it with ``endpoint_override``),
  with ``GOOGLE_APPLICATION_CREDENTIALS`` at a placeholder file (:data:`EMULATOR_CREDENTIALS`).
* **S3**: ``moto.server`` (``moto[server]``). Clients find it through ``AWS_ENDPOINT_URL`` (boto3
  and pyarrow's ``S3FileSystem``) with the test keys ``testing``/``testing``; Beam's ``s3://``
  filesystem through its ``--s3_endpoint_url`` option (or the same variable).

Each server starts once per test session on a free port (:func:`free_port`) with one bucket
(:data:`GCS_BUCKET`, :data:`S3_BUCKET`). The function fixtures :func:`gcs` and :func:`s3` set
the environment variables for one test (``monkeypatch``, so they are undone after it) and hand
it an :class:`ObjectStore` with a fresh prefix of its own, e.g. ``gs://llark-test/t3f9a…``.

``tests/conftest.py`` loads this module as a plugin, so every test can ask for the fixtures::

    def test_x(gcs):                     # or s3, or object_store (both in turn)
        out = gcs.url("clips")           # gs://llark-test/<fresh>/clips
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

GCS_BUCKET = "llark-test"
"""The bucket the GCS emulator is started with."""
S3_BUCKET = "llark-test"
"""The bucket created on moto's server."""
GCS_PROJECT = "llark-emulator"
"""A valid-looking project id (Beam's Dataflow option checks want one)."""
S3_KEY = "testing"
"""moto accepts any key; these are the conventional test ones."""
S3_REGION = "us-east-1"
START_TIMEOUT_S = 60.0
"""How long a server may take to accept connections (imports are slow on a loaded machine)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmulatorProcess:
    """One emulator in a child process, listening on 127.0.0.1:``port``."""

    name: str
    """Which emulator (for messages)."""
    port: int
    """Its port on 127.0.0.1."""
    process: subprocess.Popen[bytes]
    """The child process."""
    log_path: Path
    """Where its stdout and stderr go (read when it fails to start)."""
    credentials: Path | None = None
    """GCS: the placeholder credentials file (:func:`write_emulator_credentials`)."""

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the port accepts a connection; raise with the server's log if it died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout_s:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, n_chars: int = 4000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _spawn(name: str, args: list[str], port: int, log_dir: Path) -> EmulatorProcess:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    emulator = EmulatorProcess(name=name, port=port, process=process, log_path=log_path)
    emulator.wait_ready()
    return emulator


def start_gcs_emulator(log_dir: Path, bucket: str = GCS_BUCKET) -> EmulatorProcess:
    """``gcp-storage-emulator`` in memory on a free port, with ``bucket`` created."""
    port = free_port()
    return _spawn("gcs-emulator", ["-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                                   "--port", str(port), "--in-memory", "--default-bucket", bucket,
                                   "--quiet"], port, log_dir)


def start_s3_emulator(log_dir: Path, bucket: str = S3_BUCKET) -> EmulatorProcess:
    """moto's S3 server on a free port, with ``bucket`` created."""
    import boto3

    port = free_port()
    emulator = _spawn("moto-s3", ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                      port, log_dir)
    client = boto3.client("s3", endpoint_url=emulator.endpoint, region_name=S3_REGION,
                          aws_access_key_id=S3_KEY, aws_secret_access_key=S3_KEY)
    client.create_bucket(Bucket=bucket)
    return emulator


@dataclass
class ObjectStore:
    """A fresh prefix on an emulated bucket, with the environment a client needs to reach it."""

    scheme: str
    """``gs`` or ``s3``."""
    bucket: str
    """The bucket name."""
    prefix: str
    """This test's own prefix inside the bucket (no slashes at either end)."""
    endpoint: str
    """``http://127.0.0.1:PORT`` of the emulator."""
    env: dict[str, str] = field(default_factory=dict)
    """The environment variables set for the test (what a user would export)."""

    @property
    def root(self) -> str:
        """``gs://bucket/prefix`` (or ``s3://…``)."""
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def url(self, *parts: str) -> str:
        """``root/part/part…``."""
        return "/".join([self.root, *(p.strip("/") for p in parts)])

    @property
    def beam_args(self) -> list[str]:
        """Beam pipeline flags this store needs (S3: the endpoint and the test keys)."""
        if self.scheme == "s3":
            return [f"--s3_endpoint_url={self.endpoint}", f"--s3_access_key_id={S3_KEY}",
                    f"--s3_secret_access_key={S3_KEY}", f"--s3_region_name={S3_REGION}"]
        return []


EMULATOR_CREDENTIALS = {
    "type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
    "refresh_token": "emulator", "token": "emulator", "expiry": "2999-01-01T00:00:00Z"}
"""A placeholder Application Default Credentials file for an emulator: a token that never
expires, so nothing is refreshed over the network. Without any credentials Beam's GCS client
retries Google's default-credentials lookup for ~20 s in every process before it connects
anonymously; with this file it connects at once (the emulator ignores the token)."""


def write_emulator_credentials(path: Path) -> Path:
    """Write :data:`EMULATOR_CREDENTIALS` to ``path`` (for ``GOOGLE_APPLICATION_CREDENTIALS``)."""
    path.write_text(json.dumps(EMULATOR_CREDENTIALS))
    return path


def gcs_env(endpoint: str, credentials: Path) -> dict[str, str]:
    """What a user exports to reach a GCS emulator at ``endpoint``."""
    return {"STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_CLOUD_PROJECT": GCS_PROJECT,
            "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}


def s3_env(endpoint: str) -> dict[str, str]:
    """What a user exports to reach an S3-compatible server at ``endpoint``."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_KEY, "AWS_DEFAULT_REGION": S3_REGION,
            "AWS_REGION": S3_REGION, "AWS_EC2_METADATA_DISABLED": "true"}


def _fresh_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def emulator_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the emulators' logs and the placeholder credentials."""
    return tmp_path_factory.mktemp("emulators")


@pytest.fixture(scope="session")
def gcs_server(emulator_log_dir: Path) -> Iterator[EmulatorProcess]:
    """The session's GCS emulator (skips when ``gcp-storage-emulator`` is not installed)."""
    pytest.importorskip("gcp_storage_emulator")
    emulator = start_gcs_emulator(emulator_log_dir)
    emulator.credentials = write_emulator_credentials(emulator_log_dir / "emulator-adc.json")
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def s3_server(emulator_log_dir: Path) -> Iterator[EmulatorProcess]:
    """The session's moto S3 server (skips when ``moto[server]`` is not installed)."""
    pytest.importorskip("moto.server")
    pytest.importorskip("boto3")
    emulator = start_s3_emulator(emulator_log_dir)
    yield emulator
    emulator.stop()


@pytest.fixture
def gcs(gcs_server: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """A fresh ``gs://llark-test/<prefix>`` with ``STORAGE_EMULATOR_HOST`` set for this test."""
    env = gcs_env(gcs_server.endpoint, gcs_server.credentials)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return ObjectStore("gs", GCS_BUCKET, _fresh_prefix(), gcs_server.endpoint, env)


@pytest.fixture
def s3(s3_server: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """A fresh ``s3://llark-test/<prefix>`` with ``AWS_ENDPOINT_URL`` and test keys set."""
    env = s3_env(s3_server.endpoint)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return ObjectStore("s3", S3_BUCKET, _fresh_prefix(), s3_server.endpoint, env)


@pytest.fixture(params=["gs", "s3"])
def object_store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each of :func:`gcs` and :func:`s3` in turn."""
    name = {"gs": "gcs", "s3": "s3"}[request.param]
    return request.getfixturevalue(name)




# --------------------------------------------------------------------------- request log

@dataclass(frozen=True)
class LoggedRequest:
    """One request that went through a :class:`RecordingProxy`."""

    method: str
    """HTTP method."""
    path: str
    """Request path and query."""
    range: str
    """The ``Range`` header (``""`` when the whole object was asked for)."""
    status: int
    """The emulator's status code."""
    body_bytes: int
    """Bytes of response body served."""


def serve_proxy(upstream_port: int, port: int, log_path: Path) -> None:
    """A logging reverse proxy on 127.0.0.1:``port`` in front of 127.0.0.1:``upstream_port``:
    one JSON line per request (:class:`LoggedRequest`) appended to ``log_path``."""
    import http.client
    import threading
    from dataclasses import asdict
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"   # one request per connection, as the GCS emulator

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("connection", "keep-alive")}
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            # a HEAD answer's Content-Length is the object's size, not this (empty) body's
            self.send_header("Content-Length", resp.getheader("Content-Length", "0")
                             if self.command == "HEAD" else str(len(data)))
            self.end_headers()
            served = 0
            if self.command != "HEAD":
                self.wfile.write(data)
                served = len(data)
            entry = LoggedRequest(self.command, self.path, self.headers.get("Range", ""),
                                  resp.status, served)
            with lock, open(log_path, "a") as log:
                log.write(json.dumps(asdict(entry)) + "\n")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


class RecordingProxy:
    """:func:`serve_proxy` in a child process (a proxy in the test's own process would wait on
    the GIL that pyarrow's blocking reads hold). Point a client at :attr:`endpoint` and read
    :meth:`requests` to see what it fetched: a Parquet reader's range requests, or a
    whole-object download."""

    def __init__(self, upstream_port: int, log_dir: Path) -> None:
        port = free_port()
        self.log_path = log_dir / f"proxy-{port}.jsonl"
        self.log_path.write_text("")
        self._process = _spawn(f"proxy-{port}", ["-m", "tests.object_stores", "proxy",
                                                  str(upstream_port), str(port),
                                                  str(self.log_path)], port, log_dir)
        self.port = port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[LoggedRequest]:
        return [LoggedRequest(**json.loads(line))
                for line in self.log_path.read_text().splitlines() if line.strip()]

    def reads(self, key: str) -> list[LoggedRequest]:
        """GETs that served bytes of the object whose key (URL-quoted or not) is ``key``
        (GCS: its media downloads, not its JSON metadata; S3: GETs of the key)."""
        from urllib.parse import quote

        names = (key, quote(key, safe=""))
        return [r for r in self.requests() if r.method == "GET" and r.body_bytes
                and any(n in r.path for n in names)
                and ("alt=media" in r.path or not r.path.startswith(("/storage/", "/download/")))]

    def clear(self) -> None:
        self.log_path.write_text("")

    def close(self) -> None:
        self._process.stop()


if __name__ == "__main__":   # python -m tests.object_stores proxy UPSTREAM_PORT PORT LOG
    if len(sys.argv) != 5 or sys.argv[1] != "proxy":
        raise SystemExit("usage: python -m tests.object_stores proxy UPSTREAM_PORT PORT LOG")
    serve_proxy(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
