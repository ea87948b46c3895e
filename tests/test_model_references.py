"""The references beside every model figure: best constant answers and the audio-ablated
checkpoint (model/references.py, model/evaluate.py, llark infer --ablate-audio).

Expected values are worked out by hand in the comments, not by the code under test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model import references as refs
from model.evaluate import evaluate, markdown_report


def rec(task, prediction, condition="heard", clip="c", dataset="d", **labels):
    return {"clip_id": clip, "task": task, "prediction": prediction, "condition": condition,
            "labels": {"dataset": dataset, "key": "", "tempo_bpm": None, "genres": [],
                       "instruments": [], **labels}}


def test_best_constant_key_by_mirex():
    # references A minor, A minor, C major. Candidate A minor: 1 + 1 + 0.3 (relative) = 2.3;
    # C major: 0.3 + 0.3 + 1 = 1.6; E minor (fifth above A minor): 0.5 + 0.5 + 0 = 1.0.
    assert refs.best_key(["A minor", "A minor", "C major"]) == "A minor"
    # MIREX credits an estimate a fifth *above* the reference. References G, G, C major:
    # G major scores 1 + 1 + 0.5 (G is a fifth above C) = 2.5; C major 0 + 0 + 1 = 1.
    assert refs.best_key(["G major", "G major", "C major"]) == "G major"
    # References C, C, G major: C major 1 + 1 + 0 = 2.0; G major 0.5 + 0.5 + 1 = 2.0: a tie,
    # broken by KEYS order (C major first)
    assert refs.best_key(["C major", "C major", "G major"]) == "C major"


def test_best_constant_tempo_acc1_and_acc2():
    tempi = [60.0, 120.0, 121.0, 240.0]
    # Acc1: at most two hits (120 and 121 together need c in [116.16, 124.8]); the slowest grid
    # point there is 116.5.
    assert refs.best_tempo(tempi, 0) == 116.5
    # Acc2: 116.5 also hits 60 (x2 = 120, 2.9 % off) and 240 (x1/2): all four.
    assert refs.best_tempo(tempi, 1) == 116.5
    # three tempi a fifth apart: no constant hits two within 4 %, the slowest one wins
    assert refs.best_tempo([100.0, 150.0, 225.0], 0) == 96.0        # 100 * 0.96


def test_best_constant_instruments_greedy_micro_f1():
    sets = [["piano", "drums"], ["piano"], ["guitar"]]
    # {piano}: tp 2, fp 1, fn 2 -> 4/7; + drums: tp 3, fp 3, fn 1 -> 6/10; + guitar: tp 4,
    # fp 5, fn 0 -> 8/13 = 0.615 > 0.6: all three are chosen.
    assert refs.best_instruments(sets) == ["drums", "guitar", "piano"]
    # a label nobody else has lowers micro F1: {piano}: tp 3, fp 1, fn 1 -> 0.75;
    # + cello: tp 4, fp 4, fn 0 -> 8/12 = 0.667 < 0.75: stop.
    assert refs.best_instruments([["piano"], ["piano"], ["piano"], ["cello"]]) == ["piano"]


def test_genre_constant_is_the_commonest_label():
    assert refs.best_genre([["rock"], ["jazz", "rock"], ["jazz"], ["pop"], ["rock"]]) == "rock"


def test_eval_scores_ablated_records_apart_and_constants_through_the_parser():
    keys = ["A minor", "A minor", "C major", "E minor"]
    records = []
    for i, k in enumerate(keys):
        records.append(rec("key", f"It is in {k}.", clip=str(i), key=k))
        records.append(rec("key", "It is in A minor.", condition="zeroed", clip=str(i), key=k))
        records.append(rec("key", "I cannot tell.", condition="shuffled", clip=str(i), key=k))
        tempo = 80.0 + 40 * i                                       # 80, 120, 160, 200
        records.append(rec("tempo", f"{tempo:g} BPM", clip=str(i), tempo_bpm=tempo))
    m, scored = evaluate(records + [rec("key", "C major", condition="muted", key="C major")])
    assert m["n_predictions"] == 17 and m["n_scored"] == 8           # the heard ones
    assert m["not_scored_condition"] == {"muted": 1}                # an unknown one is counted
    assert "not scored, unknown 'condition': muted 1" in markdown_report(m, "p")
    assert m["key"]["weighted_score"] == 1.0 and m["tempo"]["acc1"] == 1.0
    ref = m["references"]
    # zeroed always says A minor: 1 + 1 + 0.3 (relative of C major) + 0 (A is a fifth below
    # E, not above) = 2.3 / 4
    assert ref["zeroed"]["key"]["weighted_score"] == pytest.approx(2.3 / 4)
    assert ref["shuffled"]["key"]["weighted_score"] == 0.0
    assert ref["shuffled"]["key"]["parsed_rate"] == 0.0
    # constant key: A minor (2.3) beats E minor (0.5 + 0.5 + 0 + 1 = 2.0) and C major
    # (0.3 + 0.3 + 1 + 0 = 1.6)
    assert ref["constant"]["key"]["answers"] == {"*": "It is in A minor."}
    assert ref["constant"]["key"]["metrics"]["key"]["weighted_score"] == pytest.approx(0.575)
    # constant tempo: 80/120/160/200 are > 8 % apart, one hit at most -> 1/4; Acc2: 80 hits
    # 80, 160 (x1/2) -> but 76.8 (the slowest point within 4 % of 80) also hits 160/2 = 80:
    # 76.8 is off the grid; 77.0 hits 80 (3.75 %) and 160 (x1/2, 3.75 %): 2/4
    assert ref["constant"]["tempo_acc1"]["metrics"]["tempo"]["acc1"] == 0.25
    assert ref["constant"]["tempo_acc2"]["metrics"]["tempo"]["acc2"] == 0.5
    md = markdown_report(m, "p.jsonl")
    assert "| key | 4 | MIREX weighted score | 1.000 | 0.575 | 0.000 | 0.575 | — | 100% |" in md
    assert "| tempo | 4 | Acc1 (4 %) | 1.000 | — | — | 0.250 | — | 100% |" in md


def test_genre_and_instrument_constants_per_dataset():
    records = [rec("genre", "rock", clip="1", dataset="a", genres=["rock"]),
               rec("genre", "rock", clip="2", dataset="a", genres=["jazz"]),
               rec("genre", "jazz", clip="3", dataset="a", genres=["jazz"]),
               rec("genre", "pop", clip="4", dataset="b", genres=["pop"]),
               rec("instruments", "piano", clip="5", dataset="b", instruments=["piano"])]
    m, _ = evaluate(records)
    c = m["references"]["constant"]
    assert c["genre"]["answers"] == {"a": "It is jazz.", "b": "It is pop."}
    # a: jazz right on 2 of 3, b: pop right on 1 of 1 -> 3/4
    assert c["genre"]["metrics"]["genre"]["accuracy"] == 0.75
    assert c["instruments"]["answers"] == {"b": "piano."}


# ---------------------------------------------------------------- llark infer --ablate-audio

def test_ablate_zero_and_shuffle():
    from model.infer import Request, ablate

    reqs = [Request(f"c{i}", task, "q", np.full((3, 2), i + 1, np.float16))
            for i in range(5) for task in ("key", "tempo")]
    zero = ablate(reqs, "zero")
    assert all(not r.frames.any() and r.condition == "zeroed" for r in zero)
    assert all(r.frames.any() for r in reqs)                       # the originals untouched
    shuf = ablate(reqs, "shuffle", seed=3)
    donors = {r.clip_id: int(r.frames[0, 0]) - 1 for r in shuf}
    assert all(donors[f"c{i}"] != i for i in range(5))              # nobody keeps its own
    assert sorted(donors.values()) == list(range(5))                # each clip's frames once
    assert all(r.condition == "shuffled" for r in shuf)
    for a, b in zip(shuf[0::2], shuf[1::2]):                        # one donor per clip
        assert np.array_equal(a.frames, b.frames)
    from llark.errors import ConfigError
    with pytest.raises(ConfigError, match="at least two clips"):
        ablate(reqs[:2], "shuffle")


def test_infer_ablate_audio_writes_every_condition(tmp_path):
    from model.infer import run as infer_run
    from model.evaluate import run as eval_run
    from model.train import run as train_run
    from tests.shard_factory import make_shard_set

    make_shard_set(tmp_path / "s", n_rows=6, n_frames=4, dim=128, encoder="features-v1",
                   splits=("train", "test"))
    assert train_run(["--shards", str(tmp_path / "s"), "--output", str(tmp_path / "run"),
                      "max_steps=2", "tiny_hidden_size=32", "trackers=", "splits="]) == 0
    out = tmp_path / "p.jsonl"
    assert infer_run(["--checkpoint", str(tmp_path / "run"), "--shards", str(tmp_path / "s"),
                      "--split", "test", "--tasks", "key,tempo", "--max-new-tokens", "4",
                      "--ablate-audio", "zero", "--ablate-audio", "shuffle",
                      "--output", str(out)]) == 0
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    by = {a: [l for l in lines if l["condition"] == a] for a in ("heard", "zeroed", "shuffled")}
    assert all(len(v) == 3 * 2 for v in by.values())                # 3 test clips x 2 tasks
    assert [l["clip_id"] for l in by["heard"]] == [l["clip_id"] for l in by["zeroed"]]
    assert eval_run(["--predictions", str(out), "--output", str(tmp_path / "e"),
                     "--no-meteor"]) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["n_scored"] == 6 and set(m["references"]) >= {"zeroed", "shuffled", "constant"}


# ---------------------------------------------------------------- frames pooled into tokens

def test_pool_frames_means_groups_and_keeps_the_tail():
    from model.data import pool_frames

    x = np.arange(14, dtype=np.float16).reshape(7, 2)             # frames 0..6, dim 2
    got = pool_frames(x, 3)
    # groups {0,1,2}, {3,4,5}, {6}: rows (0,1),(2,3),(4,5) -> (2,3); (6..11) -> (8,9); (12,13)
    assert got.dtype == np.float16 and got.shape == (3, 2)
    assert got.tolist() == [[2.0, 3.0], [8.0, 9.0], [12.0, 13.0]]
    assert pool_frames(x, 1) is x


def test_audio_pool_is_saved_in_the_spec_and_used_by_infer(tmp_path):
    from model.infer import run as infer_run
    from model.modeling import read_spec
    from model.checkpoint import resolve_checkpoint
    from model.train import run as train_run
    from tests.shard_factory import make_shard_set

    make_shard_set(tmp_path / "s", n_rows=4, n_frames=9, dim=16, splits=("train", "test"))
    assert train_run(["--shards", str(tmp_path / "s"), "--output", str(tmp_path / "run"),
                      "max_steps=1", "tiny_hidden_size=32", "trackers=", "splits=",
                      "audio_pool=4"]) == 0
    assert read_spec(resolve_checkpoint(tmp_path / "run")).audio_pool == 4
    # 9 frames pooled by 4 -> 3 audio tokens per clip: watch what the projector is given
    import torch
    from model.modeling import Projector

    seen: list[tuple[int, ...]] = []

    def hook(module, args, output):
        if isinstance(module, Projector):
            seen.append(tuple(args[0].shape))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        out = tmp_path / "p.jsonl"
        assert infer_run(["--checkpoint", str(tmp_path / "run"), "--shards",
                          str(tmp_path / "s"), "--tasks", "key", "--max-new-tokens", "2",
                          "--output", str(out)]) == 0
    finally:
        handle.remove()
    assert len(out.read_text().splitlines()) == 4
    # the projector gets the valid frames of a batch flattened: 4 clips x 3 (not x 9)
    assert sum(shape[0] for shape in seen) == 4 * 3 and all(s[-1] == 16 for s in seen)
    # resuming with another pool is refused (a structural key)
    assert train_run(["--shards", str(tmp_path / "s"), "--output", str(tmp_path / "run"),
                      "max_steps=2", "tiny_hidden_size=32", "trackers=", "splits=",
                      "audio_pool=2"]) == 2
