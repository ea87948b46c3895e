"""MusicCaps reader: the real CSV's columns and quoting, audio naming, splits, bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from llark.errors import ConfigError, MetadataError
from pipelines.datasets.common import BadRow, ReaderOptions, TrackTask
from pipelines.datasets.musiccaps import audio_names, read_tasks
from tests.dataset_fixtures import MUSICCAPS_HEADER, musiccaps_row, write_musiccaps

CAPTION = ('The low quality recording features a "live" performance, with commas, '
           'and a second line.\nIt sounds "energetic", loud; and it\'s off-key.')
ASPECTS = "['low quality', \"drummer's groove\", 'live performance, noisy']"


def _read(root: Path, **opts: str) -> list[TrackTask | BadRow]:
    return list(read_tasks(str(root), ReaderOptions(**opts)))


def test_exact_layout_and_quoting(tmp_path: Path) -> None:
    root = write_musiccaps(tmp_path / "mc", [
        musiccaps_row("-0Gj8-vB1q4", 30, 40, ASPECTS, CAPTION, False),
        musiccaps_row("--BfvyPmVMo", 20, 30, "['pop']", "short", True),
    ])
    text = (root / "musiccaps-public.csv").read_text()
    assert text.splitlines()[0] == ",".join(MUSICCAPS_HEADER)
    assert '""live""' in text     # the real file doubles embedded quotes
    tasks = _read(root)
    assert [type(t) for t in tasks] == [TrackTask, TrackTask]
    first, second = tasks
    assert first.id == "musiccaps:-0Gj8-vB1q4" and first.source_id == "-0Gj8-vB1q4"
    assert first.caption == CAPTION.strip()
    assert first.aspects == ("low quality", "drummer's groove", "live performance, noisy")
    assert (first.window_start_s, first.window_end_s) == (30.0, 40.0)
    assert first.split == "train" and second.split == "eval"
    audio = root / "audio"
    assert first.audio_uri == str(audio / "-0Gj8-vB1q4.wav")
    assert first.audio_candidates == tuple(str(audio / f"-0Gj8-vB1q4.{e}") for e in
                                           ("wav", "flac", "mp3", "ogg", "m4a", "opus", "webm"))
    assert first.row == "musiccaps-public.csv line 2"
    assert second.row == "musiccaps-public.csv line 4"    # the caption spans lines 2-3


def test_filename_template_and_audio_dir(tmp_path: Path) -> None:
    root = write_musiccaps(tmp_path / "mc", [musiccaps_row("abc", 30, 40, "[]", "c", False)])
    (task,) = _read(root, audio_dir=str(tmp_path / "dl"),
                    filename_template="clips/[{ytid}]-[{start_s}-{end_s}].mp3")
    assert task.audio_uri == str(tmp_path / "dl" / "clips" / "[abc]-[30-40].mp3")
    assert task.alt_audio_uris == ()
    assert audio_names("{ytid}_{start_s}.{ext}", "x", 1.5, 11.5)[0] == "x_1.5.wav"
    with pytest.raises(ConfigError, match="placeholders"):
        _read(root, filename_template="{video_id}.wav")
    with pytest.raises(ConfigError, match="ytid"):
        _read(root, filename_template="audio.wav")


def test_malformed_rows_become_bad_rows(tmp_path: Path) -> None:
    rows = [
        musiccaps_row("ok1", 0, 10, "['a']", "fine", False),
        musiccaps_row("badaspects", 0, 10, "['unclosed", "c", False),
        musiccaps_row("badwindow", 10, 5, "[]", "c", False),
        musiccaps_row("badnumber", "ten", 20, "[]", "c", False),       # type: ignore[arg-type]
        musiccaps_row("badbool", 0, 10, "[]", "c", False)[:-1] + ["perhaps"],
        musiccaps_row("a:b", 0, 10, "[]", "c", False),
        musiccaps_row("../../etc/passwd", 0, 10, "[]", "c", False),
        ["short", "0", "10"],
        musiccaps_row("ok1", 0, 10, "['a']", "dup", False),
        musiccaps_row("ok2", 0, 10, "[]", "", True),
    ]
    tasks = _read(write_musiccaps(tmp_path / "mc", rows))
    assert len(tasks) == len(rows)          # every row accounted for
    good = [t for t in tasks if isinstance(t, TrackTask)]
    bad = {t.id: t for t in tasks if isinstance(t, BadRow)}
    assert [t.source_id for t in good] == ["ok1", "ok2"]
    assert "aspect_list" in bad["musiccaps:badaspects"].message
    assert "start" in bad["musiccaps:badwindow"].message
    assert "start_s" in bad["musiccaps:badnumber"].message
    assert "is_audioset_eval" in bad["musiccaps:badbool"].message
    assert "musiccaps:musiccaps-public.csv#L7" in bad          # ':' in the ytid: named by line
    assert bad["musiccaps:../../etc/passwd"].error_type == "UnsafePathError"
    assert "3 fields" in bad["musiccaps:short"].message
    dup = [t for t in tasks if isinstance(t, BadRow) and t.id == "musiccaps:ok1"]
    assert len(dup) == 1 and "duplicate" in dup[0].message
    assert all(b.error_type in ("MetadataError", "UnsafePathError") for b in bad.values())


def test_missing_columns_or_file_fail_the_read(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="not found"):
        _read(tmp_path)
    (tmp_path / "musiccaps-public.csv").write_text("ytid,start_s,end_s\nx,0,10\n")
    with pytest.raises(MetadataError, match="aspect_list"):
        _read(tmp_path)
    (tmp_path / "musiccaps-public.csv").write_text("")
    with pytest.raises(MetadataError, match="empty"):
        _read(tmp_path)
