"""The Airflow operator of a Beam stage: the ``llark`` command, and a killed task cancels its
Dataflow job.

:class:`LlarkStageOperator` is a ``BashOperator`` that appends ``--job-file PATH`` (one file per
task try) to the stage's command; the launcher writes the submitted Dataflow job there
(:class:`llark.dataflow_job.JobRef`). When Airflow kills the task (SIGTERM: a user marking it
failed, a timeout, a worker shutting down), ``on_kill`` cancels that job through the Dataflow
REST API and then stops the command; without it the job would go on running (and billing)
after its task is gone. For other runners no job file is written and ``on_kill`` only stops
the command.

Airflow, the standard library and :mod:`llark.dataflow_job` only (no Beam in Airflow's
environment).
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator

from llark.dataflow_job import CancelError, cancel_job, read_job_file

JOB_DIR = "llark-airflow-jobs"
"""Folder under the temp dir for the job files of the tasks running on this machine."""


def job_file_path(dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    """The job file of one task try (names made safe for a path)."""
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", str(p)) for p in (dag_id, run_id, task_id)]
    return os.path.join(tempfile.gettempdir(), JOB_DIR, *safe[:2],
                        f"{safe[2]}.try{int(try_number)}.json")


class LlarkStageOperator(BashOperator):
    """A Beam stage's ``llark`` command whose Dataflow job is cancelled when the task is
    killed."""

    def __init__(self, *, bash_command: str, **kwargs: Any) -> None:
        super().__init__(bash_command=bash_command, **kwargs)
        self.job_file = ""

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        self.job_file = job_file_path(ti.dag_id, ti.run_id, ti.task_id, ti.try_number)
        if os.path.exists(self.job_file):
            os.remove(self.job_file)        # a job of an earlier attempt with this number
        self.bash_command = f"{self.bash_command} --job-file {shlex.quote(self.job_file)}"
        return super().execute(context)

    def on_kill(self) -> None:
        ref = read_job_file(self.job_file) if self.job_file else None
        if ref is not None:
            self.log.info("Cancelling Dataflow job %s (project %s, region %s)", ref.job_id,
                          ref.project, ref.region)
            try:
                answer = cancel_job(ref)
                self.log.info("Dataflow job %s: cancel requested (state %s)", ref.job_id,
                              answer.get("currentState", "?"))
            except CancelError as exc:
                self.log.error("%s; cancel it by hand: gcloud dataflow jobs cancel %s "
                               "--region %s --project %s", exc, ref.job_id, ref.region,
                               ref.project)
        super().on_kill()
