"""A submitted Dataflow job, as the launcher reports it and an orchestrator cancels it.

The launcher (``pipelines.stage.run_stage``) writes a :class:`JobRef` to its ``--job-file`` as
soon as Dataflow has accepted the job, and prints it as a ``[stage] dataflow job: {json}``
line. When an Airflow task is killed, its operator (``dags/operators.py``) reads the file and
cancels the job with :func:`cancel_job`: the Dataflow REST call
``PUT /v1b3/projects/P/locations/R/jobs/ID`` with ``{"requestedState": "JOB_STATE_CANCELLED"}``.

Standard library only (the Airflow environment has no Beam): a token comes from
``google.auth`` when it is installed, else from ``gcloud auth print-access-token``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass

from llark.errors import LlarkError

DEFAULT_ENDPOINT = "https://dataflow.googleapis.com"
"""Dataflow's REST endpoint when ``--dataflow_endpoint`` is not given."""
JOB_LINE_PREFIX = "dataflow job: "
"""How the launcher's job line goes on after ``[stage] ``."""
CANCELLED = "JOB_STATE_CANCELLED"
"""The state a cancel asks for."""
CANCEL_TIMEOUT_S = 30.0
"""How long one cancel request may take."""
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
"""The OAuth scope of the Dataflow API."""


class CancelError(LlarkError):
    """A Dataflow job could not be cancelled (no token, or the service refused)."""


@dataclass(frozen=True)
class JobRef:
    """A submitted Dataflow job: enough to find and cancel it through the REST API."""

    job_id: str
    """The job's id (``run.job_id()``)."""
    project: str
    """Its cloud project."""
    region: str
    """Its regional endpoint (``locations/REGION``)."""
    endpoint: str
    """The Dataflow REST endpoint it was submitted to (``--dataflow_endpoint``)."""
    no_auth: bool
    """Submitted with ``--no_auth`` (a stand-in service): a canceller sends no token."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "JobRef":
        return cls(**json.loads(text))

    @property
    def url(self) -> str:
        """The job's REST resource."""
        quote = urllib.parse.quote
        return (f"{self.endpoint.rstrip('/')}/v1b3/projects/{quote(self.project, safe='')}"
                f"/locations/{quote(self.region, safe='')}/jobs/{quote(self.job_id, safe='')}")


def write_job_file(path: str, ref: JobRef) -> None:
    """``ref`` as JSON at the local ``path``, atomically (a reader never sees half of it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = f"{path}.{os.getpid()}.part"
    with open(part, "w") as f:
        f.write(ref.to_json() + "\n")
    os.replace(part, path)


def read_job_file(path: str) -> JobRef | None:
    """The job in ``path``; None when no job was submitted (no file)."""
    try:
        with open(path) as f:
            return JobRef.from_json(f.read())
    except FileNotFoundError:
        return None


def access_token() -> str:
    """An OAuth token for the Dataflow API: Application Default Credentials through
    ``google.auth`` when installed, else ``gcloud auth print-access-token``."""
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise CancelError("no credentials to cancel the Dataflow job: neither google-auth "
                              "nor gcloud is installed here") from None
        proc = subprocess.run([gcloud, "auth", "print-access-token"], capture_output=True,
                              text=True, timeout=CANCEL_TIMEOUT_S)
        if proc.returncode != 0:
            raise CancelError(f"gcloud auth print-access-token failed: {proc.stderr.strip()}")
        return proc.stdout.strip()
    credentials, _project = google.auth.default(scopes=[SCOPE])
    credentials.refresh(google.auth.transport.requests.Request())
    return str(credentials.token)


def cancel_job(ref: JobRef, timeout_s: float = CANCEL_TIMEOUT_S) -> dict:
    """Ask Dataflow to cancel ``ref``; the job resource the service answers with."""
    headers = {"Content-Type": "application/json"}
    if not ref.no_auth:
        headers["Authorization"] = f"Bearer {access_token()}"
    body = json.dumps({"requestedState": CANCELLED}).encode()
    request = urllib.request.Request(ref.url, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise CancelError(f"cancelling Dataflow job {ref.job_id}: HTTP {exc.code} "
                          f"{exc.read()[:500]!r}") from exc
    except urllib.error.URLError as exc:
        raise CancelError(f"cancelling Dataflow job {ref.job_id}: {exc.reason}") from exc
