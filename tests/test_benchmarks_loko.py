"""Leave-one-kind-out machinery (benchmarks/loko.py, the tempo part of benchmarks/fit_fusion.py)
on small synthetic clips: the split keeps a held-out kind's pieces out of training, the fast
tempo evaluator of the selection gives the runtime's answer, and the octave guard set to
'never move' gives madmom's own tempo accuracy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from annotate.fusion import FusionParams, decide_tempo
from annotate.types import BackendAnalysis, Beat, ChordSegment, KeyEstimate, TempoEstimate
from benchmarks.devset import DevClip, Truth
from benchmarks.fit_fusion import FitConfig, Parsed, fit_tempo, tempo_hits, tempo_items
from benchmarks.loko import split
from llark.music import tempo_accuracy

DUR = 20.0


def _grid(bpm: float, start: float = 0.5) -> tuple[Beat, ...]:
    ibi = 60.0 / bpm
    return tuple(Beat(round(start + i * ibi, 4), i % 4 + 1) for i in range(int((DUR - 1) / ibi)))


def _clip(i: int, kind: str, ref: float, mm_top: float, mm_grid: float, ess: float,
          onsets_bpm: float) -> Parsed:
    m = BackendAnalysis("madmom", DUR, TempoEstimate(mm_top, 0.4, ((mm_top, 0.4),
                                                                   (mm_top * 2, 0.2))),
                        _grid(mm_grid), 4, 0.8, KeyEstimate("C major", 0.5), (), 0.5, 0.6)
    onsets = tuple(round(t, 3) for t in np.arange(0.3, DUR - 0.5, 60.0 / onsets_bpm))
    e = BackendAnalysis("essentia", DUR, TempoEstimate(ess, 0.5, ((ess, 1.0),)),
                        tuple(Beat(b.time_s + 0.01, 0) for b in _grid(ess)), 0, 0.0,
                        KeyEstimate("C major", 0.5), (ChordSegment(0.0, DUR, "C:maj"),), 0.5,
                        0.5, onsets=onsets)
    truth = Truth(key="C major", tempo_bpm=ref, meter=4)
    clip = DevClip(f"{kind}:{i}", f"piece{i // 2}", kind, truth, {}, {})
    return Parsed(clip, m, e)


def _set(seed: int = 0) -> list[Parsed]:
    """Three kinds: where madmom is right, where essentia's double is, and a mix."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(36):
        kind = ("a", "b", "c")[i % 3]
        base = float(rng.uniform(60, 110))
        if kind == "a":     # madmom right, essentia at the double
            out.append(_clip(i, kind, base, base, base, 2 * base, 2 * base))
        elif kind == "b":   # essentia right at the double, dense onsets there
            out.append(_clip(i, kind, 2 * base, base, 2 * base, 2 * base, 4 * base))
        else:
            ref = base if rng.random() < 0.5 else 2 * base
            out.append(_clip(i, kind, ref, base, ref, 2 * base, 2 * ref))
    return out


def test_split_keeps_the_held_out_kinds_pieces_out_of_training() -> None:
    items = _set()
    train, test = split(items, "b", lambda p: p.clip.kind, lambda p: p.clip.piece)
    held = {p.clip.piece for p in test}
    assert test and all(p.clip.kind == "b" for p in test)
    assert train and not any(p.clip.piece in held or p.clip.kind == "b" for p in train)
    # a piece rendered in two kinds: its other rendering leaves training too
    assert any(p.clip.kind != "b" and p.clip.piece in held for p in items)
    # everything else of the other kinds is in training
    assert len(train) == sum(p.clip.kind != "b" and p.clip.piece not in held for p in items)


@pytest.mark.parametrize("threshold", [0.0, 0.6, 1.01])
def test_the_fast_tempo_evaluator_gives_the_runtimes_answer(threshold: float) -> None:
    items = _set()
    train, test = split(items, "c", lambda p: p.clip.kind, lambda p: p.clip.piece)
    params = fit_tempo(tempo_items(train), FitConfig(octave_threshold=threshold),
                       FusionParams.neutral())
    fast = tempo_hits(tempo_items(test), params)
    runtime = [tempo_accuracy(p.clip.truth.tempo_bpm,
                              decide_tempo(p.madmom, p.essentia, params).bpm)[0] for p in test]
    assert fast == runtime


def test_a_guard_that_never_moves_scores_madmoms_own_tempo() -> None:
    items = _set(1)
    params = fit_tempo(tempo_items(items), FitConfig(), FusionParams.neutral())
    never = replace(params, octave_threshold=1.01)
    madmom = [tempo_accuracy(p.clip.truth.tempo_bpm, p.madmom.tempo.bpm)[0] for p in items]
    assert tempo_hits(tempo_items(items), never) == madmom
    assert np.mean(madmom) < 1.0          # the set has clips where madmom is wrong
