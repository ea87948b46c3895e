"""``llark inspect DIR``: what a stage built, at a glance.

Works on the output of any stage (a folder with ``_index.json``) or on a folder of them (for
example ``demo-out/`` after ``make demo``). Prints per set: record type, schema version, rows,
rows per dataset and split (and per family / encoder where the records have them), skipped
records by reason, dead letters by error type with one example message, and a sample record.
``--report FILE.html`` writes the HTML report with plots (see :mod:`pipelines.report`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.schema import DEAD_LETTER_DIR, INDEX_FILE, DeadLetter, ShardIndex

GROUP_COLUMNS = ("dataset", "split", "family", "encoder", "backend")
SAMPLE_TEXT_LIMIT = 160


@dataclass
class SetSummary:
    """What ``inspect`` found in one shard set."""

    path: Path
    index: ShardIndex | None
    rows: int = 0
    groups: dict[str, Counter] = field(default_factory=dict)
    dead_letters: Counter = field(default_factory=Counter)
    dead_examples: dict[str, DeadLetter] = field(default_factory=dict)
    sample: dict[str, Any] | None = None
    schema: str = ""
    problem: str = ""


def find_sets(root: Path) -> list[Path]:
    """Every folder at or under ``root`` that holds an index or Parquet parts (not staging)."""
    found = set()
    for p in [root, *root.rglob("*")]:
        if not p.is_dir() or any(part.startswith("_") for part in p.relative_to(root).parts):
            continue
        if (p / INDEX_FILE).exists() or any(p.glob("part-*.parquet")):
            found.add(p)
    return sorted(found)


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


def summarize(path: Path) -> SetSummary:
    index = None
    summary = SetSummary(path, None)
    if (path / INDEX_FILE).exists():
        index = ShardIndex.from_json((path / INDEX_FILE).read_text())
        summary.index = index
    else:
        summary.problem = f"no {INDEX_FILE}: incomplete (the stage did not finish)"
    parts = sorted(path.glob("part-*.parquet"))
    for part in parts:
        pf = pq.ParquetFile(part)
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
    for dl in sorted((path / DEAD_LETTER_DIR).rglob("*.jsonl")) if (path / DEAD_LETTER_DIR).exists() else []:
        for line in dl.read_text().splitlines():
            if line.strip():
                d = DeadLetter.from_json(line)
                summary.dead_letters[d.error_type] += 1
                summary.dead_examples.setdefault(d.error_type, d)
    return summary


def format_summary(s: SetSummary, root: Path, show_schema: bool = False) -> str:
    rel = s.path.relative_to(root) if s.path != root else Path(".")
    idx = s.index
    head = f"== {rel}"
    if idx is not None:
        head += f"  [{idx.stage} → {idx.record}, schema {idx.schema_version}, {idx.created_at}]"
    lines = [head]
    if s.problem:
        lines.append(f"  ! {s.problem}")
    lines.append(f"  rows: {s.rows}" + (f" in {len(idx.shards)} shard(s)" if idx else ""))
    if idx is not None and idx.total_rows != s.rows:
        lines.append(f"  ! index says {idx.total_rows} rows, files hold {s.rows}")
    for col, counter in s.groups.items():
        items = ", ".join(f"{k}={v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))
        lines.append(f"  by {col}: {items}")
    if idx is not None:
        for k, v in sorted(idx.counts.items()):
            lines.append(f"  {k}: {v}")
        for reason, n in sorted(idx.skipped.items()):
            lines.append(f"  skipped ({reason}): {n}")
    for et, n in sorted(s.dead_letters.items()):
        ex = s.dead_examples[et]
        lines.append(f"  dead letters {et}: {n}  e.g. {ex.id or '?'}: {ex.message[:120]}")
    if show_schema and s.schema:
        lines.append("  schema:")
        lines += ["    " + line for line in s.schema.splitlines()]
    if s.sample is not None:
        lines.append("  sample: " + json.dumps(s.sample, ensure_ascii=False, default=str)[:1200])
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llark inspect", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a stage output folder, or a folder of them")
    parser.add_argument("--schema", action="store_true", help="print each set's Arrow schema")
    parser.add_argument("--report", help="also write a self-contained HTML report here")
    args = parser.parse_args(argv)
    root = Path(args.path)
    if not root.exists():
        print(f"llark inspect: {root} does not exist", file=sys.stderr)
        return 2
    sets = find_sets(root)
    if not sets:
        print(f"llark inspect: no shard sets (folders with {INDEX_FILE} or part-*.parquet) "
              f"under {root}", file=sys.stderr)
        return 1
    summaries = [summarize(p) for p in sets]
    for s in summaries:
        print(format_summary(s, root, args.schema))
        print()
    total_rows = sum(s.rows for s in summaries)
    total_dead = sum(sum(s.dead_letters.values()) for s in summaries)
    incomplete = [s for s in summaries if s.problem]
    print(f"{len(summaries)} set(s), {total_rows} rows, {total_dead} dead letters, "
          f"{len(incomplete)} incomplete")
    if args.report:
        from pipelines.report import write_report

        write_report(root, summaries, Path(args.report))
        print(f"report: {args.report}")
    return 1 if incomplete else 0


if __name__ == "__main__":
    raise SystemExit(run())
