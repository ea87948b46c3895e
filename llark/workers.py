"""The Dataflow workers of one Beam stage, in one vocabulary for the stage graph (``llark run``,
the Airflow DAG), the launcher's checks and the dry run.

Standard library only: the Airflow DAG file imports it (through ``dags.graph``).
"""

from __future__ import annotations

from dataclasses import dataclass

ACCELERATOR_OPTION = "worker_accelerator="
"""The Dataflow service option (or experiment) that asks for GPUs on each worker VM."""
ONE_SDK_CONTAINER = "no_use_multiple_sdk_containers"
"""The Dataflow experiment that runs one SDK container per VM (not one per core): a GPU stage
then has one process that owns the GPU instead of one per core competing for it."""
IMAGES = {"cpu": "docker/Dockerfile.beam", "gpu": "docker/Dockerfile.embed-gpu"}
"""Where each worker image is built from."""


@dataclass(frozen=True)
class WorkerSettings:
    """The Dataflow workers one Beam stage asks for."""

    image: str
    """``--sdk_container_image`` (``""``: none given)."""
    machine_type: str = ""
    """``--machine_type`` (``""``: Dataflow's default)."""
    accelerator: str = ""
    """The ``worker_accelerator=`` service option's value (``""``: no GPU)."""
    disk_size_gb: int = 0
    """``--disk_size_gb`` (0: Dataflow's default)."""
    experiments: tuple[str, ...] = ()
    """``--experiments`` (besides an accelerator given as one)."""
    model_copies: int = 0
    """Model copies per worker VM the stage loads, shared by the VM's SDK processes (the
    stage's own ``--model-copies``, not a Beam flag); 0: none shared."""

    @property
    def gpu(self) -> bool:
        return bool(self.accelerator)

    def flags(self) -> tuple[str, ...]:
        """The Beam flags asking for these workers (``model_copies`` is the stage's flag)."""
        out = [f"--sdk_container_image={self.image}"]
        if self.accelerator:
            out.append(f"--dataflow_service_options={ACCELERATOR_OPTION}{self.accelerator}")
        if self.machine_type:
            out.append(f"--machine_type={self.machine_type}")
        if self.disk_size_gb:
            out.append(f"--disk_size_gb={self.disk_size_gb}")
        out += [f"--experiments={e}" for e in self.experiments]
        return tuple(out)

    def describe(self) -> str:
        """One line: image, machine type, accelerator, disk, model copies, experiments."""
        copies = f"{self.model_copies} per VM" if self.model_copies else "not shared"
        disk = f"{self.disk_size_gb} GB" if self.disk_size_gb else "Dataflow default"
        return (f"image {self.image or '(none)'}; machine type "
                f"{self.machine_type or 'Dataflow default'}; accelerator "
                f"{self.accelerator or 'none'}; disk {disk}; model copies {copies}; "
                f"experiments {','.join(self.experiments) or 'none'}")


def missing_image_message(stage: str, settings: WorkerSettings) -> str:
    """Why a Dataflow stage without a worker image is refused, and what to do."""
    kind = "gpu" if settings.gpu else "cpu"
    what = (f"a GPU stage (accelerator {settings.accelerator}) needs the GPU worker image"
            if settings.gpu else "its workers need llark's CPU worker image")
    return (f"[{stage}] DataflowRunner without a worker image (--sdk_container_image): {what}, "
            f"built from {IMAGES[kind]} and pushed where the workers can pull it. Beam's "
            "default image has neither llark nor its dependencies: every bundle would fail on "
            "import after the VMs started. See docs/design.md, 'Running on Dataflow'")
