"""Tests of the synthetic demo corpus (llark/demo/corpus.py) at ``--scale tiny``."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from llark.demo import corpus as demo_data
from llark.demo.corpus import MTAT_TAGS, MUSICCAPS_COLUMNS, SCALES, mtat_folders, run
from pipelines.datasets.magnatagatune import DEFAULT_SPLIT, SPLIT_SCHEMES, split_of

AUDIO_EXTS = {".wav", ".mp3", ".ogg", ".flac"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "corpus"
    assert run(["--output", str(root), "--scale", "tiny", "--seed", "3"]) == 0
    return root


@pytest.fixture(scope="module")
def truth(corpus: Path) -> dict[str, Any]:
    return json.loads((corpus / "ground_truth.json").read_text(encoding="utf-8"))


def _broken(truth: dict[str, Any], dataset: str) -> list[dict[str, str]]:
    return [b for b in truth["broken"] if b["dataset"] == dataset]


def test_every_audio_file_has_truth_and_decodes(corpus: Path, truth: dict[str, Any]) -> None:
    broken_paths = {b["path"] for b in truth["broken"]}
    on_disk = {p.relative_to(corpus).as_posix() for p in corpus.rglob("*")
               if p.is_file() and p.suffix in AUDIO_EXTS}
    assert set(truth["files"]) == on_disk - broken_paths
    assert {f["dataset"] for f in truth["files"].values()} == {
        "musiccaps", "magnatagatune", "fma", "musicnet", "folder"}
    for rel, t in truth["files"].items():
        info = sf.info(str(corpus / rel))
        assert info.samplerate == t["sample_rate_hz"]
        assert info.channels == t["channels"]
        assert info.duration == pytest.approx(t["duration_s"], abs=0.01)
        assert t["key"].split(" ")[1] in ("major", "minor")
        beats = np.array([b["time"] for b in t["beats"]])
        np.testing.assert_allclose(np.diff(beats), 60.0 / t["tempo_bpm"], atol=2e-6)
        assert [b["beat_number"] for b in t["beats"]][: t["meter"]] == list(range(1, t["meter"] + 1))
        assert t["downbeats"] == [b["time"] for b in t["beats"] if b["beat_number"] == 1]
        assert t["chords"][-1]["end"] == pytest.approx(t["duration_s"], abs=1e-5)
        assert all({"name", "gm_program"} <= set(i) for i in t["instruments"])


def test_broken_entries_are_listed_and_broken(corpus: Path, truth: dict[str, Any]) -> None:
    problems = {(b["dataset"], b["problem"]) for b in truth["broken"]}
    assert problems == {
        ("musiccaps", "missing_audio"), ("magnatagatune", "corrupt_audio"),
        ("fma", "missing_audio"), ("fma", "empty_audio"), ("musicnet", "missing_audio"),
        ("folder", "missing_audio"),
    }
    for b in truth["broken"]:
        path = corpus / b["path"]
        if b["problem"] == "missing_audio":
            assert not path.exists()
        elif b["problem"] == "empty_audio":
            assert path.stat().st_size == 0
        else:
            assert path.stat().st_size > 0
            with pytest.raises(sf.LibsndfileError):
                sf.read(str(path))


def test_musiccaps_csv(corpus: Path, truth: dict[str, Any]) -> None:
    path = corpus / "musiccaps" / "musiccaps-public.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(MUSICCAPS_COLUMNS)
    df = pd.read_csv(path)
    assert list(df.columns) == list(MUSICCAPS_COLUMNS)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["caption"] for r in rows] == df["caption"].tolist()
    tricky = [c for c in df["caption"] if "\n" in c and '"' in c and "," in c]
    assert tricky
    for aspects in df["aspect_list"]:
        parsed = ast.literal_eval(aspects)
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
    assert any("'" in a for s in df["aspect_list"] for a in ast.literal_eval(s))
    assert any(y.startswith("-") and "-" in y[1:] for y in df["ytid"])
    assert {r["is_balanced_subset"] for r in rows} <= {"True", "False"}
    assert all(r["audioset_positive_labels"].startswith("/m/") for r in rows)
    files = {t["source_id"]: (rel, t) for rel, t in truth["files"].items()
             if t["dataset"] == "musiccaps"}
    missing = {b["id"] for b in _broken(truth, "musiccaps")}
    assert set(df["ytid"]) == set(files) | missing
    kinds = set()
    for row in df.itertuples():
        if row.ytid in missing:
            assert not list((corpus / "musiccaps" / "audio").glob(f"{row.ytid}.*"))
            continue
        rel, t = files[row.ytid]
        assert row.end_s - row.start_s == 10
        if t["file_is_full_video"]:
            assert t["duration_s"] > row.end_s
            assert t["clip_window_in_file_s"] == [row.start_s, row.end_s]
        else:
            assert t["duration_s"] == pytest.approx(10.0)
        kinds.add(t["file_is_full_video"])
        assert row.caption.lower().count(t["instruments"][-1]["name"]) >= 1
    assert kinds == {True, False}


def test_magnatagatune_csvs(corpus: Path, truth: dict[str, Any]) -> None:
    ann_path = corpus / "magnatagatune" / "annotations_final.csv"
    first = ann_path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith('"clip_id"\t"no voice"\t"singer"') and first.endswith('"mp3_path"')
    for line in ann_path.read_text(encoding="utf-8").splitlines():
        assert all(f.startswith('"') and f.endswith('"') for f in line.split("\t"))
    ann = pd.read_csv(ann_path, sep="\t")
    assert len(MTAT_TAGS) == 188 and ann.shape[1] == 190
    assert list(ann.columns) == ["clip_id", *MTAT_TAGS, "mp3_path"]
    assert set(np.unique(ann[list(MTAT_TAGS)].to_numpy())) <= {0, 1}
    info = pd.read_csv(corpus / "magnatagatune" / "clip_info_final.csv", sep="\t")
    assert list(info.columns) == ["clip_id", "track_number", "title", "artist", "album", "url",
                                  "segmentStart", "segmentEnd", "original_url", "mp3_path"]
    assert info["clip_id"].tolist() == ann["clip_id"].tolist()
    assert info["mp3_path"].tolist() == ann["mp3_path"].tolist()
    assert all("-" in p for p in ann["mp3_path"])
    by_path = {t["path"]: t for t in truth["files"].values() if t["dataset"] == "magnatagatune"}
    splits = {split_of(p) for p in ann["mp3_path"] if f"magnatagatune/{p}" in by_path}
    assert splits == {"train", "validation", "test"}      # under the reader's default split
    for row in ann.itertuples():
        rel = f"magnatagatune/{row.mp3_path}"
        assert (corpus / rel).exists()
        if rel in by_path:
            t = by_path[rel]
            assert (t["sample_rate_hz"], t["channels"]) == (16000, 1)
            assert t["split"] == split_of(row.mp3_path, DEFAULT_SPLIT)
            assert t["duration_s"] == pytest.approx(29.1)
            names = {i["name"] for i in t["instruments"]}
            tags = {tag for tag in MTAT_TAGS if ann.loc[row.Index, tag] == 1}
            if "drums" in names:
                assert "drums" in tags
            else:
                assert "no drums" in tags
            if "piano" in names:
                assert "piano" in tags


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("scheme", sorted(SPLIT_SCHEMES))
def test_every_scale_has_mtt_clips_in_each_split(scale: str, scheme: str) -> None:
    """``llark run`` trains on train and infers on the held-out splits: each must be non-empty."""
    n = SCALES[scale]["magnatagatune"]
    folders = mtat_folders(n)
    assert len(folders) == n + 1                          # the good clips, then the broken one
    assert {split_of(f"{f}/x.mp3", scheme) for f in folders[:n]} == {
        "train", "validation", "test"}


def test_fma_metadata(corpus: Path, truth: dict[str, Any]) -> None:
    meta = corpus / "fma" / "fma_metadata"
    lines = (meta / "tracks.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(",album,album") and lines[1].startswith(",comments,date_created")
    assert lines[2].startswith("track_id,,,")
    tracks = pd.read_csv(meta / "tracks.csv", header=[0, 1], index_col=0)
    assert tracks.index.name == "track_id"
    for col in [("album", "title"), ("artist", "name"), ("set", "split"), ("set", "subset"),
                ("track", "genre_top"), ("track", "genres"), ("track", "genres_all"),
                ("track", "title"), ("track", "duration")]:
        assert col in tracks.columns
    genres = pd.read_csv(meta / "genres.csv")
    assert list(genres.columns) == ["genre_id", "#tracks", "parent", "title", "top_level"]
    genre_ids = set(genres["genre_id"])
    for tid, row in tracks.iterrows():
        gs = ast.literal_eval(row[("track", "genres")])
        assert gs and all(isinstance(g, int) and g in genre_ids for g in gs)
        assert set(gs) <= set(ast.literal_eval(row[("track", "genres_all")]))
        assert row[("set", "split")] in ("training", "validation", "test")
    assert any("," in t and '"' in t for t in tracks[("track", "title")])
    paths = {int(tid): corpus / "fma" / "fma_small" / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
             for tid in tracks.index}
    broken = {int(b["id"]): b["problem"] for b in _broken(truth, "fma")}
    for tid, path in paths.items():
        if broken.get(tid) == "missing_audio":
            assert not path.exists()
        elif broken.get(tid) == "empty_audio":
            assert path.stat().st_size == 0
        else:
            t = truth["files"][path.relative_to(corpus).as_posix()]
            assert (t["sample_rate_hz"], t["channels"], t["duration_s"]) == (44100, 2, 30.0)
            assert t["split"] == tracks.loc[tid, ("set", "split")]


def test_musicnet(corpus: Path, truth: dict[str, Any]) -> None:
    root = corpus / "musicnet"
    meta = pd.read_csv(root / "musicnet_metadata.csv")
    assert list(meta.columns) == ["id", "composer", "composition", "movement", "ensemble",
                                  "source", "transcriber", "catalog_name", "seconds"]
    broken = {int(b["id"]) for b in _broken(truth, "musicnet")}
    splits = set()
    for row in meta.itertuples():
        found = [s for s in ("train", "test") if (root / f"{s}_data" / f"{row.id}.wav").exists()]
        if row.id in broken:
            assert not found
            continue
        assert len(found) == 1
        split = found[0]
        splits.add(split)
        labels = pd.read_csv(root / f"{split}_labels" / f"{row.id}.csv")
        assert list(labels.columns) == ["start_time", "end_time", "instrument", "note",
                                        "start_beat", "end_beat", "note_value"]
        t = truth["files"][f"musicnet/{split}_data/{row.id}.wav"]
        assert t["sample_rate_hz"] == 44100 and t["duration_s"] >= 2 * 23.78
        assert len(labels) == t["n_labels"] > 0
        assert (labels["start_time"] < labels["end_time"]).all()
        assert labels["end_time"].max() <= round(t["duration_s"] * 44100)
        # Instrument numbers are 1-based GM programs of the instruments that play.
        assert set(labels["instrument"]) == {i["gm_program"] + 1 for i in t["instruments"]}
        assert labels["note"].between(21, 108).all()
        assert labels["start_time"].is_monotonic_increasing
        assert (labels["start_beat"] >= 0).all() and (labels["end_beat"] > 0).all()
        assert set(labels["note_value"]) <= {"Sixteenth", "Eighth", "Dotted Eighth", "Quarter",
                                             "Dotted Quarter", "Half", "Dotted Half", "Whole",
                                             "Unknown"}
        assert row.seconds == round(t["duration_s"])
    assert splits == {"train", "test"}


def test_folder_dataset(corpus: Path, truth: dict[str, Any]) -> None:
    meta = pd.read_csv(corpus / "folder" / "metadata.csv")
    assert {"file_name", "title", "artist", "genres", "caption"} <= set(meta.columns)
    missing = {b["id"] for b in _broken(truth, "folder")}
    exts = set()
    for name in meta["file_name"]:
        path = corpus / "folder" / name
        assert path.exists() == (name not in missing)
        if path.exists():
            exts.add(path.suffix)
            assert f"folder/{name}" in truth["files"]
    assert exts == {".wav", ".flac", ".ogg"}


def test_rerun_is_deterministic_and_guards_foreign_dirs(
        corpus: Path, truth: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Re-running into an existing demo corpus replaces it with identical content.
    assert run(["--output", str(corpus), "--scale", "tiny", "--seed", "3"]) == 0
    again = json.loads((corpus / "ground_truth.json").read_text(encoding="utf-8"))
    assert again == truth
    out = capsys.readouterr().out
    assert "ground truth" in out and "musicnet" in out
    # A non-empty folder that is not a demo corpus is never replaced.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    assert run(["--output", str(foreign), "--scale", "tiny"]) == 2
    assert (foreign / "keep.txt").read_text() == "precious"
    assert not list(tmp_path.glob(".mine.tmp-*"))


def test_mp3_writer_reports_missing_encoder(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(demo_data.sf, "available_formats", lambda: {"WAV": "WAV"})
    monkeypatch.setattr(demo_data.shutil, "which", lambda name: None)
    with pytest.raises(demo_data.DemoDataError, match="MP3"):
        demo_data.write_audio(tmp_path / "x.mp3", np.zeros(100, np.float32), 16000)
