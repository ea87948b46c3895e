"""``llark inspect DIR --report report.html``: one self-contained HTML page with PNG plots.

Plots (embedded as base64 PNG, so the file can be mailed or opened offline): tempo histogram,
key and mode distribution, chord vocabulary, meter, the key, tempo, meter and chord
confidences (histograms, with the instruct threshold below which nothing is stated: the
instruction set's ``min_confidence`` when the folder has one, else the default; and a table of
how many clips fall below it), clip durations, Q&A per family and per dataset,
validation drops by reason, embedding norms per dataset, dead letters by error type; then every
stage's counts from its index, the evaluation metrics when present, and a table of sample Q&A
next to their clip's labels. Keys are shown as musicians write them (``Bb major``) whatever
spelling the annotations were stored with. Reads what it finds under DIR; sections without data
say so rather than disappearing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from annotate.instruct.facts import DEFAULT_MIN_CONFIDENCE
from llark import storage
from llark.music import spell_key
from pipelines.schema import EMBEDDING_DTYPE
from pipelines.stage import percent

MAX_SAMPLE_QA = 12
NORM_ROWS_PER_SET = 2000
#: annotation fields whose confidence is plotted: (title, Annotation column)
CONFIDENCE_FIELDS = (("key", "key_confidence"), ("tempo", "tempo_confidence"),
                     ("meter", "meter_confidence"), ("chords", "chords_confidence"))


def _parts(path: Path | str) -> list[str]:
    """A set's Parquet parts (local or on a bucket)."""
    return storage.list_files(path, "part-*.parquet", recursive=False)


def _record(summary: Any) -> str:
    return summary.index.record if summary.index is not None else ""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _bar(title: str, counter: Counter | dict, xlabel: str = "", horizontal: bool = False,
         top: int = 30) -> str | None:
    import matplotlib.pyplot as plt

    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top]
    if not items:
        return None
    labels = [str(k) for k, _ in items]
    values = [v for _, v in items]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(items)) if horizontal else 3.2))
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color="#4C72B0")
        ax.set_xlabel("count")
    else:
        ax.bar(labels, values, color="#4C72B0")
        ax.set_ylabel("count")
        ax.tick_params(axis="x", rotation=45 if len(items) > 6 else 0)
    ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    return _png(fig)


def _hist(title: str, values: list[float], xlabel: str, bins: int = 30,
          groups: dict[str, list[float]] | None = None) -> str | None:
    import matplotlib.pyplot as plt

    if not values and not groups:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if groups:
        ax.hist(list(groups.values()), bins=bins, label=list(groups), stacked=True)
        ax.legend(fontsize=8)
    else:
        ax.hist(values, bins=bins, color="#4C72B0")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    return _png(fig)


def _confidence_hists(confidences: dict[str, list[float]], threshold: float) -> str | None:
    """One figure, a histogram per field, each with the instruct threshold drawn."""
    import matplotlib.pyplot as plt

    if not any(confidences.values()):
        return None
    fig, axes = plt.subplots(1, len(CONFIDENCE_FIELDS), figsize=(10, 2.8), sharey=True)
    for ax, (name, _column) in zip(axes, CONFIDENCE_FIELDS):
        ax.hist(confidences[name], bins=20, range=(0.0, 1.0), color="#4C72B0")
        ax.axvline(threshold, color="#C44E52", linestyle="--", linewidth=1)
        ax.set_title(f"{name} confidence", fontsize=9)
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("clips")
    return _png(fig)


def collect(root: Path | str, summaries: list[Any]) -> dict[str, Any]:
    """Everything the plots need, read column-wise from the shard sets under ``root``."""
    data: dict[str, Any] = {
        "tempo": [], "keys": Counter(), "modes": Counter(), "chords": Counter(),
        "meter": Counter(), "durations": defaultdict(list), "families": Counter(),
        "qa_datasets": Counter(), "drops": Counter(), "norms": defaultdict(list),
        "dead": Counter(), "labels": {}, "qa": [], "stages": [], "eval": {},
        "confidence": {name: [] for name, _column in CONFIDENCE_FIELDS},
        "threshold": DEFAULT_MIN_CONFIDENCE,     # the instruct set's own when there is one
    }
    for s in summaries:
        rec = _record(s)
        for et, n in s.dead_letters.items():
            data["dead"][f"{et}"] += n
        if s.index is not None:
            idx = s.index
            data["stages"].append({
                "set": storage.relative(s.path, root),
                "stage": idx.stage, "record": idx.record, "rows": s.rows,
                "dead": sum(s.dead_letters.values()), "skipped": sum(idx.skipped.values()),
                "detail": ", ".join(f"{k}={v}" for k, v in sorted(idx.skipped.items()))})
            for key, value in idx.counts.items():
                if key.startswith("dropped") and isinstance(value, (int, float)):
                    data["drops"][key.split(":", 1)[-1]] += value
            for reason, n in idx.skipped.items():
                if rec == "instruction":
                    data["drops"][f"skipped: {reason}"] += n
            if rec == "instruction" and isinstance(idx.config.get("min_confidence"), (int, float)):
                data["threshold"] = float(idx.config["min_confidence"])
        norm_rows = 0
        for part in _parts(s.path):
            pf = pq.ParquetFile(storage.open_input(part))   # range reads on a bucket
            names = pf.schema_arrow.names
            if rec in ("clip", "annotated_clip") and {"start_s", "end_s", "dataset"} <= set(names):
                t = pf.read(columns=["dataset", "start_s", "end_s"]).to_pydict()
                if rec == "clip":
                    for ds, a, b in zip(t["dataset"], t["start_s"], t["end_s"]):
                        data["durations"][ds].append(b - a)
            if rec == "annotated_clip":
                t = pf.read(columns=["id", "annotation"]).to_pydict()
                for cid, ann in zip(t["id"], t["annotation"]):
                    data["labels"][cid] = ann
                    if ann["is_silent"]:
                        continue
                    data["tempo"].append(ann["tempo_bpm"])
                    for name, column in CONFIDENCE_FIELDS:
                        data["confidence"][name].append(float(ann[column]))
                    if ann["key"]:
                        key = spell_key(ann["key"])
                        data["keys"][key] += 1
                        data["modes"][key.split()[-1]] += 1
                    data["meter"][f"{ann['meter']}/4" if ann["meter"] else "unknown"] += 1
                    for ch in ann["chords"]:
                        data["chords"][ch["label"]] += 1
            if rec == "instruction":
                t = pf.read(columns=["clip_id", "dataset", "family", "turns"]).to_pydict()
                for cid, ds, fam, turns in zip(t["clip_id"], t["dataset"], t["family"], t["turns"]):
                    data["families"][fam] += 1
                    data["qa_datasets"][ds] += 1
                    if len(data["qa"]) < 400:
                        data["qa"].append((cid, fam, turns))
            if rec in ("embedding", "training_row"):
                # a sample of each set is enough for the plot: at most NORM_ROWS_PER_SET rows,
                # read one row group at a time (embeddings are the big column)
                for rg in range(pf.num_row_groups):
                    if norm_rows >= NORM_ROWS_PER_SET:
                        break
                    t = pf.read_row_group(rg, columns=["dataset", "n_frames", "dim",
                                                       "embedding"]).to_pydict()
                    for ds, n, d, blob in zip(t["dataset"], t["n_frames"], t["dim"], t["embedding"]):
                        frames = np.frombuffer(blob, dtype=EMBEDDING_DTYPE).reshape(n, d)
                        norm = float(np.linalg.norm(frames.astype(np.float32), axis=1).mean())
                        data["norms"][f"{ds} ({rec})"].append(norm)
                        norm_rows += 1
    for path in storage.list_files(root, "*.json"):
        folder, _, name = path.rpartition("/")
        if storage.name(folder) == "eval" and not name.startswith("_"):
            try:
                data["eval"][name] = json.loads(storage.read_text(path))
            except json.JSONDecodeError:
                continue
    return data


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out.append((prefix, f"{value:.4g}" if isinstance(value, float) else str(value)))


def render(root: Path | str, data: dict[str, Any]) -> str:
    plots: list[tuple[str, str | None]] = [
        ("Tempo (BPM)", _hist("Tempo", data["tempo"], "BPM")),
        ("Keys", _bar("Key", data["keys"], horizontal=True)),
        ("Mode", _bar("Mode", data["modes"])),
        ("Chord vocabulary", _bar("Chord labels (segments)", data["chords"], horizontal=True)),
        ("Meter", _bar("Meter (beats per bar)", data["meter"])),
        ("Annotation confidences", _confidence_hists(data["confidence"], data["threshold"])),
        ("Clip durations", _hist("Clip duration", [], "seconds", groups=dict(data["durations"]))
         if data["durations"] else None),
        ("Q&A per family", _bar("Conversations per family", data["families"])),
        ("Q&A per dataset", _bar("Conversations per dataset", data["qa_datasets"])),
        ("Validation drops by reason", _bar("Dropped or skipped instructions", data["drops"],
                                            horizontal=True)),
        ("Embedding norms", _hist("Mean frame L2 norm", [], "norm", groups=dict(data["norms"]))
         if data["norms"] else None),
        ("Dead letters by error type", _bar("Dead letters", data["dead"], horizontal=True)),
    ]
    esc = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>llark report</title><style>",
           "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}",
           ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}",
           ".card{border:1px solid #ddd;border-radius:6px;padding:.6em}",
           "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;",
           "padding:.25em .5em;vertical-align:top;text-align:left}img{max-width:100%}",
           ".empty{color:#888;font-style:italic}</style></head><body>",
           f"<h1>llark report</h1><p>{esc(root if storage.is_remote(root) else str(Path(root).resolve()))}</p>",
           "<h2>Stages</h2><table><tr><th>set</th><th>stage</th><th>record</th><th>rows</th>"
           "<th>dead letters</th><th>skipped</th><th>skip reasons</th></tr>"]
    for st in data["stages"]:
        out.append("<tr>" + "".join(f"<td>{esc(str(st[k]))}</td>" for k in
                                    ("set", "stage", "record", "rows", "dead", "skipped",
                                     "detail")) + "</tr>")
    out.append("</table><h2>Plots</h2><div class='grid'>")
    for title, png in plots:
        body = (f"<img class='plot' alt='{esc(title)}' src='data:image/png;base64,{png}'>"
                if png else "<p class='empty'>no data for this plot in this folder</p>")
        out.append(f"<div class='card'><h3>{esc(title)}</h3>{body}</div>")
    out.append("</div>")
    conf, threshold = data["confidence"], data["threshold"]
    if any(conf.values()):
        out.append(f"<h2>Annotation confidence</h2><p>Below {threshold:.2f} (the "
                   "instruct threshold) a key, tempo, meter or chord timeline is not stated in "
                   "the instruction data (\"no clear key\").</p><table><tr><th>field</th>"
                   "<th>clips</th><th>below the threshold</th><th>median</th></tr>")
        for name, _column in CONFIDENCE_FIELDS:
            values = conf[name]
            low = sum(v < threshold for v in values)
            share = f"{low} ({percent(low, len(values))})" if values else "—"
            median = f"{float(np.median(values)):.2f}" if values else "—"
            out.append(f"<tr><td>{name}</td><td>{len(values)}</td><td>{share}</td>"
                       f"<td>{median}</td></tr>")
        out.append("</table>")
    if data["eval"]:
        out.append("<h2>Evaluation</h2>")
        for name, value in data["eval"].items():
            rows: list[tuple[str, str]] = []
            _flatten("", value, rows)
            out.append(f"<h3>{esc(name)}</h3><table>" + "".join(
                f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows[:80]) + "</table>")
    out.append("<h2>Sample Q&amp;A</h2><table><tr><th>clip</th><th>labels</th><th>family</th>"
               "<th>conversation</th></tr>")
    seen_fam: Counter = Counter()
    for cid, fam, turns in data["qa"]:
        if seen_fam[fam] >= MAX_SAMPLE_QA // 3 + 1 or sum(seen_fam.values()) >= MAX_SAMPLE_QA:
            continue
        seen_fam[fam] += 1
        ann = data["labels"].get(cid)
        labels = ("—" if ann is None else
                  f"{spell_key(ann['key']) or 'no key'}, {ann['tempo_bpm']:.0f} BPM, "
                  f"{ann['meter']}/4, "
                  + " ".join(c["label"] for c in ann["chords"][:6]))
        conv = "<br>".join(f"<b>{esc(t['role'])}</b>: {esc(t['content'])}" for t in turns)
        out.append(f"<tr><td>{esc(cid)}</td><td>{esc(labels)}</td><td>{esc(fam)}</td>"
                   f"<td>{conv}</td></tr>")
    # lets a headless browser (and the test) confirm every plot decoded and has a size
    out.append("</table><script>window.addEventListener('load',function(){var i=document."
               "querySelectorAll('img.plot');var ok=0;i.forEach(function(x){if(x.complete&&"
               "x.naturalWidth>0)ok++});document.body.setAttribute('data-plots',i.length);"
               "document.body.setAttribute('data-plots-rendered',ok)});</script></body></html>")
    return "\n".join(out)


def write_report(root: Path | str, summaries: list[Any], out_path: Path | str) -> Path | str:
    import matplotlib

    matplotlib.use("Agg")
    data = collect(root, summaries)
    page = render(root, data)
    if storage.is_remote(out_path):
        storage.write_text(out_path, page)          # one object, visible once complete
        return os.fspath(out_path)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path
