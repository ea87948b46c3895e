"""Leave-one-kind-out (LOKO) evaluation and selection of the fusion fit (issue 20).

The kinds are the development set's ``kind`` field (``benchmarks/devset.py``): chorales
(``bach``), folk songs (``essen``), fiddle tunes (``ryans``), their drum renderings
(``drums``), the real recordings (``real``) and, with the second cache, the grooves and
timbres renderings. Non-music is not a kind of music: it stays in every training set and is
never held out.

For a held-out kind, training is every clip of the other kinds whose *piece* is not in the
held-out kind (a drum rendering of a folk song leaves that song's plain rendering out too).

**Selection** (:func:`select`): every :class:`benchmarks.fit_fusion.FitConfig` of
:func:`choices` is scored by LOKO tempo Acc1 over the kinds it is given (the tempo part of the
fit only: precomputed candidates, seconds per configuration), kind-balanced (the mean of the
kinds' Acc1, so a big kind does not drown a small one); ties go to the higher octave
threshold (the safer rule), then to the smaller feature set. **Nested LOKO**
(:func:`nested_loko`): for each held-out kind the configuration is selected by an inner LOKO
on the other kinds only, the whole fusion is fitted on them with it, and the held-out kind is
answered; the figure is therefore not flattered by the selection.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from annotate.consensus import ConsensusConfig, combine, from_single
from annotate.fusion import TEMPO_FEATURES, FusionParams, ece
from annotate.types import ClipAnalysis
from benchmarks.annotate_accuracy import METRICS, confidences, mean_scores, score
from benchmarks.fit_fusion import (
    ONSET_TEMPO_FEATURES,
    FitConfig,
    Parsed,
    TempoItem,
    fit,
    fit_tempo,
    tempo_hits,
    tempo_items,
)

#: Readable names of the development set's kinds.
KIND_NAMES = {"bach": "chorales", "essen": "folk songs", "ryans": "fiddle tunes",
              "drums": "with drums", "real": "real recordings", "grooves": "grooves",
              "timbres": "timbres"}
#: The choices selected among (each with every threshold of OCTAVE_THRESHOLDS).
TEMPO_L2S = (1e-2, 1e-1, 1.0)
TEMPO_FEATURE_SETS = (TEMPO_FEATURES,
                      tuple(n for n in TEMPO_FEATURES if n not in ONSET_TEMPO_FEATURES))
#: 0: the logit's pick always wins (the fit before issue 20); above 1: madmom's always does.
OCTAVE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)
#: The fit before issue 20: no octave guard, L2 0.01, every tempo feature.
UNGUARDED = FitConfig(tempo_l2=1e-2, tempo_features=TEMPO_FEATURES, octave_threshold=0.0)
#: The metrics of the LOKO table: METRICS and the ECE of the key and tempo confidences.
ECE_FIELDS = ("key", "tempo")


def choices() -> list[FitConfig]:
    return [FitConfig(tempo_l2=l2, tempo_features=fs, octave_threshold=t)
            for l2 in TEMPO_L2S for fs in TEMPO_FEATURE_SETS for t in OCTAVE_THRESHOLDS]


def music_kinds(items: list[Parsed]) -> list[str]:
    return sorted({p.clip.kind for p in items if p.clip.is_music})


def split(items: list, kind: str, kind_of, piece_of) -> tuple[list, list]:
    """``(train, test)``: the clips of ``kind``, and the others less their pieces."""
    test = [x for x in items if kind_of(x) == kind]
    pieces = {piece_of(x) for x in test}
    return [x for x in items if kind_of(x) != kind and piece_of(x) not in pieces], test


@dataclass(frozen=True)
class Selection:
    """The configuration :func:`select` chose and every configuration's LOKO scores."""

    chosen: FitConfig
    #: per configuration: kind -> (consensus Acc1, clips)
    scores: dict[FitConfig, dict[str, tuple[float, int]]]
    madmom: dict[str, float]     # kind -> madmom's Acc1

    def balanced(self, cfg: FitConfig) -> float:
        return float(np.mean([a for a, _ in self.scores[cfg].values()]))


def select(rows: list[TempoItem], configs: list[FitConfig] | None = None) -> Selection:
    """The configuration with the best kind-balanced LOKO tempo Acc1 over ``rows``' kinds
    (see the module docstring for the ties)."""
    configs = configs or choices()
    kinds = sorted({r.kind for r in rows})
    scores: dict[FitConfig, dict[str, tuple[float, int]]] = {c: {} for c in configs}
    madmom: dict[str, float] = {}
    bases = sorted({(c.tempo_l2, c.tempo_features) for c in configs}, key=str)
    for kind in kinds:
        train, test = split(rows, kind, lambda r: r.kind, lambda r: r.piece)
        madmom[kind] = float(np.mean([r.madmom_hit for r in test]))
        for l2, feats in bases:
            base = fit_tempo(train, FitConfig(tempo_l2=l2, tempo_features=feats),
                             FusionParams.neutral())
            for c in configs:
                if (c.tempo_l2, c.tempo_features) == (l2, feats):
                    hits = tempo_hits(test, replace(base, octave_threshold=c.octave_threshold))
                    scores[c][kind] = (float(np.mean(hits)), len(hits))

    def rank(c: FitConfig) -> tuple[float, float, int]:
        return (round(float(np.mean([a for a, _ in scores[c].values()])), 9),
                c.octave_threshold, -len(c.tempo_features))

    return Selection(max(configs, key=rank), scores, madmom)


def print_selection(sel: Selection, title: str) -> None:
    kinds = sorted(sel.madmom)
    print(f"\n{title}: LOKO tempo Acc1 per configuration (kind-balanced mean first)")
    print(f"  {'configuration':<58}{'mean':>7}" + "".join(f"{k:>9}" for k in kinds))
    print(f"  {'madmom alone':<58}{np.mean(list(sel.madmom.values())):>7.3f}"
          + "".join(f"{sel.madmom[k]:>9.3f}" for k in kinds))
    top = sorted(sel.scores, key=lambda c: -sel.balanced(c))[:10]
    unguarded = [c for c in sel.scores if c == UNGUARDED and c not in top]
    for c in top + unguarded:
        mark = " *" if c == sel.chosen else (" (the fit before issue 20)" if c == UNGUARDED
                                             else "")
        print(f"  {c.describe() + mark:<58}{sel.balanced(c):>7.3f}"
              + "".join(f"{sel.scores[c][k][0]:>9.3f}" for k in kinds))
    print(f"  chosen: {sel.chosen.describe()}")


def nested_loko(items: list[Parsed], verbose: bool = True
                ) -> tuple[list[ClipAnalysis | None], dict[str, FitConfig]]:
    """Every music clip's consensus answer with the fusion fitted on the other kinds (the
    configuration selected by an inner LOKO on those kinds); ``None`` for non-music."""
    out: list[ClipAnalysis | None] = [None] * len(items)
    chosen: dict[str, FitConfig] = {}
    index = {id(p): i for i, p in enumerate(items)}
    for kind in music_kinds(items):
        train, test = split(items, kind, lambda p: p.clip.kind, lambda p: p.clip.piece)
        rows = tempo_items(train)
        sel = select(rows)
        chosen[kind] = sel.chosen
        if verbose:
            print(f"  held out {kind:<8}: inner LOKO over "
                  f"{', '.join(sorted(sel.madmom))} picks {sel.chosen.describe()} "
                  f"(inner {sel.balanced(sel.chosen):.3f})")
        params = fit(train, cfg=sel.chosen)
        for p in test:
            out[index[id(p)]] = combine(p.madmom, p.essentia, 0.0, ConsensusConfig(), params)
    return out, chosen


def kind_table(items: list[Parsed], answers: dict[str, list[ClipAnalysis | None]]
               ) -> dict[str, dict[str, dict[str, float]]]:
    """``kind (and "overall") -> answer set -> metric (METRICS and ece_key, ece_tempo) ->
    value``, over the music clips; NaN where a kind has no label for a metric."""
    kinds = music_kinds(items) + ["overall"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in kinds:
        sel = [i for i, p in enumerate(items) if p.clip.is_music
               and (kind == "overall" or p.clip.kind == kind)]
        out[kind] = {}
        for name, ans in answers.items():
            rows = [score(ans[i], items[i].clip.truth) for i in sel if ans[i] is not None]
            res = mean_scores(rows)
            conf = [confidences(ans[i], items[i].clip.truth, True) for i in sel
                    if ans[i] is not None]
            for f in ECE_FIELDS:
                pairs = [c[f] for c in conf if f in c]
                res[f"ece_{f}"] = (ece([a for a, _ in pairs], [b for _, b in pairs])
                                   if pairs else float("nan"))
            res["n"] = float(len(sel))
            out[kind][name] = res
    return out


def backend_answers(items: list[Parsed]) -> dict[str, list[ClipAnalysis | None]]:
    return {"madmom": [from_single(p.madmom, 0.0) for p in items],
            "essentia": [from_single(p.essentia, 0.0) for p in items]}


def print_kind_table(table: dict[str, dict[str, dict[str, float]]]) -> None:
    cols = list(METRICS) + [f"ece_{f}" for f in ECE_FIELDS]
    print(f"{'kind':<16}{'answer':<16}" + "".join(f"{m:>13}" for m in cols))
    for kind, rows in table.items():
        for name, res in rows.items():
            label = f"{KIND_NAMES.get(kind, kind)} ({int(res['n'])})" if name == next(
                iter(rows)) else ""
            print(f"{label:<16}{name:<16}" + "".join(
                f"{res[m]:>13.3f}" if not np.isnan(res[m]) else f"{'-':>13}" for m in cols))


def loko_goals(table: dict[str, dict[str, dict[str, float]]], name: str) -> list[str]:
    """The issue's LOKO goals the answer set ``name`` misses (empty: all met): at least the
    better library on every metric overall, at least madmom on tempo Acc1 and downbeat F for
    every kind, ECE <= 0.05 for key and tempo overall."""
    missed = []
    o = table["overall"]
    for m in METRICS:
        best = np.nanmax([o["madmom"][m], o["essentia"][m]])
        if not np.isnan(o[name][m]) and o[name][m] < best - 1e-9:
            missed.append(f"overall {m} {o[name][m]:.3f} < {best:.3f}")
    for kind, rows in table.items():
        if kind == "overall":
            continue
        for m in ("tempo_acc1", "downbeat_f"):
            c, mm = rows[name][m], rows["madmom"][m]
            if not np.isnan(c) and c < mm - 1e-9:
                missed.append(f"{kind} {m} {c:.3f} < madmom {mm:.3f}")
    for f in ECE_FIELDS:
        if o[name][f"ece_{f}"] > 0.05:
            missed.append(f"overall ECE {f} {o[name][f'ece_{f}']:.3f} > 0.05")
    return missed
