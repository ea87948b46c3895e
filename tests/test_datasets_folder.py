"""folder reader: recursive audio listing, CSV / JSONL metadata keyed by file_name."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llark.errors import ConfigError, MetadataError
from pipelines.datasets.common import BadRow, ReaderOptions, SkippedFile, TrackTask
from pipelines.datasets.folder import read_tasks, source_id_of
from tests.dataset_fixtures import csv_text


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def _read(root: Path, **opts: str) -> list[TrackTask | BadRow]:
    return list(read_tasks(str(root), ReaderOptions(**opts)))


def test_audio_only_folder_is_listed_recursively(tmp_path: Path) -> None:
    _touch(tmp_path, "b.wav", "sub/deeper/a.MP3", "c.ogg", "notes.txt", "cover.jpg",
           "ground_truth.json")
    everything = _read(tmp_path)
    items = [t for t in everything if isinstance(t, TrackTask)]
    assert [t.source_id for t in items] == ["b.wav", "c.ogg", "sub/deeper/a.MP3"]
    assert all(t.split == "train" and t.title == "" for t in items)
    assert items[2].audio_uri == str(tmp_path / "sub" / "deeper" / "a.MP3")
    # the other files are not lost: each is a counted skip naming its extension
    skips = {(t.id, t.reason) for t in everything if isinstance(t, SkippedFile)}
    assert skips == {("folder:notes.txt", "not_audio:.txt"), ("folder:cover.jpg", "not_audio:.jpg"),
                     ("folder:ground_truth.json", "not_audio:.json")}
    assert len(everything) == 6


def test_csv_metadata(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _touch(tmp_path, "song one.wav", "sub/two.flac", "three.ogg", "untagged.mp3")
    (tmp_path / "metadata.csv").write_text(csv_text([
        ["file_name", "title", "artist", "tags", "genres", "caption", "split", "mood"],
        ["song one.wav", "Song, One", "Me", "rock;live", "['Rock', 'Pop']",
         'says "hi",\nthen leaves', "validation", "happy"],
        ["./sub/two.flac", "Two", "", "calm, slow", "", "", "", ""],
        ["three.ogg", "Three", "", "", "", "", "dev", ""],
        ["missing.wav", "Gone", "", "", "", "", "test", ""],
        ["../../etc/passwd", "x", "", "", "", "", "", ""],
        ["", "no name", "", "", "", "", "", ""],
        ["song one.wav", "again", "", "", "", "", "", ""],
    ]))
    with caplog.at_level(logging.WARNING, logger="llark.datasets"):
        items = _read(tmp_path)
    assert "mood" in caplog.text
    by_id = {}
    for item in items:
        by_id.setdefault(item.id, []).append(item)
    one = by_id["folder:song one.wav"][0]
    assert isinstance(one, TrackTask)
    assert one.title == "Song, One" and one.artist == "Me" and one.split == "validation"
    assert one.tags == ("rock", "live") and one.genres == ("Rock", "Pop")
    assert one.caption == 'says "hi",\nthen leaves'
    assert isinstance(by_id["folder:song one.wav"][1], BadRow)          # duplicate row
    two = by_id["folder:sub/two.flac"][0]
    assert two.tags == ("calm", "slow") and two.audio_uri == str(tmp_path / "sub" / "two.flac")
    assert "split" in by_id["folder:three.ogg"][0].message
    gone = by_id["folder:missing.wav"][0]
    assert isinstance(gone, TrackTask) and gone.split == "test"   # dead-lettered at ingest
    assert gone.audio_uri == str(tmp_path / "missing.wav")
    evil = [i for i in items if isinstance(i, BadRow) and i.error_type == "UnsafePathError"]
    assert len(evil) == 1 and evil[0].id == "folder:metadata.csv#L7"
    assert "file_name" in by_id["folder:metadata.csv#L8"][0].message
    untagged = by_id["folder:untagged.mp3"][0]
    assert isinstance(untagged, TrackTask) and untagged.row == "audio file without a metadata row"
    # 7 metadata rows + 1 audio file without a row
    assert len(items) == 8


def test_jsonl_metadata(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "b.wav")
    lines = [json.dumps({"file_name": "a.wav", "tags": ["x", "y"], "instruments": "piano; bass",
                         "composer": "Satie"}),
             "{not json",
             json.dumps(["a list"]),
             json.dumps({"file_name": "b.wav", "tags": [1, 2]}),
             ""]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines))
    items = _read(tmp_path)
    a = items[0]
    assert isinstance(a, TrackTask)
    assert a.tags == ("x", "y") and a.instruments == ("piano", "bass") and a.composer == "Satie"
    bad = [i for i in items if isinstance(i, BadRow)]
    assert [b.id for b in bad] == ["folder:metadata.jsonl#L2", "folder:metadata.jsonl#L3",
                                   "folder:b.wav"]
    assert "JSON" in bad[0].message and "object" in bad[1].message
    assert len(items) == 4       # b.wav's row is bad, so b.wav is not also ingested bare


def test_names_with_colons_and_percent(tmp_path: Path) -> None:
    _touch(tmp_path, "live: take 2.wav", "100%.wav")
    ids = sorted(t.source_id for t in _read(tmp_path))
    assert ids == ["100%25.wav", "live%3A take 2.wav"]
    assert source_id_of("a:b%c") == "a%3Ab%25c"


def test_metadata_choices(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="no audio files"):
        _read(tmp_path)
    _touch(tmp_path, "a.wav")
    (tmp_path / "metadata.csv").write_text("file_name\na.wav\n")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.wav"}\n')
    with pytest.raises(ConfigError, match="--metadata"):
        _read(tmp_path)
    chosen = _read(tmp_path, metadata=str(tmp_path / "metadata.jsonl"))
    assert [t.source_id for t in chosen] == ["a.wav"]
    (tmp_path / "metadata.jsonl").unlink()
    (tmp_path / "metadata.csv").write_text("name,title\na.wav,x\n")
    with pytest.raises(MetadataError, match="file_name"):
        _read(tmp_path)
