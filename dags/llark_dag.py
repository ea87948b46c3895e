"""The llark pipeline as an Airflow DAG, built from the same stage graph as ``llark run``.

Each stage is a command task running the ``llark`` CLI of the project's own environment: Beam
stages get the runner flags from the DAG params (DirectRunner locally; DataflowRunner with
project, region, temp location and a worker image per stage at scale: the CPU image for every
stage, the GPU image, GPU machine, one SDK container and a larger disk for the embed stage when
encoder=jukebox), training goes through ``accelerate launch``. A Beam stage's task is a
:class:`dags.operators.LlarkStageOperator`: killing it cancels its Dataflow job. Airflow lives in its
own virtualenv (``make airflow-venv``): its protobuf pin conflicts with Beam's, so the Beam
provider's operators (which import Beam inside Airflow) are not used; a command task runs the
identical ``python -m pipelines.<stage>`` a Dataflow user would run by hand.

Graph shape (datasets, demo corpus, encoder, LLM backend) is read when the DAG file is parsed,
from the YAML file named by ``LLARK_DAG_CONFIG`` (RunConfig keys), defaulting to the demo.
Paths, runner and cloud settings are DAG params, set per run.

No heavy imports here: Airflow, the standard library and ``dags.graph`` only.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dags.graph import RunConfig, Stage, build_graph, is_gpu_stage, stage_workers  # noqa: E402
from dags.operators import LlarkStageOperator  # noqa: E402
from llark.config import from_dict, load_yaml  # noqa: E402

DAG_ID = "llark"

BEAM_FLAGS = (
    "--runner {{ params.runner }}"
    "{% if params.runner == 'DirectRunner' %}"
    " --direct_running_mode multi_processing --direct_num_workers {{ params.workers }}"
    "{% elif params.runner == 'DataflowRunner' %}"
    " --project {{ params.project }} --region {{ params.region }}"
    " --temp_location {{ params.temp_location }}{% endif %}"
    "{% if params.extra_beam_args %} {{ params.extra_beam_args }}{% endif %}"
)
#: RunConfig values a run sets through the DAG's params (rendered into the worker flags).
WORKER_PARAMS = ("sdk_container_image", "gpu_container_image", "gpu_accelerator",
                 "gpu_machine_type")


def worker_flags(cfg: RunConfig, stage: str) -> str:
    """The stage's Dataflow worker flags (image, machine, accelerator, disk, experiments; see
    ``dags.graph.stage_workers``) with the run's params, for DataflowRunner runs only."""
    templated = dataclasses.replace(cfg, **{k: f"{{{{ params.{k} }}}}" for k in WORKER_PARAMS})
    flags = stage_workers(templated, is_gpu_stage(cfg, stage)).flags()
    return ("{% if params.runner == 'DataflowRunner' %} "
            + " ".join(shlex.quote(f) for f in flags) + "{% endif %}")


def parse_time_config() -> RunConfig:
    """Graph-shaping settings (not paths) from ``$LLARK_DAG_CONFIG``; paths become params."""
    values = {"demo_scale": "tiny", "train_overrides": ("max_steps=20",), "infer_limit": 4}
    path = os.environ.get("LLARK_DAG_CONFIG")
    if path:
        values.update(load_yaml(path))
    values.update(work_dir="{{ params.work_dir }}", data_dir="{{ params.data_dir }}")
    return from_dict(RunConfig, values, source=path or "llark_dag defaults")


def bash_command(cfg: RunConfig, stage: Stage) -> str:
    args = " ".join(shlex.quote(a) for a in stage.argv)
    if stage.name == "train":
        # `llark train ...` == `accelerate launch -m model.train ...` with the launcher's config
        rest = " ".join(shlex.quote(a) for a in stage.argv[1:])
        return f"cd {shlex.quote(str(REPO))} && {{{{ params.train_launcher }}}} -m model.train {rest}"
    cmd = f"cd {shlex.quote(str(REPO))} && {{{{ params.llark }}}} {args}"
    if stage.beam:
        cmd += " " + BEAM_FLAGS + worker_flags(cfg, stage.name)
    return cmd


def build_dag() -> DAG:
    cfg = parse_time_config()
    stages = build_graph(cfg)
    params = {
        "work_dir": Param(str(REPO / "airflow-out"), type="string",
                          description="where every stage writes (gs:// for Dataflow)"),
        "data_dir": Param(str(REPO / "airflow-out" / "data"), type="string",
                          description="datasets, one sub-folder each"),
        "runner": Param("DirectRunner", enum=["DirectRunner", "DataflowRunner", "FlinkRunner",
                                              "SparkRunner"]),
        "workers": Param(2, type="integer", minimum=1),
        "project": Param("", type="string"),
        "region": Param("", type="string"),
        "temp_location": Param("", type="string"),
        "sdk_container_image": Param("", type="string",
                                     description="CPU worker image (docker/Dockerfile.beam); "
                                                 "required for DataflowRunner"),
        "gpu_container_image": Param("", type="string",
                                     description="GPU worker image (docker/Dockerfile.embed-gpu)"
                                                 " for embed when encoder=jukebox"),
        "extra_beam_args": Param("", type="string",
                                 description="more Beam flags for every Beam stage, e.g. "
                                             "--network N --service_account_email E"),
        "gpu_accelerator": Param(cfg.gpu_accelerator, type="string"),
        "gpu_machine_type": Param(cfg.gpu_machine_type, type="string"),
        "llark": Param(str(REPO / ".venv" / "bin" / "llark"), type="string",
                       description="the llark CLI of the project environment"),
        "train_launcher": Param(f"{REPO / '.venv' / 'bin' / 'accelerate'} launch --num_processes 1",
                                type="string",
                                description="e.g. accelerate launch --config_file "
                                            "model/configs/accelerate/fsdp_8gpu.yaml"),
    }
    with DAG(dag_id=DAG_ID, schedule=None, catchup=False, params=params, tags=["llark"],
             doc_md=__doc__, max_active_tasks=4) as dag:
        tasks = {}
        for st in stages:
            operator = LlarkStageOperator if st.beam else BashOperator
            tasks[st.name] = operator(task_id=st.name, bash_command=bash_command(cfg, st),
                                      doc_md=st.what)
            for up in st.upstream:
                tasks[up] >> tasks[st.name]
    return dag


dag = build_dag()
