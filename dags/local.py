"""``llark run``: the stage graph, locally, in dependency order.

Stages whose output is complete are skipped; an interrupted Beam stage is redone cleanly by the
stage itself (it removes what the interrupted run left before writing); training resumes from
its latest checkpoint. Each stage runs as ``python -m pipelines.cli <stage> ...`` in a child
process, so a crash in one stage cannot corrupt the runner's state. Ends with a table of every
stage and where its output is.

``work_dir`` and ``data_dir`` may be ``gs://``/``s3://`` prefixes: completion markers are read
and written there through :mod:`llark.storage`, and each stage's log, written locally while it
runs, is copied to ``{work_dir}/_logs/`` afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llark import storage
from llark.config import add_arguments, from_args
from dags.graph import DONE_FILE, RunConfig, Stage, beam_flags, build_graph


def is_complete(stage: Stage) -> bool:
    """The stage's marker (index or done file) exists: locally or on the bucket."""
    return storage.is_file(stage.marker)


LOG_DIR = "_logs"


def local_log_dir(work_dir: str) -> Path:
    """``{work_dir}/_logs``; for a bucket work dir a local folder (the logs are copied to
    ``{work_dir}/_logs/`` after each stage)."""
    if not storage.is_remote(work_dir):
        return Path(work_dir) / LOG_DIR
    safe = work_dir.replace("://", "/").replace("/", "_").strip("_")
    return Path(tempfile.gettempdir()) / "llark-logs" / safe


def command(stage: Stage, cfg: RunConfig) -> list[str]:
    argv = [sys.executable, "-m", "pipelines.cli", *stage.argv]
    if stage.beam:
        argv += beam_flags(cfg) + list(stage.extra_beam)
    return argv


def run_stage(stage: Stage, cfg: RunConfig, n: int, total: int, log_dir: Path) -> float:
    """Run one stage, streaming its output to the terminal and to ``log_dir/<stage>.log``."""
    argv = command(stage, cfg)
    storage.makedirs(stage.output)
    print(f"[{n}/{total}] {stage.name}: {stage.what}", flush=True)
    print("      $ llark " + " ".join(stage.argv), flush=True)
    t0 = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{stage.name}.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if _worth_showing(line):
                print("      " + line.rstrip(), flush=True)
        rc = proc.wait()
    seconds = time.monotonic() - t0
    log_path = log_dir / f"{stage.name}.log"
    if storage.is_remote(cfg.work_dir):
        # the log is written locally as the stage runs, then copied beside the outputs
        storage.write_bytes(storage.join(cfg.work_dir, LOG_DIR, log_path.name),
                            log_path.read_bytes())
    if rc != 0:
        raise RuntimeError(f"stage {stage.name} failed (exit {rc}) after {seconds:.1f}s; "
                           f"full log: {log_path}")
    if not stage.beam:
        # the done marker is written last, as one object: the stage's outputs are all in place
        storage.makedirs(stage.output)
        storage.write_text(storage.join(stage.output, DONE_FILE), json.dumps({
            "stage": stage.name, "argv": list(stage.argv), "seconds": round(seconds, 2),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))
    print(f"      done in {seconds:.1f}s", flush=True)
    return seconds


def _worth_showing(line: str) -> bool:
    """Stage summaries and errors, not Beam's INFO chatter."""
    text = line.strip()
    if not text or text.startswith(("INFO", "WARNING:", "DEBUG")):
        return False
    return True


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llark run", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--config", help="YAML file with RunConfig keys")
    parser.add_argument("--only", help="run just these stages (comma-separated) and what they need")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the plan (with each Beam stage's Dataflow workers when "
                             "runner=DataflowRunner), run nothing")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of RunConfig")
    add_arguments(parser, RunConfig)
    args = parser.parse_args(argv)
    cfg = from_args(RunConfig, args, args.config, args.overrides)
    stages = build_graph(cfg)
    if args.only:
        stages = _with_upstream(stages, set(args.only.split(",")))
    log_dir = local_log_dir(cfg.work_dir)
    timings: dict[str, str] = {}
    t0 = time.monotonic()
    for n, stage in enumerate(stages, 1):
        if is_complete(stage):
            print(f"[{n}/{len(stages)}] {stage.name}: complete, skipped ({stage.output})")
            timings[stage.name] = "skipped"
            continue
        if args.dry_run:
            print(f"[{n}/{len(stages)}] {stage.name}: would run: llark {' '.join(stage.argv)}")
            if stage.workers is not None:
                print(f"      workers: {stage.workers.describe()}")
            timings[stage.name] = "planned"
            continue
        try:
            timings[stage.name] = f"{run_stage(stage, cfg, n, len(stages), log_dir):.1f}s"
        except RuntimeError as exc:
            print(f"\nllark run: {exc}", file=sys.stderr)
            return 1
    print(f"\nllark run finished in {time.monotonic() - t0:.0f}s. Outputs:")
    width = max(len(s.name) for s in stages)
    for stage in stages:
        print(f"  {stage.name:<{width}}  {timings[stage.name]:>8}  {stage.output}")
    return 0


def _with_upstream(stages: list[Stage], wanted: set[str]) -> list[Stage]:
    by_name = {s.name: s for s in stages}
    unknown = wanted - set(by_name)
    if unknown:
        raise SystemExit(f"llark run: unknown stage(s) {sorted(unknown)}; "
                         f"stages: {', '.join(by_name)}")
    keep: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(by_name[name].upstream)
    return [s for s in stages if s.name in keep]


if __name__ == "__main__":
    raise SystemExit(run())
