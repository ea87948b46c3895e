"""What a stage checks and reports when it runs on Dataflow: its workers and its job.

* :func:`worker_settings` reads a stage's workers (:class:`llark.workers.WorkerSettings`: image,
  machine type, accelerator, disk size, experiments) out of its Beam options, plus the stage's
  own model copies per VM; the dry run prints them.
* :func:`check_dataflow_workers` refuses a DataflowRunner run without a worker image: Beam's
  default image holds neither llark nor its dependencies, so every worker would fail its first
  bundle on an import, after the job has been queued and the VMs started.
* :func:`job_ref` is the submitted job (:class:`llark.dataflow_job.JobRef`: id, project,
  region, endpoint) that the launcher prints and writes to ``--job-file``, so that an
  orchestrator (the Airflow operator of ``dags/operators.py``) can cancel it when its task is
  killed.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)

from llark.errors import ConfigError, LlarkError
from llark.dataflow_job import DEFAULT_ENDPOINT, JobRef
from llark.workers import ACCELERATOR_OPTION, WorkerSettings, missing_image_message

DATAFLOW_RUNNERS = ("DataflowRunner", "dataflow")
"""The names Beam accepts for the Dataflow runner."""


def is_dataflow(options: PipelineOptions) -> bool:
    return (options.view_as(StandardOptions).runner or "") in DATAFLOW_RUNNERS


def worker_settings(options: PipelineOptions, model_copies: int = 0) -> WorkerSettings:
    """The worker settings in ``options`` (``model_copies``: the stage's own, see
    :attr:`llark.workers.WorkerSettings.model_copies`)."""
    workers = options.view_as(WorkerOptions)
    service = list(options.view_as(GoogleCloudOptions).dataflow_service_options or [])
    experiments = tuple(options.view_as(DebugOptions).experiments or ())
    accelerator = next((o[len(ACCELERATOR_OPTION):] for o in [*service, *experiments]
                        if o.startswith(ACCELERATOR_OPTION)), "")
    return WorkerSettings(workers.sdk_container_image or "", workers.machine_type or "",
                          accelerator, int(workers.disk_size_gb or 0),
                          tuple(e for e in experiments if not e.startswith(ACCELERATOR_OPTION)),
                          model_copies)


def check_dataflow_workers(stage: str, settings: WorkerSettings) -> None:
    """Refuse Dataflow workers that cannot run the stage: no image (a GPU stage most of all)."""
    if not settings.image:
        raise ConfigError(missing_image_message(stage, settings))


# --------------------------------------------------------------------------- the submitted job

def job_ref(result: Any, options: PipelineOptions) -> JobRef | None:
    """The job a finished ``pipeline.run()`` submitted (None for other runners)."""
    if not is_dataflow(options):
        return None
    job_id = result.job_id()
    if not job_id:
        return None
    cloud = options.view_as(GoogleCloudOptions)
    return JobRef(str(job_id), cloud.project or "", cloud.region or "",
                  (cloud.dataflow_endpoint or DEFAULT_ENDPOINT).rstrip("/"), bool(cloud.no_auth))


class JobEndedError(LlarkError):
    """The runner's job ended without finishing (cancelled, failed, drained)."""


def wait_until_finished(stage: str, result: Any, options: PipelineOptions) -> None:
    """``result.wait_until_finish()``; a Dataflow job that ends any other way than done (a
    cancel, a failure) is one clear error, not Beam's traceback."""
    if not is_dataflow(options):
        result.wait_until_finish()
        return
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRuntimeException

    try:
        result.wait_until_finish()
    except DataflowRuntimeException as exc:
        raise JobEndedError(f"[{stage}] Dataflow job {result.job_id()} ended {result.state}; "
                            f"the output is NOT marked complete ({exc})") from exc
