"""A Dataflow job outlives nothing it should: the launcher reports the job it submitted (a
``--job-file`` and a parseable line), and a killed Airflow task cancels it.

Beam's real DataflowRunner submits to a stand-in job service on 127.0.0.1
(:mod:`tests.dataflow_service`, reached as ``http://localhost:PORT`` with ``--no_auth``) and
stages to the GCS emulator; the cancel is the Dataflow REST call the stand-in logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.dataflow_service import cancels, created_jobs, read_log
from tests.object_stores import EmulatorProcess, _spawn, free_port
from tests.shards_testdata import make_clips, write_set

pytest.importorskip("google.cloud.storage")
pytest.importorskip("google.cloud.dataflow")

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_PY = REPO / ".venv-airflow" / "bin" / "python"
IMAGE = "us-docker.pkg.dev/p/llark/beam:test"


@pytest.fixture
def job_service(tmp_path: Path) -> Iterator[tuple[EmulatorProcess, Path]]:
    """The stand-in Dataflow service and its request log."""
    port = free_port()
    log = tmp_path / "dataflow-requests.jsonl"
    log.write_text("")
    service = _spawn("dataflow-service", ["-m", "tests.dataflow_service", str(port), str(log)],
                     port, tmp_path)
    yield service, log
    service.stop()


def dataflow_flags(gcs, port: int) -> list[str]:
    return ["--runner", "DataflowRunner", "--project", "llark-emulator", "--region",
            "us-central1", "--temp_location", gcs.url("tmp"), "--staging_location",
            gcs.url("staging"), "--no_auth", "--sdk_location", "container",
            f"--dataflow_endpoint=http://localhost:{port}", "--sdk_container_image", IMAGE]


def _clip_set(tmp_path: Path) -> Path:
    clips = make_clips(tmp_path / "audio", 2, seconds=1.0)
    return write_set(tmp_path / "clips", "clip", [c.to_row() for c in clips])


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"exited {proc.returncode} before {what}: {out[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_launcher_reports_the_submitted_job_and_it_can_be_cancelled(gcs, job_service,
                                                                    tmp_path):
    from llark.dataflow_job import JOB_LINE_PREFIX, JobRef, cancel_job, read_job_file

    service, log = job_service
    job_file = tmp_path / "job" / "embed.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "embed", "--input", str(_clip_set(tmp_path)),
         "--output", str(tmp_path / "emb"), "--job-file", str(job_file),
         *dataflow_flags(gcs, service.port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        _wait_for(job_file.exists, 240, "the job file", proc)
        ref = read_job_file(str(job_file))
        assert ref is not None
        assert created_jobs(read_log(log)) == [ref.job_id]
        assert (ref.project, ref.region, ref.no_auth) == ("llark-emulator", "us-central1", True)
        assert ref.endpoint == f"http://localhost:{service.port}"
        answer = cancel_job(ref)
        assert answer["currentState"] == "JOB_STATE_CANCELLED"
        assert cancels(read_log(log)) == [ref.job_id]
        out, _ = proc.communicate(timeout=120)   # the launcher sees the cancelled job, ends
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    line = next(ln for ln in out.splitlines() if JOB_LINE_PREFIX in ln)
    assert line.startswith("[embed] ")
    assert JobRef.from_json(line.split(JOB_LINE_PREFIX, 1)[1]) == ref
    assert proc.returncode == 1                 # a cancelled job is not a finished stage
    assert f"[embed] Dataflow job {ref.job_id} ended CANCELLED" in out, out[-3000:]
    assert "Traceback" not in out
    assert not (tmp_path / "emb" / "_index.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not AIRFLOW_PY.exists(), reason="no Airflow environment (make airflow-venv)")
def test_killing_the_airflow_task_cancels_its_dataflow_job(gcs, job_service, tmp_path):
    """``airflow tasks test llark embed`` on DataflowRunner (the stand-in): once the job is
    submitted, SIGTERM to the task (what Airflow sends a task it kills) makes the operator's
    on_kill cancel exactly that job through the REST API."""
    service, log = job_service
    airflow = AIRFLOW_PY.parent / "airflow"
    work = tmp_path / "work"
    write_set(work / "clips" / "folder", "clip",
              [c.to_row() for c in make_clips(tmp_path / "audio", 2, seconds=1.0)])
    dag_config = tmp_path / "dag.yaml"
    dag_config.write_text("demo: false\ndatasets: [folder]\nencoder: features\n")
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
               LLARK_DAG_CONFIG=str(dag_config))
    migrate = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    flags = dataflow_flags(gcs, service.port)
    params = {"work_dir": str(work), "data_dir": str(tmp_path / "data"),
              "runner": "DataflowRunner", "project": "llark-emulator", "region": "us-central1",
              "temp_location": gcs.url("tmp"), "sdk_container_image": IMAGE,
              "extra_beam_args": " ".join(flags[flags.index("--staging_location"):
                                                flags.index("--sdk_container_image")]),
              "llark": f"{sys.executable} -m pipelines.cli"}
    proc = subprocess.Popen([str(airflow), "tasks", "test", "llark", "embed", "-t",
                             json.dumps(params)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: created_jobs(read_log(log)), 300, "the job's submission", proc)
        job_id = created_jobs(read_log(log))[0]
        # the launcher polls the job once it is submitted (and has written its job file)
        _wait_for(lambda: any(r.method == "GET" and job_id in r.path for r in read_log(log)),
                  60, "the launcher's first poll", proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert cancels(read_log(log)) == [job_id], out[-4000:]
    assert f"Cancelling Dataflow job {job_id}" in out
