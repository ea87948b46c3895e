"""The references every model figure stands beside (torch-free).

A score means little alone: a model that ignores the audio can still answer the commonest key.
``llark eval``, ``llark benchmark`` and the report print, beside the model:

* **constant**: the best single answer for the set, chosen with the set's own references (an
  upper bound on what any audio-blind constant can reach there):
  key: the one of the 24 keys with the highest mean MIREX score; tempo: the BPM (a 0.5 BPM
  grid from 30 to 300, plus every reference tempo) with the most Acc1 hits, and separately
  the one with the most Acc2 hits; genre: per dataset, the genre most clips carry;
  instruments: per dataset, the instrument list chosen greedily for micro F1 (add the
  instrument that raises it most, stop when none does). Captions have no constant row.
  The answers are written as text and scored by :func:`model.evaluate.evaluate` like the
  model's, so both go through the same parser.
* **zeroed / shuffled**: the same checkpoint with the audio taken away (``llark infer
  --ablate-audio zero|shuffle``): each record says which in its ``condition`` field
  (:data:`AUDIO_CONDITIONS`).
* **annotator**: the labels the model was trained on, scored against independent truth where
  there is one (``llark benchmark --checkpoint annotator``, or ``llark eval --truth``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

from llark.music import KEYS, tempo_accuracy

#: ``condition`` field of a prediction record: the clip's own frames, all-zero frames, or the
#: frames of another clip of the same request set.
AUDIO_HEARD = "heard"
AUDIO_CONDITIONS = {"zero": "zeroed", "shuffle": "shuffled"}
#: Column order of reference tables.
COLUMNS = ("model", "zeroed", "shuffled", "constant", "annotator")

TEMPO_GRID_BPM = np.arange(30.0, 300.0 + 1e-9, 0.5)


def _labels(r: dict[str, Any]) -> dict[str, Any]:
    return r.get("labels") or {}


def best_key(references: Sequence[str]) -> str:
    """The one key whose mean MIREX weighted score against ``references`` is highest
    (ties: the first in :data:`llark.music.KEYS` order)."""
    import mir_eval

    best, best_score = KEYS[0], -1.0
    for key in KEYS:
        s = sum(mir_eval.key.weighted_score(ref, key) for ref in references)
        if s > best_score + 1e-12:
            best, best_score = key, s
    return best


def best_tempo(references: Sequence[float], which: int) -> float:
    """The BPM with the most Acc1 (``which=0``) or Acc2 (``which=1``) hits on ``references``
    (ties: the slowest)."""
    candidates = sorted(set(TEMPO_GRID_BPM.tolist()) | {float(r) for r in references})
    best, best_hits = candidates[0], -1
    for c in candidates:
        hits = sum(tempo_accuracy(ref, c)[which] for ref in references)
        if hits > best_hits:
            best, best_hits = c, hits
    return best


def best_genre(label_sets: Sequence[Sequence[str]]) -> str:
    """The genre the most clips carry (ties: alphabetical)."""
    counts = Counter(g.lower() for labels in label_sets for g in set(labels))
    return min(counts, key=lambda g: (-counts[g], g))


def _micro_f1(chosen: set[str], label_sets: Sequence[set[str]]) -> float:
    tp = sum(len(chosen & s) for s in label_sets)
    fp = sum(len(chosen - s) for s in label_sets)
    fn = sum(len(s - chosen) for s in label_sets)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def best_instruments(label_sets: Sequence[Sequence[str]]) -> list[str]:
    """Greedy forward selection of the instrument list with the best micro F1 (each round adds
    the instrument that raises it most, the first alphabetically on ties; stops when none
    raises it)."""
    sets = [{i.lower() for i in s} for s in label_sets]
    vocab = sorted(set().union(*sets)) if sets else []
    chosen: set[str] = set()
    score = 0.0
    while True:
        best_item, best_score = None, score
        for item in vocab:
            if item not in chosen:
                f1 = _micro_f1(chosen | {item}, sets)
                if f1 > best_score + 1e-12:
                    best_item, best_score = item, f1
        if best_item is None:
            return sorted(chosen)
        chosen.add(best_item)
        score = best_score


def constant_answers(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``{metric: {dataset: answer text}}`` of the best constant answers for the heard
    records of the tasks key (metric ``key``), tempo (``tempo_acc1``, ``tempo_acc2``), genre
    and instruments. Key and tempo use one answer for every dataset (dataset ``"*"``)."""
    keys: list[str] = []
    tempi: list[float] = []
    genres: dict[str, list[Sequence[str]]] = defaultdict(list)
    instruments: dict[str, list[Sequence[str]]] = defaultdict(list)
    for r in records:
        if r.get("condition", AUDIO_HEARD) != AUDIO_HEARD:
            continue
        lab, task = _labels(r), r.get("task")
        if task == "key" and lab.get("key"):
            keys.append(lab["key"])
        elif task == "tempo" and lab.get("tempo_bpm"):
            tempi.append(float(lab["tempo_bpm"]))
        elif task == "genre" and lab.get("genres"):
            genres[lab.get("dataset", "")].append(lab["genres"])
        elif task == "instruments" and lab.get("instruments"):
            instruments[lab.get("dataset", "")].append(lab["instruments"])
    out: dict[str, dict[str, str]] = {}
    if keys:
        out["key"] = {"*": f"It is in {best_key(keys)}."}
    if tempi:
        for which, name in ((0, "tempo_acc1"), (1, "tempo_acc2")):
            out[name] = {"*": f"The tempo is about {best_tempo(tempi, which):g} BPM."}
    if genres:
        out["genre"] = {ds: f"It is {best_genre(sets)}." for ds, sets in genres.items()}
    if instruments:
        out["instruments"] = {ds: ", ".join(best_instruments(sets)) + "."
                              for ds, sets in instruments.items()}
    return out


#: Which constant answers a task's records take, per metric name of ``evaluate``.
_METRIC_CONSTANT = {("key", "weighted_score"): "key", ("key", "exact"): "key",
                    ("tempo", "acc1"): "tempo_acc1", ("tempo", "acc2"): "tempo_acc2",
                    ("genre", "accuracy"): "genre", ("instruments", "micro_f1"): "instruments",
                    ("instruments", "mean_f1"): "instruments"}


def constant_records(records: Sequence[dict[str, Any]], answers: dict[str, dict[str, str]],
                     which: str) -> list[dict[str, Any]]:
    """Copies of the heard task records with the constant answer ``answers[which]`` as the
    prediction (records of other tasks dropped)."""
    task = {"key": "key", "tempo_acc1": "tempo", "tempo_acc2": "tempo", "genre": "genre",
            "instruments": "instruments"}[which]
    table = answers.get(which, {})
    out = []
    for r in records:
        if r.get("task") != task or r.get("condition", AUDIO_HEARD) != AUDIO_HEARD:
            continue
        ds = _labels(r).get("dataset", "")
        text = table.get("*", table.get(ds))
        if text is not None:
            out.append({**r, "prediction": text})
    return out


def constant_metric(task: str, metric: str) -> str | None:
    """The constant answer scored for ``metrics[task][metric]``, or None (no constant row)."""
    return _METRIC_CONSTANT.get((task, metric))
