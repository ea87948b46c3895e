"""The stage graph, defined once: what runs, in which order, reading and writing where.

Both the local runner (``llark run``, :mod:`dags.local`) and the Airflow DAG
(``dags/llark_dag.py``) are built from :func:`build_graph`. A stage is a ``llark`` subcommand
with its arguments, the stages it depends on, and the folder it writes. Beam stages take the
runner flags on top; a stage is complete when its output holds ``_index.json`` (Beam stages
write it last) or ``_llark_done.json`` (written by the runner after a non-Beam stage succeeds).

This module is imported by the Airflow DAG file, so it imports nothing heavy: only the standard
library, :mod:`llark.config` and :mod:`llark.workers`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from llark.config import doc
from llark.errors import ConfigError
from llark.workers import ONE_SDK_CONTAINER, WorkerSettings, missing_image_message

ALL_DATASETS = ("musiccaps", "magnatagatune", "fma", "musicnet", "folder")
DONE_FILE = "_llark_done.json"
INDEX_FILE = "_index.json"


@dataclass(frozen=True)
class RunConfig:
    """Everything the whole run needs; YAML (``llark run --config``) or ``key=value`` sets it."""

    work_dir: str = doc("folder, or gs:// / s3:// prefix, where every stage writes",
                        default="demo-out")
    data_dir: str = doc("folder (or gs:// / s3:// prefix) holding one sub-folder per dataset, "
                        "laid out as each dataset ships (the demo corpus is generated here "
                        "when demo=true)",
                        default="demo-out/data")
    demo: bool = doc("generate the synthetic demo corpus into data_dir first", default=True)
    demo_scale: str = doc("demo corpus size: tiny (2 tracks per dataset) or small (~6)",
                          default="small")
    datasets: tuple[str, ...] = doc("datasets to ingest (sub-folders of data_dir)",
                                    default=ALL_DATASETS)
    runner: str = doc("Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner",
                      default="DirectRunner")
    workers: int = doc("DirectRunner worker processes (0 = one per core)", default=0)
    project: str = doc("cloud project (DataflowRunner)", default="")
    region: str = doc("cloud region (DataflowRunner)", default="")
    temp_location: str = doc("gs:// temp location (DataflowRunner)", default="")
    sdk_container_image: str = doc("CPU worker image, built from docker/Dockerfile.beam, for "
                                   "every Beam stage but a jukebox embed (DataflowRunner; "
                                   "required there)", default="")
    gpu_container_image: str = doc("GPU worker image, built from docker/Dockerfile.embed-gpu, "
                                   "for the embed stage when encoder=jukebox (DataflowRunner; "
                                   "required there)", default="")
    gpu_accelerator: str = doc("Dataflow accelerator for the embed stage when encoder=jukebox",
                               default="type:nvidia-l4;count:1;install-nvidia-driver")
    gpu_machine_type: str = doc("Dataflow machine type for GPU embed workers",
                                default="g2-standard-8")
    gpu_model_copies: int = doc("Jukebox copies per GPU worker VM, shared by its SDK processes "
                                "(embed --model-copies; 1: one 5B model on one 24 GB L4)",
                                default=1)
    gpu_disk_size_gb: int = doc("disk of each GPU embed worker (GB): the GPU image (~10 GB) and "
                                "the Jukebox weights copied once per VM (~10 GB)", default=100)
    disk_size_gb: int = doc("disk of each CPU worker (GB; 0: Dataflow's default)", default=0)
    annotate_backend: str = doc("consensus, madmom or essentia", default="consensus")
    llm: str = doc("instruction backend: template (offline) or openai", default="template")
    llm_base_url: str = doc("OpenAI-compatible server URL for llm=openai", default="")
    llm_model: str = doc("model name for llm=openai", default="")
    families: tuple[str, ...] = doc("instruction families", default=("mir", "caption", "reasoning"))
    encoder: str = doc("audio encoder: features (CPU) or jukebox (GPU)", default="features")
    checkpoint_dir: str = doc("Jukebox weights folder for encoder=jukebox", default="")
    train_config: str = doc("trainer config: tiny, paper, or a YAML path", default="tiny")
    train_overrides: tuple[str, ...] = doc("trainer key=value overrides",
                                           default=("max_steps=600",))
    infer_limit: int = doc("clips to run inference on after training", default=8)

    def __post_init__(self) -> None:
        unknown = set(self.datasets) - set(ALL_DATASETS)
        if unknown:
            raise ConfigError(f"unknown dataset(s) {sorted(unknown)}; known: {ALL_DATASETS}")
        if not self.datasets:
            raise ConfigError("datasets is empty")
        if self.runner == "DataflowRunner" and not (self.project and self.region
                                                     and self.temp_location):
            raise ConfigError("DataflowRunner needs project, region and temp_location")
        if self.llm not in ("template", "openai"):
            raise ConfigError(f"llm must be template or openai, got {self.llm!r}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.gpu_model_copies < 1:
            raise ConfigError(f"gpu_model_copies must be >= 1, got {self.gpu_model_copies}")
        if self.gpu_disk_size_gb < 0 or self.disk_size_gb < 0:
            raise ConfigError("gpu_disk_size_gb and disk_size_gb must be >= 0")
        if self.runner == "DataflowRunner":
            # the launcher refuses a stage without an image too; here the whole plan is refused
            # before its first stage runs
            for stage in ("ingest", "embed") if self.encoder == "jukebox" else ("ingest",):
                settings = stage_workers(self, gpu=stage == "embed")
                if not settings.image:
                    key = "gpu_container_image" if settings.gpu else "sdk_container_image"
                    raise ConfigError(f"{missing_image_message(stage, settings)} (RunConfig "
                                      f"key {key})")


@dataclass(frozen=True)
class Stage:
    """One node of the graph: ``llark <argv...>`` writing ``output`` after ``upstream``."""

    name: str
    argv: tuple[str, ...]
    upstream: tuple[str, ...]
    output: str
    beam: bool          # takes the runner flags
    what: str           # one line for progress output
    workers: WorkerSettings | None = None   # Dataflow workers of this stage (DataflowRunner)

    @property
    def marker(self) -> str:
        return f"{self.output}/{INDEX_FILE if self.beam else DONE_FILE}"

    @property
    def extra_beam(self) -> tuple[str, ...]:
        """Runner flags for this stage only (its Dataflow workers)."""
        return self.workers.flags() if self.workers is not None else ()


def is_gpu_stage(cfg: RunConfig, name: str) -> bool:
    """The embed stage with the Jukebox encoder runs on GPU workers."""
    return name == "embed" and cfg.encoder == "jukebox"


def stage_workers(cfg: RunConfig, gpu: bool) -> WorkerSettings:
    """The Dataflow workers of a CPU stage or of the GPU embed stage (one SDK container per
    VM, one shared model copy per VM, a disk for the image and the weights)."""
    if gpu:
        return WorkerSettings(cfg.gpu_container_image, cfg.gpu_machine_type, cfg.gpu_accelerator,
                              cfg.gpu_disk_size_gb, (ONE_SDK_CONTAINER,), cfg.gpu_model_copies)
    return WorkerSettings(cfg.sdk_container_image, disk_size_gb=cfg.disk_size_gb)


def paths(cfg: RunConfig) -> dict[str, str]:
    w = cfg.work_dir.rstrip("/")
    return {
        "data": cfg.data_dir.rstrip("/"),
        "clips": f"{w}/clips",
        "annotations": f"{w}/annotations",
        "instructions": f"{w}/instructions",
        "embeddings": f"{w}/embeddings",
        "shards": f"{w}/shards",
        "train": f"{w}/train",
        "infer": f"{w}/infer",
        "eval": f"{w}/eval",
        "report": f"{w}/report",
    }


def build_graph(cfg: RunConfig) -> list[Stage]:
    """The stages in a valid execution order (each after everything it depends on)."""
    p = paths(cfg)
    stages: list[Stage] = []
    first: tuple[str, ...] = ()
    if cfg.demo:
        stages.append(Stage("demo_data", ("demo-data", "--output", p["data"],
                                          "--scale", cfg.demo_scale),
                            (), p["data"], False, "synthesize the demo corpus"))
        first = ("demo_data",)
    clip_dirs = []
    for ds in cfg.datasets:
        out = f"{p['clips']}/{ds}"
        clip_dirs.append(out)
        stages.append(Stage(f"ingest_{ds}", ("ingest", "--dataset", ds, "--data-dir",
                                             f"{p['data']}/{ds}", "--output", out),
                            first, out, True, f"ingest {ds}"))
    ingests = tuple(f"ingest_{ds}" for ds in cfg.datasets)
    clips = ",".join(clip_dirs)
    stages.append(Stage("annotate", ("annotate", "--input", clips, "--output", p["annotations"],
                                     "--backend", cfg.annotate_backend),
                        ingests, p["annotations"], True, "tempo, beats, key, chords"))
    instruct = ["instruct", "--input", p["annotations"], "--output", p["instructions"],
                "--llm", cfg.llm, "--families", ",".join(cfg.families)]
    if cfg.llm == "openai":
        instruct += ["--base-url", cfg.llm_base_url, "--model", cfg.llm_model]
    stages.append(Stage("instruct", tuple(instruct), ("annotate",), p["instructions"], True,
                        f"instruction data ({cfg.llm})"))
    embed = ["embed", "--input", clips, "--output", p["embeddings"], "--encoder", cfg.encoder]
    if cfg.checkpoint_dir:
        embed += ["--checkpoint-dir", cfg.checkpoint_dir]
    if is_gpu_stage(cfg, "embed"):
        embed += ["--model-copies", str(cfg.gpu_model_copies)]
    stages.append(Stage("embed", tuple(embed), ingests, p["embeddings"], True,
                        f"audio embeddings ({cfg.encoder})"))
    stages.append(Stage("shards", ("shards", "--clips", clips, "--annotations", p["annotations"],
                                   "--instructions", p["instructions"], "--embeddings",
                                   p["embeddings"], "--output", p["shards"]),
                        ("instruct", "embed"), p["shards"], True, "training shards"))
    stages.append(Stage("train", ("train", "--shards", p["shards"], "--output", p["train"],
                                  "--config", cfg.train_config, *cfg.train_overrides),
                        ("shards",), p["train"], False, f"train ({cfg.train_config})"))
    stages.append(Stage("infer", ("infer", "--checkpoint", p["train"], "--shards", p["shards"],
                                  "--output", f"{p['infer']}/predictions.jsonl",
                                  "--split", "test", "--split", "eval",
                                  "--limit", str(cfg.infer_limit)),
                        ("train",), p["infer"], False, "generate answers"))
    stages.append(Stage("eval", ("eval", "--predictions", f"{p['infer']}/predictions.jsonl",
                                 "--output", p["eval"]),
                        ("infer",), p["eval"], False, "paper metrics"))
    stages.append(Stage("report", ("inspect", cfg.work_dir, "--report",
                                   f"{p['report']}/report.html"),
                        ("eval",), p["report"], False, "HTML report"))
    if cfg.runner == "DataflowRunner":
        stages = [dataclasses.replace(st, workers=stage_workers(cfg, is_gpu_stage(cfg, st.name)))
                  if st.beam else st for st in stages]
    check_graph(stages)
    return stages


def check_graph(stages: list[Stage]) -> None:
    """Names unique, every upstream exists and comes earlier (so the order is topological)."""
    seen: set[str] = set()
    for st in stages:
        if st.name in seen:
            raise ConfigError(f"stage {st.name!r} defined twice")
        missing = [u for u in st.upstream if u not in seen]
        if missing:
            raise ConfigError(f"stage {st.name!r} depends on {missing}, not defined before it")
        seen.add(st.name)


def edges(stages: list[Stage]) -> set[tuple[str, str]]:
    return {(u, st.name) for st in stages for u in st.upstream}


def beam_flags(cfg: RunConfig) -> list[str]:
    """Runner flags appended to every Beam stage."""
    flags = ["--runner", cfg.runner]
    if cfg.runner == "DirectRunner":
        flags += ["--direct_running_mode", "multi_processing",
                  "--direct_num_workers", str(cfg.workers or os.cpu_count() or 1)]
    elif cfg.runner == "DataflowRunner":
        # the worker image and settings are each stage's own (Stage.workers)
        flags += ["--project", cfg.project, "--region", cfg.region,
                  "--temp_location", cfg.temp_location]
    return flags
