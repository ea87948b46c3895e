"""FMA reader: tracks.csv's three header lines, genre ids → names, subsets, splits, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from llark.errors import ConfigError, MetadataError
from pipelines.datasets.common import BadRow, ReaderOptions, TrackTask
from pipelines.datasets.fma import audio_path, in_subset, read_tasks
from tests.dataset_fixtures import fma_row, write_fma


def _read(root: Path, **opts: str) -> list[TrackTask | BadRow]:
    return list(read_tasks(str(root), ReaderOptions(**opts)))


def _corpus(tmp_path: Path) -> Path:
    root = write_fma(tmp_path / "fma", [
        fma_row(2, "training", "small", "[21]", title="Food", artist="AWOL",
                tags="['hiphop', 'awol']", genre_top="Hip-Hop"),
        fma_row(140, "validation", "medium", "[12, 76]", title="Queen Of The Wires"),
        fma_row(148, "test", "large", "[]", genre_top="Electronic"),
        fma_row(155, "training", "small", "[12]"),
    ])
    (root / "fma_small").mkdir()
    return root


def test_tracks_csv_layout_is_what_pandas_reads(tmp_path: Path) -> None:
    import pandas as pd

    root = _corpus(tmp_path)
    lines = (root / "fma_metadata" / "tracks.csv").read_text().splitlines()
    assert lines[0].startswith(",album,album,artist,set,set,track")
    assert lines[1].startswith(",title,tracks,name,split,subset,duration,genre_top")
    assert lines[2].startswith("track_id,,,")
    df = pd.read_csv(root / "fma_metadata" / "tracks.csv", header=[0, 1], index_col=0)
    assert df.loc[2, ("track", "title")] == "Food" and df.loc[140, ("set", "subset")] == "medium"


def test_genres_titles_paths_and_splits(tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    tasks = {t.id: t for t in _read(root, subset="large")}
    assert set(tasks) == {"fma:000002", "fma:000140", "fma:000148", "fma:000155"}
    food = tasks["fma:000002"]
    assert isinstance(food, TrackTask)
    assert food.source_id == "000002" and food.split == "train"
    assert food.audio_uri == str(root / "fma_large" / "000" / "000002.mp3")
    assert food.genres == ("Hip-Hop",) and food.tags == ("hiphop", "awol")
    assert food.title == "Food" and food.artist == "AWOL" and food.album == "An Album"
    assert tasks["fma:000140"].genres == ("Rock", "Experimental Pop")
    assert tasks["fma:000140"].split == "validation"
    assert tasks["fma:000148"].genres == ("Electronic",)     # empty genres: genre_top
    assert tasks["fma:000148"].split == "test"
    assert audio_path(2) == "000/000002.mp3" and audio_path(123456) == "123/123456.mp3"


def test_subsets_nest(tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    ids = {s: sorted(t.source_id for t in _read(root, subset=s))
           for s in ("small", "medium", "large", "full")}
    assert ids["small"] == ["000002", "000155"]
    assert ids["medium"] == ["000002", "000140", "000155"]
    assert ids["large"] == ids["full"] == ["000002", "000140", "000148", "000155"]
    assert in_subset("small", "medium") and not in_subset("large", "medium")
    assert in_subset("anything", "full")
    # without --subset, the one fma_<subset> folder decides
    assert sorted(t.source_id for t in _read(root)) == ids["small"]
    (root / "fma_medium").mkdir()
    with pytest.raises(ConfigError, match="--subset"):
        _read(root)
    with pytest.raises(ConfigError, match="--subset"):
        _read(root, audio_dir=str(root / "fma_small"))
    with pytest.raises(ConfigError):
        _read(root, subset="huge")


def test_bad_rows(tmp_path: Path) -> None:
    root = write_fma(tmp_path / "fma", [
        fma_row(2, "training", "small", "[21]"),
        fma_row(3, "training", "small", "[9999]"),          # unknown genre id
        fma_row(5, "dev", "small", "[21]"),                  # unknown split
        fma_row(10, "training", "tiny", "[21]"),             # unknown subset
        fma_row(20, "training", "small", "['Rock']"),        # genre names, not ids
        ["abc"] + fma_row(1, "training", "small", "[]")[1:],  # non-numeric id
        fma_row(2, "training", "small", "[21]"),             # duplicate
    ])
    items = _read(root, subset="small")
    assert len(items) == 7
    good = [t for t in items if isinstance(t, TrackTask)]
    bad = {t.id: t for t in items if isinstance(t, BadRow) and t.id != "fma:000002"}
    assert [t.id for t in good] == ["fma:000002"]
    assert "9999" in bad["fma:000003"].message
    assert "set/split" in bad["fma:000005"].message
    assert "set/subset" in bad["fma:000010"].message
    assert "integers" in bad["fma:000020"].message
    assert "fma:tracks.csv#L9" in bad
    assert any(isinstance(t, BadRow) and "duplicate" in t.message for t in items)


def test_missing_header_columns(tmp_path: Path) -> None:
    root = write_fma(tmp_path / "fma", [])
    (root / "fma_metadata" / "tracks.csv").write_text("track_id,title\n2,Food\n")
    with pytest.raises(MetadataError, match="set/split"):
        _read(root, subset="small")


def test_expected_length_is_the_clip_or_the_whole_track(tmp_path: Path) -> None:
    root = write_fma(tmp_path / "fma", [
        fma_row(2, "training", "small", "[21]", duration="168"),
        fma_row(3, "training", "small", "[21]", duration="20"),     # shorter than a clip
        fma_row(5, "training", "small", "[21]", duration=""),
        fma_row(10, "training", "small", "[21]", duration="long"),
    ])
    (root / "fma_small").mkdir()
    (root / "fma_full").mkdir()
    for subset, want in (("small", {"fma:000002": 30.0, "fma:000003": 20.0, "fma:000005": None}),
                         ("full", {"fma:000002": 168.0, "fma:000003": 20.0, "fma:000005": None})):
        items = _read(root, subset=subset)
        assert {t.id: t.expected_duration_s for t in items if isinstance(t, TrackTask)} == want
        (bad,) = [t for t in items if isinstance(t, BadRow)]
        assert bad.id == "fma:000010" and "track/duration" in bad.message
        assert bad.row == "tracks.csv line 7"
