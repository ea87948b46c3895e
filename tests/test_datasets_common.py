"""Shared reader machinery: safe paths, value parsing, tasks, bad rows, duplicates, GM names."""

from __future__ import annotations

import pytest

from llark.errors import AudioNotFoundError, MetadataError, UnsafePathError
from pipelines.datasets import read_tasks, reader
from pipelines.datasets.common import (
    BadRow,
    ReaderOptions,
    TrackTask,
    bad_row,
    csv_rows,
    dedupe,
    parse_bool,
    parse_int_list,
    parse_str_list,
    safe_join,
    safe_relative,
)
from pipelines.datasets.gm import GM_PROGRAMS, program_name


@pytest.mark.parametrize("evil", [
    "../../etc/passwd", "a/../../etc/passwd", "..", "a/b/../../..", "/etc/passwd",
    "\\\\server\\share\\x.wav", "..\\..\\windows\\system.ini", "C:\\x.wav", "c:x.wav",
    "file:///etc/passwd", "gs://other-bucket/x.wav", "a\x00b.wav", "", ".", "./",
])
def test_safe_join_refuses_escapes(evil: str, tmp_path) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(str(tmp_path), evil)


def test_safe_join_keeps_paths_inside(tmp_path) -> None:
    base = str(tmp_path)
    assert safe_join(base, "a/b.wav") == f"{base}/a/b.wav"
    assert safe_join(base, "./a//b.wav") == f"{base}/a/b.wav"
    assert safe_join(base, "-0Gj8-vB1q4.wav") == f"{base}/-0Gj8-vB1q4.wav"
    assert safe_join(base, "a..b/..c.wav") == f"{base}/a..b/..c.wav"   # dots inside names are fine
    assert safe_join("gs://bucket/data", "f/x.mp3") == "gs://bucket/data/f/x.mp3"
    assert safe_relative("sub\\x.wav") == "sub/x.wav"


def test_unsafe_path_is_a_metadata_error() -> None:
    # the dead letter of a traversal attempt is typed, and a MetadataError for callers
    with pytest.raises(MetadataError):
        safe_join("/data", "../x")


def test_list_literals() -> None:
    assert parse_str_list("['low quality', \"drummer's groove\", 'a, b']", "x") == (
        "low quality", "drummer's groove", "a, b")
    assert parse_str_list("", "x") == ()
    assert parse_int_list("[21, 76]", "g") == (21, 76)
    for bad in ("['unclosed", "[1, 2]", "{'a': 1}", "__import__('os')"):
        with pytest.raises(MetadataError):
            parse_str_list(bad, "aspect_list")
    for bad in ("[1.5]", "['1']", "[True]", "1"):
        with pytest.raises(MetadataError):
            parse_int_list(bad, "genres")


def test_parse_bool() -> None:
    assert parse_bool("True", "x") is True and parse_bool("false", "x") is False
    with pytest.raises(MetadataError, match="is_audioset_eval"):
        parse_bool("maybe", "is_audioset_eval")


def test_csv_rows_give_start_lines_of_multiline_records() -> None:
    text = 'a,b\n1,"x\ny\nz"\n2,w\n\n3,v\n'
    rows = list(csv_rows(text))
    assert [(r.line, r.values) for r in rows] == [
        (1, ["a", "b"]), (2, ["1", "x\ny\nz"]), (5, ["2", "w"]), (7, ["3", "v"])]


def test_track_task_validates() -> None:
    ok = TrackTask(id="folder:a.wav", dataset="folder", source_id="a.wav", split="train",
                   audio_uri="/d/a.wav")
    assert ok.audio_candidates == ("/d/a.wav",)
    with pytest.raises(ValueError, match="split"):
        TrackTask(id="folder:a", dataset="folder", source_id="a", split="dev", audio_uri="x")
    with pytest.raises(ValueError, match="is not"):
        TrackTask(id="fma:b", dataset="folder", source_id="a", split="train", audio_uri="x")
    with pytest.raises(ValueError, match="window"):
        TrackTask(id="folder:a", dataset="folder", source_id="a", split="train", audio_uri="x",
                  window_start_s=10.0)
    clip = ok.make_clip("/d/a.wav", 0.0, 2.5, 16000, 2, 3.0, -20.0)
    assert clip.id == "folder:a.wav:0-2500" and clip.channels == 2 and clip.rms_dbfs == -20.0


def test_bad_rows_and_duplicates() -> None:
    row = bad_row("musiccaps", UnsafePathError("nope"), "m.csv line 3", source_id="../../x")
    assert row.id == "musiccaps:../../x" and row.error_type == "UnsafePathError"
    assert isinstance(row.error(), UnsafePathError) and "m.csv line 3" in str(row.error())
    unnamed = bad_row("musiccaps", MetadataError("bad"), "m.csv line 4", source_id="a:b",
                      row_key="m.csv#L4")
    assert unnamed.id == "musiccaps:m.csv#L4"
    assert bad_row("musicnet", AudioNotFoundError("x"), "l").error_type == "AudioNotFoundError"
    with pytest.raises(ValueError):
        BadRow(id="x:y", dataset="folder", error_type="KeyError", message="m")

    def task(row: str) -> TrackTask:
        return TrackTask(id="folder:a", dataset="folder", source_id="a", split="train",
                         audio_uri="/d/a", row=row)

    out = list(dedupe([task("line 2"), task("line 3")]))
    assert isinstance(out[0], TrackTask)
    assert isinstance(out[1], BadRow) and "duplicate" in out[1].message
    assert "line 2" in out[1].message and out[1].row == "line 3"


def test_gm_table() -> None:
    assert len(GM_PROGRAMS) == 128 and len(set(GM_PROGRAMS)) == 128
    assert program_name(1) == "Acoustic Grand Piano"
    assert program_name(7) == "Harpsichord"
    assert program_name(41) == "Violin" and program_name(43) == "Cello"
    assert program_name(61) == "French Horn" and program_name(72) == "Clarinet"
    assert program_name(128) == "Gunshot"
    for bad in (0, 129, -1):
        with pytest.raises(MetadataError):
            program_name(bad)


def test_unknown_dataset_is_a_config_error(tmp_path) -> None:
    from llark.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown dataset"):
        reader("audioset")
    with pytest.raises(MetadataError, match="not found"):
        list(read_tasks("musiccaps", str(tmp_path), ReaderOptions()))


def test_extensions_and_the_reasons_files_are_skipped(tmp_path) -> None:
    from pipelines.datasets.common import extension, non_audio_reason, orphans

    assert [extension(n) for n in ("a/B.WAV", "x.tar.gz", "README", ".DS_Store", ".h.flac")] == [
        "wav", "gz", "", "ds_store", "flac"]
    (tmp_path / "n.cue").write_text("FILE x.wav WAVE")
    (tmp_path / "._n.flac").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "blob.qq").write_bytes(b"\x00" * 64)
    assert non_audio_reason(str(tmp_path / "n.cue")) == "not_audio:.cue"
    assert non_audio_reason(str(tmp_path / "._n.flac")) == "not_audio:._* (macOS AppleDouble)"
    assert non_audio_reason(str(tmp_path / "blob.qq")) == "no_audio_stream:.qq"
    found = [str(tmp_path / n) for n in ("a.wav", "b.wav", "n.cue")]
    skips = list(orphans("folder", str(tmp_path), [str(tmp_path / "." / "a.wav")], found))
    assert [(s.id, s.reason) for s in skips] == [("folder:b.wav", "audio_without_metadata"),
                                                ("folder:n.cue", "not_audio:.cue")]
