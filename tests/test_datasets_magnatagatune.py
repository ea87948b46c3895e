"""MagnaTagATune reader: tab-separated all-quoted files, tag columns, the join, folder splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from llark.errors import ConfigError, MetadataError
from pipelines.datasets.common import BadRow, ReaderOptions, SkippedFile, TrackTask
from pipelines.datasets.magnatagatune import FOLDER_SPLITS, SPLIT_SCHEMES, read_tasks, split_of
from tests.dataset_fixtures import MTAT_TAGS, mtat_info, write_mtat

PATH_F = "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3"
PATH_0 = "0/william_brooks-bitter_circus-01-the_gift-0-29.mp3"
PATH_B = "b/jacob_heringman-siena_lute_book-01-la_volunte-88-117.mp3"


def _read(root: Path) -> list[TrackTask | BadRow]:
    return list(read_tasks(str(root), ReaderOptions()))


def test_exact_layout_tags_join_and_splits(tmp_path: Path) -> None:
    root = write_mtat(tmp_path, [
        ["2", "0", "0", "0", "1", "1", PATH_F],
        ["6", "1", "0", "1", "0", "0", PATH_0],
        ["10", "0", "0", "0", "0", "0", PATH_B],
    ], [
        mtat_info("2", "BWV54 - I Aria", "American Bach Soloists", PATH_F),
        mtat_info("6", "The Gift", "William Brooks", PATH_0),
        mtat_info("10", "La Volunte", "Jacob Heringman", PATH_B),
    ])
    first_line = (root / "annotations_final.csv").read_text().splitlines()[0]
    assert first_line.startswith('"clip_id"\t"no voice"\t') and first_line.endswith('"mp3_path"')
    tasks = {t.id: t for t in _read(root)}
    assert set(tasks) == {"magnatagatune:2", "magnatagatune:6", "magnatagatune:10"}
    aria = tasks["magnatagatune:2"]
    assert isinstance(aria, TrackTask)
    assert aria.tags == ("classical", "slow")
    assert aria.title == "BWV54 - I Aria" and aria.artist == "American Bach Soloists"
    assert aria.album == "An Album"
    assert aria.audio_uri == str(root / PATH_F) and aria.split == "test"
    assert tasks["magnatagatune:6"].tags == ("no voice", "guitar")
    assert tasks["magnatagatune:6"].split == "train"
    assert tasks["magnatagatune:10"].tags == () and tasks["magnatagatune:10"].split == "train"


def test_folder_splits() -> None:
    # the default is the literature's 12/1/3 split (Dieleman & Schrauwen 2014)
    assert FOLDER_SPLITS == SPLIT_SCHEMES["12-1-3"]
    for scheme, train, validation in (("12-1-3", "0123456789ab", "c"),
                                      ("11-2-3", "0123456789a", "bc")):
        folders = SPLIT_SCHEMES[scheme]
        assert sorted(folders) == list("0123456789abcdef")
        assert {f for f, s in folders.items() if s == "train"} == set(train)
        assert {f for f, s in folders.items() if s == "validation"} == set(validation)
        assert {f for f, s in folders.items() if s == "test"} == set("def")
    assert split_of("b/x.mp3") == "train" and split_of("b/x.mp3", "11-2-3") == "validation"
    for bad in ("g/x.mp3", "x.mp3", "ab/x.mp3"):
        with pytest.raises(MetadataError):
            split_of(bad)
    with pytest.raises(ConfigError, match="12-1-3"):
        split_of("b/x.mp3", "10-3-3")


def test_split_flag_and_orphan_mp3s(tmp_path: Path) -> None:
    root = write_mtat(tmp_path, [["10", "0", "0", "0", "0", "0", PATH_B]],
                      [mtat_info("10", "La Volunte", "Jacob Heringman", PATH_B)])
    for rel in (PATH_B, "b/unlisted.mp3", "e/also-unlisted.mp3"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"ID3")
    items = _read(root)
    (task,) = [t for t in items if isinstance(t, TrackTask)]
    assert task.split == "train"
    other = list(read_tasks(str(root), ReaderOptions(mtt_split="11-2-3")))
    assert [t.split for t in other if isinstance(t, TrackTask)] == ["validation"]
    skipped = sorted((t.id, t.reason) for t in items if isinstance(t, SkippedFile))
    assert skipped == [("magnatagatune:b/unlisted.mp3", "audio_without_metadata"),
                       ("magnatagatune:e/also-unlisted.mp3", "audio_without_metadata")]


def test_bad_rows_and_one_sided_clips(tmp_path: Path) -> None:
    root = write_mtat(tmp_path, [
        ["1", "0", "0", "0", "0", "1", "a/one.mp3"],
        ["3", "0", "2", "0", "0", "0", "a/three.mp3"],              # tag value 2
        ["4", "0", "0", "0", "0", "0", "../../etc/passwd"],           # traversal
        ["5", "0", "0", "0", "0", "0", "a/five.mp3"],                 # paths disagree
        ["7", "0", "0", "0", "0", "0", "g/seven.mp3"],                # not one of the 16 folders
        ["8", "0", "0", "0", "0", "a/eight.mp3"],                     # a field short
        ["", "0", "0", "0", "0", "0", "a/none.mp3"],                  # no clip_id
        ["1", "1", "1", "1", "1", "1", "a/one-again.mp3"],            # clip_id twice
        ["9", "0", "1", "0", "0", "0", "a/nine.mp3"],                 # not in clip_info
    ], [
        mtat_info("1", "One", "A", "a/one.mp3"),
        mtat_info("3", "Three", "A", "a/three.mp3"),
        mtat_info("4", "Four", "A", "../../etc/passwd"),
        mtat_info("5", "Five", "A", "a/five-other.mp3"),
        mtat_info("7", "Seven", "A", "g/seven.mp3"),
        mtat_info("8", "Eight", "A", "a/eight.mp3"),
        mtat_info("11", "Eleven", "B", "c/eleven.mp3"),               # not in annotations
    ])
    items = _read(root)
    good = {t.id: t for t in items if isinstance(t, TrackTask)}
    bad = {t.id: t for t in items if isinstance(t, BadRow)}
    assert set(good) == {"magnatagatune:1", "magnatagatune:9", "magnatagatune:11"}
    assert good["magnatagatune:1"].tags == ("slow",)           # the first of the two rows
    assert good["magnatagatune:9"].tags == ("singer",) and good["magnatagatune:9"].title == ""
    assert good["magnatagatune:11"].tags == () and good["magnatagatune:11"].title == "Eleven"
    assert good["magnatagatune:11"].split == "validation"
    assert "expected 0 or 1" in bad["magnatagatune:3"].message
    assert bad["magnatagatune:4"].error_type == "UnsafePathError"
    assert "disagree" in bad["magnatagatune:5"].message
    assert "folders" in bad["magnatagatune:7"].message
    assert "fields" in bad["magnatagatune:8"].message
    assert "magnatagatune:annotations_final.csv#L8" in bad      # no clip_id: named by line
    assert "listed twice" in bad["magnatagatune:annotations_final.csv#L9"].message
    # 9 annotation rows + 1 clip_info-only clip = 10 inputs, each exactly once
    assert len(items) == 10


def test_header_problems_fail_the_read(tmp_path: Path) -> None:
    write_mtat(tmp_path, [], [])
    (tmp_path / "annotations_final.csv").write_text('"id"\t"guitar"\n"1"\t"0"\n')
    with pytest.raises(MetadataError, match="clip_id"):
        _read(tmp_path)
    write_mtat(tmp_path, [], [], tags=MTAT_TAGS)
    (tmp_path / "clip_info_final.csv").unlink()
    with pytest.raises(MetadataError, match="not found"):
        _read(tmp_path)
