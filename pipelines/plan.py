"""Task plans: the launcher's list of work, written as files the workers read (not shipped
inside the pipeline graph).

``beam.Create(tasks)`` pickles every task into the job description, so the graph grows with the
data (FMA full: 106,574 tracks → tens of MB, over Dataflow's request limit). Instead the
launcher writes the tasks as JSON lines under ``{staging}/plan/`` and the pipeline reads them
with ``ReadFromText``, a splittable source: the graph holds one file pattern whatever the size
of the dataset, and the runner splits the plan files across workers. The plan lives in the
stage's staging folder, so the commit removes it with the rest of the staging files.

A plan line is ``{"kind": <one of PLAN_KINDS>, ...the dataclass' fields...}``; tuples travel
as JSON lists and come back as tuples.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.datasets.common import BadRow, SkippedFile, TrackTask

PLAN_DIR = "plan"
#: One plan file per this many tasks (each file is split further by the runner).
TASKS_PER_FILE = 25_000
#: The record types a plan holds, by the name written in each line's ``kind``.
PLAN_KINDS: dict[str, type] = {"task": TrackTask, "bad_row": BadRow, "skipped_file": SkippedFile}
_KIND_OF = {cls: kind for kind, cls in PLAN_KINDS.items()}


@dataclass(frozen=True)
class PlanSummary:
    """What the launcher wrote: the plan's file pattern and what it holds."""

    pattern: str
    inputs: int          # tasks + bad rows (each ends as clips or a dead letter)
    bad_rows: int        # rows the readers already knew to be unusable
    skipped_files: int   # files listed that are not inputs (each ends as a skip note)
    files: int           # plan files written


PlanItem = TrackTask | BadRow | SkippedFile


def plan_line(item: PlanItem) -> str:
    """One plan line for a task or a rejected row."""
    row = {"kind": _KIND_OF[type(item)]}
    row.update(dataclasses.asdict(item))
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def parse_plan_line(line: str) -> PlanItem:
    """The inverse of :func:`plan_line`."""
    row: dict[str, Any] = json.loads(line)
    cls = PLAN_KINDS[row.pop("kind")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()})


def write_plan(items: Iterable[PlanItem], staging: str,
               per_file: int = TASKS_PER_FILE) -> PlanSummary:
    """Stream ``items`` into ``{staging}/plan/tasks-NNNNN.jsonl`` files (through Beam's
    filesystems, so the plan can live on a bucket)."""
    folder = FileSystems.join(staging, PLAN_DIR)
    written = inputs = bad = skipped = files = 0
    stream = None
    try:
        for item in items:
            if written % per_file == 0:
                if stream is not None:
                    stream.close()
                stream = FileSystems.create(FileSystems.join(folder, f"tasks-{files:05d}.jsonl"))
                files += 1
            stream.write((plan_line(item) + "\n").encode("utf-8"))
            written += 1
            skipped += isinstance(item, SkippedFile)
            inputs += not isinstance(item, SkippedFile)
            bad += isinstance(item, BadRow)
    finally:
        if stream is not None:
            stream.close()
    return PlanSummary(FileSystems.join(folder, "tasks-*.jsonl"), inputs, bad, skipped, files)


def read_plan(pipeline: beam.Pipeline, plan: PlanSummary, label: str = "Plan"
              ) -> beam.PCollection:
    """The plan's tasks, spread over the workers (an empty plan reads as no elements)."""
    if plan.files == 0:
        return pipeline | f"{label}:Empty" >> beam.Create([])
    return (pipeline | f"{label}:Read" >> beam.io.ReadFromText(plan.pattern)
            | f"{label}:Parse" >> beam.Map(parse_plan_line)
            | f"{label}:Spread" >> beam.Reshuffle())
