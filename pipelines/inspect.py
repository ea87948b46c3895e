"""``llark inspect DIR``: what a stage built, at a glance.

Works on the output of any stage (a folder with ``_index.json``) or on a folder of them (for
example ``demo-out/`` after ``make demo``). Prints per set: record type, schema version, rows,
rows per dataset and split (and per family / encoder where the records have them), skipped
records by reason with the first names of each (from the skip manifest ``_skipped/``; bounded by
``--skipped-names``), dead letters by error type with one example message, and a sample record.
A set whose stage refused to commit (``_index.rejected.json``, too many dead letters) is shown
as REJECTED with its counts, its dead letters and the flag that would let it commit.
``--report FILE.html`` writes the HTML report with plots (see :mod:`pipelines.report`).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from llark import storage
from pipelines.schema import DEAD_LETTER_DIR, INDEX_FILE, SKIPPED_DIR, DeadLetter, ShardIndex
from pipelines.stage import REJECTED_INDEX_FILE, percent

GROUP_COLUMNS = ("dataset", "split", "family", "encoder", "backend")
SAMPLE_TEXT_LIMIT = 160
#: Names shown per skip reason unless ``--skipped-names`` says otherwise.
SKIPPED_NAMES = 5
#: Bytes read at a time from a skip manifest (it is streamed, never read whole).
READ_CHUNK = 1 << 20


@dataclass
class SetSummary:
    """What ``inspect`` found in one shard set."""

    path: Path | str                      # a str for a gs:// or s3:// set
    index: ShardIndex | None
    rows: int = 0
    groups: dict[str, Counter] = field(default_factory=dict)
    dead_letters: Counter = field(default_factory=Counter)
    dead_examples: dict[str, DeadLetter] = field(default_factory=dict)
    sample: dict[str, Any] | None = None
    schema: str = ""
    problem: str = ""
    rejected: ShardIndex | None = None    # the index of a run that refused to commit
    advice: tuple[str, ...] = ()          # what to do about ``problem``
    # per skip reason: the smallest ``skipped_names`` record / file names of the skip manifest,
    # and how many names the manifest holds
    skipped_names: dict[str, list[str]] = field(default_factory=dict)
    skipped_listed: Counter = field(default_factory=Counter)


def find_sets(root: Path | str) -> list[Path | str]:
    """Every folder at or under ``root`` that holds an index (or a rejected run's) or Parquet
    parts (not staging). ``root`` may be a ``gs://``/``s3://`` prefix (one listing of it)."""
    base = os.fspath(root).rstrip("/")
    found = set()
    for url in storage.list_files(base):
        folder, _, name = url[len(base):].lstrip("/").rpartition("/")
        if any(part.startswith("_") for part in folder.split("/") if part):
            continue
        if name in (INDEX_FILE, REJECTED_INDEX_FILE) or fnmatch(name, "part-*.parquet"):
            found.add(folder)
    as_path = (lambda f: storage.join(base, f) if f else base) if storage.is_remote(base) \
        else (lambda f: Path(root) / f if f else Path(root))
    return [as_path(f) for f in sorted(found)]


def _shorten(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > SAMPLE_TEXT_LIMIT:
        return value[:SAMPLE_TEXT_LIMIT] + "…"
    if isinstance(value, list):
        if len(value) > 4:
            return [_shorten(v) for v in value[:3]] + [f"… {len(value) - 3} more"]
        return [_shorten(v) for v in value]
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    return value


def iter_lines(path: Path | str) -> Any:
    """Non-empty lines of a (possibly remote) text file, read :data:`READ_CHUNK` at a time."""
    rest = b""
    with storage.open_input(path) as f:
        while block := f.read(READ_CHUNK):
            *lines, rest = (rest + block).split(b"\n")
            yield from (line.decode("utf-8") for line in lines if line.strip())
    if rest.strip():
        yield rest.decode("utf-8")


def skipped_names(path: Path | str, limit: int) -> tuple[dict[str, list[str]], Counter]:
    """From the skip manifests under ``{path}/_skipped/``: per reason, the ``limit`` smallest
    names (streamed; memory bounded by ``limit`` per reason) and how many names there are."""
    names: dict[str, list[str]] = {}
    listed: Counter = Counter()
    for manifest in storage.list_files(storage.join(path, SKIPPED_DIR), "*.jsonl"):
        for line in iter_lines(manifest):
            note = json.loads(line)
            reason, name = str(note["reason"]), str(note["id"])
            listed[reason] += 1
            kept = names.setdefault(reason, [])
            if limit > 0 and (len(kept) < limit or name < kept[-1]):
                bisect.insort(kept, name)
                del kept[limit:]
    return names, listed


def summarize(path: Path | str, skipped_limit: int = SKIPPED_NAMES) -> SetSummary:
    """One set's summary; ``path`` may be local or a ``gs://``/``s3://`` prefix (Parquet is read
    through range requests: footers, and only the grouping columns and one row group; the skip
    manifest is streamed, keeping ``skipped_limit`` names per reason)."""
    index = None
    summary = SetSummary(path, None)
    if storage.is_file(storage.join(path, INDEX_FILE)):
        index = ShardIndex.from_json(storage.read_text(storage.join(path, INDEX_FILE)))
        summary.index = index
    elif storage.is_file(storage.join(path, REJECTED_INDEX_FILE)):
        summary.rejected = ShardIndex.from_json(
            storage.read_text(storage.join(path, REJECTED_INDEX_FILE)))
        summary.problem, summary.advice = rejected_problem(summary.rejected, path)
    else:
        summary.problem = f"no {INDEX_FILE}: incomplete (the stage did not finish)"
        summary.advice = ("rerun the stage with the same flags: it cleans what the unfinished "
                          "run left and starts again",)
    parts = storage.list_files(path, "part-*.parquet", recursive=False)
    for part in parts:
        pf = pq.ParquetFile(storage.open_input(part))
        if not summary.schema:
            summary.schema = str(pf.schema_arrow)
        summary.rows += pf.metadata.num_rows
        cols = [c for c in GROUP_COLUMNS if c in pf.schema_arrow.names]
        if cols and pf.metadata.num_rows:
            table = pf.read(columns=cols)
            for c in cols:
                summary.groups.setdefault(c, Counter()).update(table.column(c).to_pylist())
        if summary.sample is None and pf.metadata.num_rows:
            row = pf.read_row_group(0).slice(0, 1).to_pylist()[0]
            summary.sample = _shorten(row)
    for dl in storage.list_files(storage.join(path, DEAD_LETTER_DIR), "*.jsonl"):
        for line in storage.read_text(dl).splitlines():
            if line.strip():
                d = DeadLetter.from_json(line)
                summary.dead_letters[d.error_type] += 1
                summary.dead_examples.setdefault(d.error_type, d)
    summary.skipped_names, summary.skipped_listed = skipped_names(path, skipped_limit)
    return summary


def rejected_problem(idx: ShardIndex, path: Path | str) -> tuple[str, tuple[str, ...]]:
    """What a rejected run's index says went wrong, and what to do about it."""
    inputs = int(idx.counts.get("inputs", 0) or 0)
    dead = sum(idx.dead_letters.values())
    unaccounted = int(idx.counts.get("unaccounted", 0) or 0)
    command = f"llark {idx.stage}"
    if unaccounted:
        return (f"REJECTED (no {INDEX_FILE}; see {REJECTED_INDEX_FILE}): {unaccounted} input(s) "
                "were neither written, skipped nor dead-lettered",
                ("this is a bug in llark, not in your data; please report it with "
                 f"{storage.join(path, REJECTED_INDEX_FILE)}",))
    share = percent(dead, inputs) if inputs else "?"
    problem = (f"REJECTED (no {INDEX_FILE}; see {REJECTED_INDEX_FILE}): {dead} of "
               f"{inputs or '?'} inputs failed ({share}), more than --max-error-rate allowed; "
               f"{idx.total_rows} rows were written but nothing downstream reads this set")
    top = max(idx.dead_letters.items(), key=lambda kv: (kv[1], kv[0]))[0] if dead else ""
    advice = [f"read the dead letters below (all in "
              f"{storage.join(path, DEAD_LETTER_DIR, idx.stage)}/)"
              + (f"; most are {top}" if top else "")]
    rate = math.ceil(1000 * dead / inputs) / 1000 if inputs else 1.0
    if top == "AudioNotFoundError" and idx.config.get("dataset") == "musiccaps":
        advice.append("audio that was never downloaded is normal for MusicCaps (YouTube videos "
                      "disappear): to keep what is there, rerun "
                      f"`{command} ... --max-error-rate 1`")
    else:
        advice.append(f"fix the inputs they name and rerun `{command}`, or accept the losses "
                      f"with `{command} ... --max-error-rate 1` (any rate of at least "
                      f"{rate:g} commits this run)")
    return problem, tuple(advice)


def format_summary(s: SetSummary, root: Path | str, show_schema: bool = False) -> str:
    rel = storage.relative(s.path, root)
    idx = s.index
    head = f"== {rel}"
    if idx is not None:
        head += f"  [{idx.stage} → {idx.record}, schema {idx.schema_version}, {idx.created_at}]"
    if idx is None and s.rejected is not None:
        r = s.rejected
        head += f"  [{r.stage} → {r.record}, schema {r.schema_version}, {r.created_at}, REJECTED]"
    lines = [head]
    if s.problem:
        lines.append(f"  ! {s.problem}")
    lines += [f"  → {a}" for a in s.advice]
    lines.append(f"  rows: {s.rows}" + (f" in {len(idx.shards)} shard(s)" if idx else ""))
    if idx is not None and idx.total_rows != s.rows:
        lines.append(f"  ! index says {idx.total_rows} rows, files hold {s.rows}")
    for col, counter in s.groups.items():
        items = ", ".join(f"{k}={v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))
        lines.append(f"  by {col}: {items}")
    counted = idx if idx is not None else s.rejected
    if counted is not None:
        for k, v in sorted(counted.counts.items()):
            lines.append(f"  {k}: {v}")
        for reason, n in sorted(counted.skipped.items()):
            lines.append(f"  skipped ({reason}): {n}" + _skipped_examples(s, reason, counted))
    for et, n in sorted(s.dead_letters.items()):
        ex = s.dead_examples[et]
        lines.append(f"  dead letters {et}: {n}  e.g. {ex.id or '?'}: {ex.message[:120]}")
    if show_schema and s.schema:
        lines.append("  schema:")
        lines += ["    " + line for line in s.schema.splitlines()]
    if s.sample is not None:
        lines.append("  sample: " + json.dumps(s.sample, ensure_ascii=False, default=str)[:1200])
    return "\n".join(lines)


def _skipped_examples(s: SetSummary, reason: str, idx: ShardIndex) -> str:
    shown = s.skipped_names.get(reason) or []
    if not shown:
        return ""
    more = s.skipped_listed[reason] - len(shown)
    where = f"{SKIPPED_DIR}/{idx.stage}/"
    return ("  e.g. " + ", ".join(shown)
            + (f" (+{more} more in {where})" if more > 0 else f" (all in {where})"))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llark inspect", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("path", help="a stage output folder, or a folder of them")
    parser.add_argument("--schema", action="store_true", help="print each set's Arrow schema")
    parser.add_argument("--report", help="also write a self-contained HTML report here")
    parser.add_argument("--skipped-names", type=int, default=SKIPPED_NAMES, metavar="N",
                        help="names shown per skip reason, smallest first, from the skip "
                             f"manifest {SKIPPED_DIR}/ (0 hides them; default {SKIPPED_NAMES})")
    args = parser.parse_args(argv)
    root: Path | str = args.path.rstrip("/") if storage.is_remote(args.path) else Path(args.path)
    if not storage.exists(root):
        print(f"llark inspect: {root} does not exist", file=sys.stderr)
        return 2
    sets = find_sets(root)
    if not sets:
        print(f"llark inspect: no shard sets (folders with {INDEX_FILE} or part-*.parquet) "
              f"under {root}", file=sys.stderr)
        return 1
    summaries = [summarize(p, args.skipped_names) for p in sets]
    for s in summaries:
        print(format_summary(s, root, args.schema))
        print()
    total_rows = sum(s.rows for s in summaries)
    total_dead = sum(sum(s.dead_letters.values()) for s in summaries)
    incomplete = [s for s in summaries if s.problem]
    rejected = sum(s.rejected is not None for s in summaries)
    print(f"{len(summaries)} set(s), {total_rows} rows, {total_dead} dead letters, "
          f"{len(incomplete)} incomplete" + (f" ({rejected} rejected)" if rejected else ""))
    if args.report:
        from pipelines.report import write_report

        write_report(root, summaries, args.report)
        print(f"report: {args.report}")
    return 1 if incomplete else 0


if __name__ == "__main__":
    raise SystemExit(run())
