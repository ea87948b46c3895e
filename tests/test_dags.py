"""The stage graph, the local runner's plan, and the Airflow DAG built from the same graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dags.graph import RunConfig, beam_flags, build_graph, check_graph, edges, Stage
from llark.config import from_dict
from llark.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_PY = REPO / ".venv-airflow" / "bin" / "python"


def test_graph_order_and_edges():
    stages = build_graph(RunConfig())
    names = [s.name for s in stages]
    assert names[0] == "demo_data" and names[-1] == "report"
    e = edges(stages)
    for ds in ("musiccaps", "magnatagatune", "fma", "musicnet", "folder"):
        assert ("demo_data", f"ingest_{ds}") in e
        assert (f"ingest_{ds}", "annotate") in e and (f"ingest_{ds}", "embed") in e
    assert {("annotate", "instruct"), ("instruct", "shards"), ("embed", "shards"),
            ("shards", "train"), ("train", "infer"), ("infer", "eval")} <= e
    annotate = next(s for s in stages if s.name == "annotate")
    assert annotate.argv[2].count(",") == 4  # reads every dataset's clips
    assert annotate.marker.endswith("annotations/_index.json")


def test_graph_follows_config():
    cfg = from_dict(RunConfig, {"demo": False, "datasets": "fma,musicnet", "encoder": "jukebox",
                                "checkpoint_dir": "/w", "runner": "DataflowRunner",
                                "project": "p", "region": "r", "temp_location": "gs://b/t",
                                "work_dir": "gs://b/w", "data_dir": "gs://b/d",
                                "sdk_container_image": "cpu:1", "gpu_container_image": "gpu:1"})
    stages = {s.name: s for s in build_graph(cfg)}
    assert "demo_data" not in stages and set(stages) >= {"ingest_fma", "ingest_musicnet"}
    assert "--checkpoint-dir" in stages["embed"].argv
    assert any("worker_accelerator" in f for f in stages["embed"].extra_beam)
    # a worker image per stage: the GPU one, one SDK container and a disk for the jukebox embed
    assert "--sdk_container_image=gpu:1" in stages["embed"].extra_beam
    assert "--experiments=no_use_multiple_sdk_containers" in stages["embed"].extra_beam
    assert "--disk_size_gb=100" in stages["embed"].extra_beam
    assert stages["embed"].argv[-2:] == ("--model-copies", "1")
    for name in ("ingest_fma", "annotate", "instruct", "shards"):
        assert stages[name].extra_beam == ("--sdk_container_image=cpu:1",), name
    assert stages["ingest_fma"].argv[-1] == "gs://b/w/clips/fma"
    flags = beam_flags(cfg)
    assert flags[:2] == ["--runner", "DataflowRunner"] and "--temp_location" in flags


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown dataset"):
        RunConfig(datasets=("spotify",))
    with pytest.raises(ConfigError, match="DataflowRunner needs"):
        RunConfig(runner="DataflowRunner")
    cloud = dict(runner="DataflowRunner", project="p", region="r", temp_location="gs://b/t")
    with pytest.raises(ConfigError, match=r"\[ingest\] DataflowRunner without a worker image"):
        RunConfig(**cloud)
    with pytest.raises(ConfigError, match=r"\[embed\] .*GPU worker image"):
        RunConfig(**cloud, sdk_container_image="cpu:1", encoder="jukebox")
    with pytest.raises(ConfigError, match="defined before"):
        check_graph([Stage("b", (), ("a",), "o", False, "")])


def test_local_runner_skips_complete_stages(tmp_path):
    work = tmp_path / "w"
    # mark everything complete except the report: the plan must only run the report
    for st in build_graph(RunConfig(work_dir=str(work), data_dir=str(work / "data"))):
        if st.name != "report":
            Path(st.output).mkdir(parents=True, exist_ok=True)
            Path(st.marker).write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "dags.local", "--dry-run", "--work-dir", str(work),
                           "--data-dir", str(work / "data")], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("complete, skipped") == 13
    assert "report: would run: llark inspect" in proc.stdout


@pytest.mark.skipif(not AIRFLOW_PY.exists(), reason="no Airflow environment (make airflow-venv)")
def test_airflow_dagbag_imports_and_matches_the_graph(tmp_path):
    script = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"b = DagBag(dag_folder={str(REPO / 'dags' / 'llark_dag.py')!r})\n"
        "d = b.dags.get('llark')\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()},\n"
        "  'edges': sorted([u, t.task_id] for t in (d.tasks if d else []) for u in t.upstream_task_ids),\n"
        "  'params': sorted(d.params.keys()) if d else []}))\n")
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    proc = subprocess.run([str(AIRFLOW_PY), "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["errors"] == {}
    expected = sorted([u, v] for u, v in edges(build_graph(RunConfig(demo_scale="tiny"))))
    assert got["edges"] == expected
    assert {"runner", "project", "region", "work_dir", "data_dir", "sdk_container_image",
            "gpu_container_image", "extra_beam_args"} <= set(got["params"])


@pytest.mark.skipif(not AIRFLOW_PY.exists(), reason="no Airflow environment (make airflow-venv)")
def test_airflow_embed_task_gets_the_gpu_workers_and_beam_tasks_cancel_on_kill(tmp_path):
    """With encoder=jukebox the DAG's embed command, rendered for DataflowRunner, asks for the
    GPU image, machine, accelerator, one SDK container and a disk, and one model per VM; the
    other Beam stages get the CPU image; every Beam task is the cancelling operator."""
    config = tmp_path / "dag.yaml"
    config.write_text("encoder: jukebox\ndemo: false\ndatasets: [fma]\n")
    script = (
        "import json, shlex, jinja2\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"b = DagBag(dag_folder={str(REPO / 'dags' / 'llark_dag.py')!r})\n"
        "d = b.dags['llark']\n"
        "p = dict(d.params.dump(), runner='DataflowRunner', project='p', region='r',\n"
        "         temp_location='gs://b/t', sdk_container_image='cpu:1',\n"
        "         gpu_container_image='gpu:1', llark='llark')\n"
        "print(json.dumps({t.task_id: [type(t).__name__, shlex.split(jinja2.Template(\n"
        "    t.bash_command).render(params=p).split('&&', 1)[1])] for t in d.tasks}))\n")
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", LLARK_DAG_CONFIG=str(config))
    proc = subprocess.run([str(AIRFLOW_PY), "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = json.loads(proc.stdout.strip().splitlines()[-1])
    kind, embed = tasks["embed"]
    assert kind == "LlarkStageOperator"
    assert embed[embed.index("--encoder") + 1] == "jukebox"
    assert embed[embed.index("--model-copies") + 1] == "1"
    assert {"--sdk_container_image=gpu:1", "--machine_type=g2-standard-8",
            "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;"
            "install-nvidia-driver", "--experiments=no_use_multiple_sdk_containers",
            "--disk_size_gb=100"} <= set(embed)
    for name in ("ingest_fma", "annotate", "instruct", "shards"):
        kind, argv = tasks[name]
        assert kind == "LlarkStageOperator", name
        assert [a for a in argv if a.startswith("--sdk_container_image")] == \
            ["--sdk_container_image=cpu:1"], name
        assert not [a for a in argv if "worker_accelerator" in a], name
    assert tasks["train"][0] == "BashOperator"


@pytest.mark.slow
@pytest.mark.skipif(not AIRFLOW_PY.exists(), reason="no Airflow environment (make airflow-venv)")
def test_airflow_dags_test_runs_the_demo_dag(tmp_path):
    """`airflow dags test llark` on the tiny demo: every task succeeds, the report is written."""
    airflow = AIRFLOW_PY.parent / "airflow"
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"))
    env.pop("LLARK_DAG_CONFIG", None)
    migrate = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    work = tmp_path / "work"
    conf = json.dumps({"work_dir": str(work), "data_dir": str(work / "data"), "workers": 2})
    proc = subprocess.run([str(airflow), "dags", "test", "llark", "--conf", conf], env=env,
                          capture_output=True, text=True, timeout=1800, cwd=REPO)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "DagRun failed" not in log, log[-5000:]
    for stage in build_graph(RunConfig(demo_scale="tiny")):
        if stage.beam:
            assert (work / Path(stage.output).relative_to("demo-out") / "_index.json").exists(), stage.name
    assert (work / "eval" / "metrics.json").exists()
    assert (work / "report" / "report.html").exists()
