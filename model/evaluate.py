"""``llark eval``: score ``llark infer`` answers with the paper's metrics.

    llark eval --predictions preds.jsonl --output DIR      → DIR/metrics.json, DIR/report.md

* key: the answer is parsed for a key (``"F# minor"``, ``"Bb major"``, ``"the key of D"``
  = D major) and scored with MIREX's weighted score (``mir_eval.key.weighted_score``: 1 same,
  0.5 fifth, 0.3 relative, 0.2 parallel); an answer without a key scores 0.
* tempo: the first number of the answer (the one next to "BPM" when there is one). Acc1: within
  4 % of the reference; Acc2: within 4 % of the reference times 1, 2, ½, 3 or ⅓
  (:func:`llark.music.tempo_accuracy`, the project's one definition).
* genre: the answer is searched for the genres of the dataset's vocabulary (every genre label
  of that dataset in the predictions file) as whole words, leaving out denied mentions ("not
  rock but jazz": :func:`find_terms`); the first one affirmed is the prediction; correct when
  it is one of the clip's genres. Accuracy.
* instruments: every instrument of the dataset's vocabulary the answer affirms (the same
  :func:`find_terms`: "no drums" names none); precision, recall and F1 against the clip's
  instruments (micro over all clips, and the mean per clip).
* conversations (``--questions conversations``): token F1 against the reference answer, per family.
* captions (the ``caption`` family of the conversations): BLEU-1..4, METEOR, ROUGE-L and CIDEr-D
  against the reference captions, offline (``model/captions.py``: the COCO caption toolkit;
  METEOR runs a Java process and is left out, with the reason in ``metrics.json``, when Java is
  missing or ``--no-meteor`` is given).

The references are the clip's labels carried in each prediction line (key and tempo from the
clip's annotation, genres and instruments from its metadata).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from llark.music import key_name, pitch_class, tempo_accuracy
from model.captions import CaptionPair, caption_scores
from model import references as refs
from model.storage import local_input_file, output_folder

NOTE = r"(?P<tonic>[A-G])(?P<acc>\s?(?:#|♯|b|♭|-?sharp|-?flat))?"
MODE = r"(?P<mode>major|minor|maj|min|m)\b"
KEY_WITH_MODE = re.compile(rf"(?<![A-Za-z]){NOTE}\s*-?\s*{MODE}", re.IGNORECASE)
KEY_OF = re.compile(rf"\bkey\s*(?:of|is|:)?\s*{NOTE}(?![A-Za-z])", re.IGNORECASE)
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)")
BPM_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(?:bpm|beats per minute)", re.IGNORECASE)

#: The paper's evaluation questions, one per task (``llark infer`` and ``llark benchmark`` ask
#: them; the answers are scored here).
TASK_QUESTIONS = {
    "key": "What is the key of this song?",
    "tempo": "What is the tempo of this song, in beats per minute?",
    "genre": "What is the genre of this song?",
    "instruments": "Which instruments can be heard in this song?",
}


@dataclass(frozen=True)
class Labels:
    """What a clip's answers are scored against (a shard row's labels, or a benchmark's)."""

    dataset: str = ""
    key: str = ""
    tempo_bpm: float | None = None
    genres: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()


# --------------------------------------------------------------------------- parsing

def parse_key(text: str) -> str | None:
    """A key named in ``text`` as ``"<tonic> major|minor"`` (mir_eval's format, spelled as
    musicians write it by :mod:`llark.music`: "A# major" is read as ``"Bb major"``), or None."""
    def tonic(m: re.Match) -> int | None:
        t = m.group("tonic")
        if not t.isupper():               # "a minor chord", "b" etc. are words, not tonics
            return None
        return pitch_class(t + (m.group("acc") or "").strip())

    for m in KEY_WITH_MODE.finditer(text):
        t = tonic(m)
        if t is None:
            continue
        mode = m.group("mode").lower()
        if mode == "m" and m.group("mode") == "M":
            continue
        return key_name(t, "minor" if mode in ("minor", "min", "m") else "major")
    for m in KEY_OF.finditer(text):
        t = tonic(m)
        if t is not None:
            return key_name(t, "major")
    return None


def parse_tempo(text: str) -> float | None:
    """The tempo in BPM an answer states, or None."""
    m = BPM_NUMBER.search(text)
    if m:
        return float(m.group(1))
    for m in NUMBER.finditer(text):
        value = float(m.group(1))
        if 20 <= value <= 400:
            return value
    return None


def _term_pattern(term: str) -> re.Pattern:
    """``term`` as a whole word or phrase: the spaces of a phrase also match ``-`` and nothing
    ("hip hop" finds "hip-hop" and "hiphop"), a term finds its plural in ``s``/``es``
    ("piano" finds "pianos"); a term that already ends in ``s`` is matched as written, so
    "blues" does not find "blue" and "drums" does not find "drum"."""
    t = re.escape(term.lower()).replace(r"\ ", r"[\s\-]*")
    if not term.lower().endswith("s"):
        t += "(?:s|es)?"
    return re.compile(rf"(?<![\w]){t}(?![\w])", re.IGNORECASE)


#: Words that deny what follows them in their clause ("not rock", "no drums", "neither country
#: nor disco", "without vocals", "isn't jazz"); "not only"/"not just", "no doubt" and "without
#: (a) doubt" do not.
NEGATION = re.compile(r"\b(?:not(?!\s+(?:only|just|merely|simply)\b)|no(?!\s+doubt\b)|neither|"
                      r"nor|without(?!\s+(?:a\s+)?doubt\b)|never|none|lacks?|lacking|cannot)\b|"
                      r"n[\'’]t\b", re.IGNORECASE)
#: Where a denial ends: the end of a sentence or clause (``.;:!?``), a contrast ("but",
#: "instead", "rather", ...) or a new statement ("it's", "this is", "there are", "sounds like").
NEGATION_END = re.compile(
    r"[.;:!?]|\b(?:but|however|instead|rather|though|although|yet|whereas|while)\b|"
    r"\b(?:it|this|that|there)\s*(?:[\'’]s|is|are)\b|\bsounds?\s+like\b|\bmore\s+like\b",
    re.IGNORECASE)


def _negated(text: str, position: int) -> bool:
    """Is a mention at ``position`` denied: is the last negation word or negation end before
    it a negation word?"""
    last_neg = max((m.end() for m in NEGATION.finditer(text, 0, position)), default=-1)
    last_end = max((m.end() for m in NEGATION_END.finditer(text, 0, position)), default=-1)
    return last_neg > last_end


def find_terms(text: str, vocabulary: Iterable[str]) -> list[str]:
    """Vocabulary terms ``text`` affirms, in order of their first affirmed mention.

    Terms are whole words or phrases (:func:`_term_pattern`); where mentions overlap the longest
    term wins ("punk rock" over "rock"); a mention inside a denial ("not rock but jazz", "no
    drums", "neither country nor disco, it's reggae") is not a mention. The one parser of
    genres and instrument lists for ``llark eval`` and ``llark benchmark``."""
    spans: list[tuple[int, int, str]] = []
    for term in sorted(set(vocabulary), key=lambda v: (-len(v), v)):
        for m in _term_pattern(term).finditer(text):
            if not any(s < m.end() and m.start() < e for s, e, _ in spans):
                spans.append((m.start(), m.end(), term))
    found: list[str] = []
    for start, _, term in sorted(spans):
        if term not in found and not _negated(text, start):
            found.append(term)
    return found


def parse_genre(text: str, vocabulary: Iterable[str]) -> str | None:
    """The genre an answer names: the first vocabulary genre it affirms, or None."""
    found = find_terms(text, vocabulary)
    return found[0] if found else None


def token_f1(prediction: str, reference: str) -> float:
    p = re.findall(r"\w+", prediction.lower())
    r = re.findall(r"\w+", reference.lower())
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- scoring

def key_score(reference: str, estimate: str | None) -> float:
    import mir_eval

    if estimate is None:
        return 0.0
    return float(mir_eval.key.weighted_score(reference, estimate))


@dataclass
class Scored:
    record: dict[str, Any]
    parsed: Any
    score: dict[str, float]


def _norm(items: Sequence[str]) -> set[str]:
    return {i.lower() for i in items}


CAPTION_FAMILY = "caption"


@dataclass(frozen=True)
class Vocabulary:
    """Label terms answers are searched for, per dataset name, besides the labels the records
    themselves carry (a benchmark passes its whole label set, so a small run still searches
    every genre of GTZAN)."""

    genres: Mapping[str, Sequence[str]] = field(default_factory=dict)
    instruments: Mapping[str, Sequence[str]] = field(default_factory=dict)


def evaluate(records: Sequence[dict[str, Any]], vocabulary: Vocabulary | None = None,
             meteor: bool = True) -> tuple[dict[str, Any], list[Scored]]:
    """Metrics of ``llark infer`` records; returns (metrics, per-record scores).

    Records whose ``condition`` field is ``zeroed`` or ``shuffled`` (``llark infer
    --ablate-audio``) are the same checkpoint without the audio: they are scored apart, into
    ``metrics["references"]`` beside the best constant answers (:mod:`model.references`); the
    model's own metrics are those of the heard records. ``meteor=False`` leaves METEOR out of
    the caption metrics (it starts a Java process)."""
    vocabulary = full_vocabulary(records, vocabulary)
    heard = [r for r in records if r.get("condition", refs.AUDIO_HEARD) == refs.AUDIO_HEARD]
    metrics, scored = _evaluate(heard, vocabulary, meteor)
    metrics["n_predictions"] = len(records)
    known = {refs.AUDIO_HEARD, *refs.AUDIO_CONDITIONS.values()}
    other = Counter(str(r.get("condition")) for r in records
                    if r.get("condition", refs.AUDIO_HEARD) not in known)
    if other:                       # counted, never silently dropped
        metrics["not_scored_condition"] = dict(sorted(other.items()))
    references: dict[str, Any] = {}
    for condition in refs.AUDIO_CONDITIONS.values():
        ablated = [r for r in records if r.get("condition") == condition]
        if ablated:
            references[condition] = _evaluate(ablated, vocabulary, meteor)[0]
    constants = refs.constant_answers(heard)
    if constants:
        references["constant"] = {
            which: {"answers": answers,
                    "metrics": _evaluate(refs.constant_records(heard, constants, which),
                                         vocabulary, meteor=False)[0]}
            for which, answers in constants.items()}
    if references:
        metrics["references"] = references
    return metrics, scored


def full_vocabulary(records: Sequence[dict[str, Any]],
                    vocabulary: Vocabulary | None = None) -> Vocabulary:
    """``vocabulary`` plus every genre and instrument label the records carry, per dataset."""
    genre_vocab: dict[str, set[str]] = defaultdict(set)
    instrument_vocab: dict[str, set[str]] = defaultdict(set)
    if vocabulary is not None:
        for ds, terms in vocabulary.genres.items():
            genre_vocab[ds].update(terms)
        for ds, terms in vocabulary.instruments.items():
            instrument_vocab[ds].update(terms)
    for r in records:
        labels = r.get("labels") or {}
        genre_vocab[labels.get("dataset", "")].update(labels.get("genres") or ())
        instrument_vocab[labels.get("dataset", "")].update(labels.get("instruments") or ())
    return Vocabulary({ds: sorted(v) for ds, v in genre_vocab.items()},
                      {ds: sorted(v) for ds, v in instrument_vocab.items()})


def _evaluate(records: Sequence[dict[str, Any]], vocabulary: Vocabulary,
              meteor: bool) -> tuple[dict[str, Any], list[Scored]]:
    genre_vocab = {ds: set(v) for ds, v in vocabulary.genres.items()}
    instrument_vocab = {ds: set(v) for ds, v in vocabulary.instruments.items()}
    scored: list[Scored] = []
    for r in records:
        labels = r.get("labels") or {}
        answer = r.get("prediction", "")
        task, ds = r.get("task"), labels.get("dataset", "")
        if task == "key" and labels.get("key"):
            est = parse_key(answer)
            scored.append(Scored(r, est, {"weighted": key_score(labels["key"], est),
                                          "parsed": float(est is not None)}))
        elif task == "tempo" and labels.get("tempo_bpm"):
            est = parse_tempo(answer)
            a1, a2 = tempo_accuracy(float(labels["tempo_bpm"]), est)
            scored.append(Scored(r, est, {"acc1": float(a1), "acc2": float(a2),
                                          "parsed": float(est is not None)}))
        elif task == "genre" and labels.get("genres"):
            est = parse_genre(answer, genre_vocab.get(ds, ()))
            scored.append(Scored(r, est, {
                "correct": float(est is not None and est.lower() in _norm(labels["genres"])),
                "parsed": float(est is not None)}))
        elif task == "instruments" and labels.get("instruments"):
            est_set = _norm(find_terms(answer, instrument_vocab.get(ds, ())))
            ref_set = _norm(labels["instruments"])
            tp = len(est_set & ref_set)
            p = tp / len(est_set) if est_set else 0.0
            rc = tp / len(ref_set)
            f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
            scored.append(Scored(r, sorted(est_set), {"tp": tp, "fp": len(est_set) - tp,
                                                      "fn": len(ref_set) - tp, "f1": f1,
                                                      "parsed": float(bool(est_set))}))
        elif task == "conversation" and r.get("reference"):
            scored.append(Scored(r, None, {"token_f1": token_f1(answer, r["reference"])}))

    def summarise(items: list[Scored]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        by_task: dict[str, list[Scored]] = defaultdict(list)
        for s in items:
            by_task[s.record["task"]].append(s)
        if by_task.get("key"):
            k = by_task["key"]
            out["key"] = {"n": len(k), "weighted_score": _mean(s.score["weighted"] for s in k),
                          "exact": _mean(float(s.score["weighted"] == 1.0) for s in k),
                          "parsed_rate": _mean(s.score["parsed"] for s in k)}
        if by_task.get("tempo"):
            t = by_task["tempo"]
            out["tempo"] = {"n": len(t), "acc1": _mean(s.score["acc1"] for s in t),
                            "acc2": _mean(s.score["acc2"] for s in t),
                            "parsed_rate": _mean(s.score["parsed"] for s in t)}
        if by_task.get("genre"):
            g = by_task["genre"]
            out["genre"] = {"n": len(g), "accuracy": _mean(s.score["correct"] for s in g),
                            "parsed_rate": _mean(s.score["parsed"] for s in g)}
        if by_task.get("instruments"):
            ins = by_task["instruments"]
            tp = sum(s.score["tp"] for s in ins)
            fp = sum(s.score["fp"] for s in ins)
            fn = sum(s.score["fn"] for s in ins)
            p = tp / (tp + fp) if tp + fp else 0.0
            rc = tp / (tp + fn) if tp + fn else 0.0
            out["instruments"] = {"n": len(ins), "micro_precision": p, "micro_recall": rc,
                                  "micro_f1": 2 * p * rc / (p + rc) if p + rc else 0.0,
                                  "mean_f1": _mean(s.score["f1"] for s in ins),
                                  "parsed_rate": _mean(s.score["parsed"] for s in ins)}
        conv = by_task.get("conversation", [])
        if conv:
            fams: dict[str, list[float]] = defaultdict(list)
            for s in conv:
                fams[s.record.get("family") or "?"].append(s.score["token_f1"])
            out["conversations"] = {"n": len(conv),
                                    "token_f1": _mean(s.score["token_f1"] for s in conv),
                                    "token_f1_by_family": {f: _mean(v) for f, v in
                                                           sorted(fams.items())}}
            captions = [CaptionPair(s.record.get("prediction", ""), (s.record["reference"],))
                        for s in conv if s.record.get("family") == CAPTION_FAMILY]
            if captions:
                out["captions"] = caption_scores(captions, meteor=meteor).to_dict()
        return out

    metrics: dict[str, Any] = {"n_predictions": len(records), "n_scored": len(scored)}
    metrics.update(summarise(scored))
    datasets = sorted({(s.record.get("labels") or {}).get("dataset", "") for s in scored})
    if len(datasets) > 1:
        metrics["by_dataset"] = {
            ds or "?": summarise([s for s in scored
                                  if (s.record.get("labels") or {}).get("dataset", "") == ds])
            for ds in datasets}
    metrics["vocabulary_sizes"] = {
        "genre": {ds or "?": len(v) for ds, v in sorted(genre_vocab.items()) if v},
        "instruments": {ds or "?": len(v) for ds, v in sorted(instrument_vocab.items()) if v}}
    return metrics, scored


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return sum(v) / len(v) if v else 0.0


SHARD_REFERENCES = ("Key and tempo references are the clips' consensus annotations; genre and "
                    "instrument vocabularies are the labels of each dataset in the predictions "
                    "file.")


def reference_value(metrics: dict[str, Any], column: str, task: str, key: str,
                    dataset: str = "") -> float | None:
    """The figure of reference ``column`` (:data:`model.references.COLUMNS` but ``model``) for
    ``metrics[task][key]``, or None when that reference was not computed."""
    ref = metrics.get("references", {})
    if column == "constant":
        which = refs.constant_metric(task, key)
        m = ref.get("constant", {}).get(which or "", {}).get("metrics", {})
    else:
        m = ref.get(column, {})
    if dataset:
        m = m.get("by_dataset", {}).get(dataset, {})
    value = m.get(task, {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def reference_summary(metrics: dict[str, Any], task: str, key: str) -> str:
    """`` (zeroed 0.120, constant 0.300)``: the references computed for ``metrics[task][key]``,
    for one-line summaries; '' when there are none."""
    got = [(c, reference_value(metrics, c, task, key)) for c in refs.COLUMNS[1:]]
    parts = [f"{c} {v:.3f}" for c, v in got if v is not None]
    return f" ({', '.join(parts)})" if parts else ""


REPORT_ROWS = (("key", "weighted_score", "MIREX weighted score"), ("key", "exact", "exact key"),
               ("tempo", "acc1", "Acc1 (4 %)"), ("tempo", "acc2", "Acc2 (x2, x1/2, x3, x1/3)"),
               ("genre", "accuracy", "accuracy"), ("instruments", "micro_f1", "micro F1"),
               ("instruments", "mean_f1", "mean per-clip F1"),
               ("conversations", "token_f1", "token F1 vs reference"),
               ("captions", "bleu1", "BLEU-1"), ("captions", "bleu2", "BLEU-2"),
               ("captions", "bleu3", "BLEU-3"), ("captions", "bleu4", "BLEU-4"),
               ("captions", "meteor", "METEOR"), ("captions", "rouge_l", "ROUGE-L"),
               ("captions", "cider_d", "CIDEr-D"))

REFERENCES_NOTE = (
    "Columns: **model** = the checkpoint on the clips' audio; **zeroed** / **shuffled** = the "
    "same checkpoint with every frame set to 0 / with another clip's frames (`llark infer "
    "--ablate-audio zero|shuffle`); **constant** = the best single answer for this set, chosen "
    "with its own references (what a model that ignores the audio can reach at most); "
    "**annotator** = the training labels scored against independent truth (the ceiling those "
    "labels allow). — = not computed.")


def markdown_report(metrics: dict[str, Any], source: str, note: str = SHARD_REFERENCES) -> str:
    lines = [f"# Evaluation of {source}", "",
             f"{metrics['n_predictions']} predictions, {metrics['n_scored']} scored"
             + ("; not scored, unknown 'condition': " + ", ".join(
                 f"{c} {n}" for c, n in metrics["not_scored_condition"].items())
                if metrics.get("not_scored_condition") else "") + ".", "",
             "| task | n | metric | model | zeroed | shuffled | constant | annotator "
             "| answers parsed |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    def rows(m: dict[str, Any], prefix: str = "", dataset: str = "") -> None:
        for task, key, label in REPORT_ROWS:
            if task in m and m[task].get(key) is None:
                lines.append(f"| {prefix}{task} | {m[task]['n']} | {label} | not computed: "
                             f"{m[task].get(key + '_unavailable') or 'not asked for'} "
                             "| — | — | — | — | — |")
            elif task in m:
                parsed = m[task].get("parsed_rate")
                others = " | ".join(fmt(reference_value(metrics, c, task, key, dataset))
                                    for c in refs.COLUMNS[1:])
                lines.append(f"| {prefix}{task} | {m[task]['n']} | {label} | "
                             f"{m[task][key]:.3f} | {others} | "
                             + (f"{parsed:.0%}" if parsed is not None else "—") + " |")

    rows(metrics)
    for ds, m in metrics.get("by_dataset", {}).items():
        rows(m, prefix=f"{ds}: ", dataset=ds)
    constants = metrics.get("references", {}).get("constant", {})
    if constants:
        lines += ["", "Best constant answers: " + "; ".join(
            f"{which}: " + ", ".join(f"{ds if ds != '*' else 'all'} \"{text}\""
                                     for ds, text in sorted(c["answers"].items()))
            for which, c in sorted(constants.items()))]
    conv = metrics.get("conversations", {}).get("token_f1_by_family")
    if conv:
        lines += ["", "Token F1 by family: " + ", ".join(f"{f} {v:.3f}" for f, v in conv.items())]
    lines += ["", REFERENCES_NOTE, "", note, ""]
    return "\n".join(lines)


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """JSON lines of ``llark infer`` (a local file or a ``gs://``/``s3://`` object)."""
    records = []
    with open(local_input_file(path)) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON line ({exc})") from exc
    return records


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llark eval", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--predictions", required=True, help="JSON lines written by llark infer")
    p.add_argument("--output", required=True, help="folder for metrics.json and report.md")
    p.add_argument("--no-meteor", action="store_true",
                   help="leave METEOR out of the caption metrics (it starts a Java process)")
    ns = p.parse_args(argv)
    try:
        records = read_predictions(ns.predictions)
    except (OSError, ValueError) as exc:
        print(f"llark eval: error: {exc}", file=sys.stderr)
        return 2
    if not records:
        print(f"llark eval: error: {ns.predictions} holds no predictions", file=sys.stderr)
        return 2
    metrics, scored = evaluate(records, meteor=not ns.no_meteor)
    with output_folder(ns.output) as out:       # a bucket folder is uploaded when complete
        _write_scores(out, metrics, scored, str(ns.predictions))
    summary = ", ".join(f"{label} {metrics[t][k]:.3f}{reference_summary(metrics, t, k)}"
                        for t, k, label in
                        (("key", "weighted_score", "key"), ("tempo", "acc1", "tempo"),
                         ("genre", "accuracy", "genre"), ("instruments", "micro_f1",
                                                          "instruments"),
                         ("conversations", "token_f1", "conversations"),
                         ("captions", "bleu4", "BLEU-4"), ("captions", "cider_d", "CIDEr-D"))
                        if t in metrics and metrics[t].get(k) is not None)
    where = ns.output.rstrip("/")
    print(f"llark eval: {metrics['n_scored']} of {metrics['n_predictions']} predictions scored: "
          f"{summary or 'nothing scorable'} -> {where}/metrics.json, {where}/report.md")
    return 0


def _write_scores(out: Path, metrics: dict[str, Any], scored: list[Any],
                  predictions: str) -> None:
    """``metrics.json``, ``report.md`` and ``_scored.jsonl`` into the folder ``out``."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / "report.md").write_text(markdown_report(metrics, predictions))
    with open(out / "_scored.jsonl", "w") as f:
        for s in scored:
            f.write(json.dumps({"clip_id": s.record.get("clip_id"), "task": s.record.get("task"),
                                "prediction": s.record.get("prediction"), "parsed": s.parsed,
                                "score": s.score}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(run())
