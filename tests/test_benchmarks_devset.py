"""The development set builder's cheap parts (benchmarks/devset.py): the ABC meter pre-filter
agrees with the score reader, the non-music clips are what they say, the cache round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("music21")

from benchmarks.devset import (  # noqa: E402
    Truth,
    _colored_noise,
    _may_be_3_or_4,
    _rows,
    backend_version,
    merge_refreshed,
)
from llark.demo.score import ScoreRejected, corpus_paths, load_piece  # noqa: E402


def test_the_meter_prefilter_only_refuses_what_the_reader_refuses() -> None:
    paths = corpus_paths("ryans")
    refused = [p for p in paths if not _may_be_3_or_4(p)][:6]
    kept = [p for p in paths if _may_be_3_or_4(p)][:3]
    assert refused and kept
    for p in refused:
        with pytest.raises(ScoreRejected) as err:
            load_piece("ryans", p)
        assert err.value.reason == "meter"


def test_colored_noise_has_the_asked_spectral_slope() -> None:
    rng = np.random.default_rng(0)
    n = 1 << 16
    for exponent in (0.0, 1.0, 2.0):
        x = _colored_noise(n, exponent, rng)
        assert x.dtype == np.float32 and np.abs(x).max() == pytest.approx(0.5, 1e-5)
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(n)
        band = (f > 0.001) & (f < 0.4)
        slope = np.polyfit(np.log(f[band]), np.log(spec[band] + 1e-20), 1)[0]
        assert slope == pytest.approx(-exponent, abs=0.15)


def test_cache_rows_drop_only_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "clips.jsonl"
    good = json.dumps({"id": "a"})
    path.write_text(good + "\n" + good + "\n" + '{"id": "b", "raw": {')
    assert [r["id"] for r in _rows(path)] == ["a", "a"]
    path.write_text('{"id": ' + "\n" + good + "\n")
    with pytest.raises(json.JSONDecodeError):
        _rows(path)


def test_truth_round_trips() -> None:
    t = Truth("Bb major", 96.0, 3, ((0.5, 1), (1.125, 2)), ((0.0, 2.0, "Bb:maj"),))
    from dataclasses import asdict

    assert Truth.from_dict(json.loads(json.dumps(asdict(t)))) == t
    assert Truth() == Truth.from_dict(asdict(Truth()))


def test_merging_refreshed_evidence_updates_and_drops_what_it_must(tmp_path: Path) -> None:
    """A refreshed row gets the new essentia fields and the current version; a row of the
    current version stays; an old row nobody re-made is dropped, and so is one whose re-made
    audio differs (its cached answers are of other audio), counted."""
    now = backend_version()

    def row(i: str, version: str) -> dict:
        return {"version": version, "id": i, "piece": i, "kind": "bach", "truth": {},
                "raw": {"essentia": {"key_profiles": []}, "extra": {}}, "info": {}}

    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        row("old-remade", "v0"), row("old-gone", "v0"), row("current", now),
        row("old-differs", "v0"))))
    (tmp_path / "refresh-bach.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"id": "old-remade", "key_profiles": [["edma", "C major", 0.5]], "onsets": [0.5, 1.0],
         "same_audio": True},
        {"id": "old-differs", "key_profiles": [], "onsets": [], "same_audio": False})))
    kept, bad, stale = merge_refreshed(tmp_path, sorted(tmp_path.glob("refresh-*.jsonl")))
    assert (kept, bad, stale) == (2, 1, 1)
    rows = {r["id"]: r for r in _rows(tmp_path / "clips.jsonl")}
    assert set(rows) == {"old-remade", "current"}
    assert rows["old-remade"]["version"] == now
    assert rows["old-remade"]["raw"]["essentia"]["onsets"] == [0.5, 1.0]
    assert rows["old-remade"]["raw"]["essentia"]["key_profiles"] == [["edma", "C major", 0.5]]
