"""MusicNet reader: metadata, split by folder, sample-index labels, notes and GM instruments."""

from __future__ import annotations

from pathlib import Path

import pytest

from llark.errors import MetadataError
from pipelines.datasets.common import BadRow, ReaderOptions, SkippedFile, TrackTask
from pipelines.datasets.musicnet import parse_labels, read_tasks, window_notes
from tests.dataset_fixtures import LABEL_HEADER, csv_text, musicnet_meta, write_musicnet

SR = 44100
LABELS = [  # start_time,end_time,instrument,note,start_beat,end_beat,note_value (samples @44.1k)
    ["9182", "90078", "43", "53", "4.0", "1.5", "Dotted Quarter"],
    [str(2 * SR), str(3 * SR), "41", "76", "6.0", "0.5", "Eighth"],
    [str(int(2.5 * SR)), str(5 * SR), "1", "60", "7.0", "2.0", "Half"],
    [str(6 * SR), str(7 * SR), "71", "45", "10.0", "1.0", "Quarter"],
]


def _read(root: Path) -> list[TrackTask | BadRow]:
    return list(read_tasks(str(root), ReaderOptions()))


def test_layout_splits_and_metadata(tmp_path: Path) -> None:
    root = write_musicnet(tmp_path, [musicnet_meta("1727", "Schubert"), musicnet_meta("2303"),
                                     musicnet_meta("2201")],
                          {("train", "1727"): LABELS, ("test", "2303"): LABELS})
    for split, rid in (("train", "1727"), ("test", "2303")):
        (root / f"{split}_data").mkdir(exist_ok=True)
        (root / f"{split}_data" / f"{rid}.wav").write_bytes(b"RIFF")
    items = {t.id: t for t in _read(root)}
    schubert = items["musicnet:1727"]
    assert isinstance(schubert, TrackTask) and schubert.split == "train"
    assert schubert.audio_uri == str(root / "train_data" / "1727.wav")
    assert schubert.labels_uri == str(root / "train_labels" / "1727.csv")
    assert schubert.composer == "Schubert" and schubert.ensemble == "Solo Cello"
    assert schubert.composition == "Cello Suite No 1 in G major"
    assert schubert.movement == "1. Prelude"
    test = items["musicnet:2303"]
    assert test.split == "test" and test.audio_uri == str(root / "test_data" / "2303.wav")
    missing = items["musicnet:2201"]          # listed, no wav in either folder
    assert isinstance(missing, BadRow) and missing.error_type == "AudioNotFoundError"
    assert "train_data" in missing.message and "test_data" in missing.message


def test_orphan_wavs_are_counted_and_seconds_is_the_expected_length(tmp_path: Path) -> None:
    root = write_musicnet(tmp_path, [musicnet_meta("1727", seconds=89)],
                          {("train", "1727"): LABELS})
    for split, rid in (("train", "1727"), ("train", "1728"), ("test", "2303")):
        (root / f"{split}_data").mkdir(exist_ok=True)
        (root / f"{split}_data" / f"{rid}.wav").write_bytes(b"RIFF")
    (root / "train_data" / "notes.txt").write_text("from the archive")
    items = _read(root)
    (task,) = [t for t in items if isinstance(t, TrackTask)]
    assert task.expected_duration_s == 89.0
    skipped = sorted((t.id, t.reason, t.uri) for t in items if isinstance(t, SkippedFile))
    assert skipped == [
        ("musicnet:test_data/2303.wav", "audio_without_metadata", str(root / "test_data/2303.wav")),
        ("musicnet:train_data/1728.wav", "audio_without_metadata",
         str(root / "train_data/1728.wav")),
        ("musicnet:train_data/notes.txt", "not_audio:.txt", str(root / "train_data/notes.txt"))]
    assert len(items) == 4          # every file accounted for: one input, three counted skips


def test_bad_metadata_rows(tmp_path: Path) -> None:
    root = write_musicnet(tmp_path, [musicnet_meta("1727"), ["abc", *musicnet_meta("1")[1:]],
                                     musicnet_meta("1727"), ["12", "Bach"]], {})
    for split in ("train", "test"):
        (root / f"{split}_data").mkdir()
    (root / "train_data" / "1727.wav").write_bytes(b"RIFF")
    (root / "test_data" / "1727.wav").write_bytes(b"RIFF")
    items = _read(root)
    assert len(items) == 4 and all(isinstance(i, BadRow) for i in items)
    messages = [i.message for i in items]
    assert "both train_data/ and test_data/" in messages[0]
    assert "recording number" in messages[1]
    assert "2 fields" in messages[3]


def test_labels_in_seconds_and_window_notes() -> None:
    notes = parse_labels(csv_text([LABEL_HEADER] + LABELS), "1727.csv")
    assert len(notes) == 4
    first = notes[0]
    assert first.start_s == pytest.approx(9182 / SR) and first.end_s == pytest.approx(90078 / SR)
    assert (first.program, first.pitch_midi, first.note_value) == (43, 53, "Dotted Quarter")
    assert (first.start_beat, first.end_beat) == (4.0, 1.5)

    inside, instruments = window_notes(notes, 2.0, 4.0)
    # the cello note ended at 2.04 s, the violin and the piano play; the bassoon comes at 6 s
    assert instruments == ("Acoustic Grand Piano", "Violin", "Cello")
    assert [n.pitch_midi for n in inside] == [53, 76, 60]
    violin = inside[1]
    assert violin.start_s == pytest.approx(0.0) and violin.end_s == pytest.approx(1.0)
    piano = inside[2]
    # true onsets and offsets in window time: the piano note rings past the window's end, the
    # cello began before it (negative start); both keep their score beats
    assert piano.start_s == pytest.approx(0.5) and piano.end_s > 2.0
    assert piano.end_s == pytest.approx(3.0)           # 5 s in the track
    assert inside[0].start_s == pytest.approx(9182 / SR - 2.0) and inside[0].start_s < 0
    assert inside[0].end_s == pytest.approx(90078 / SR - 2.0)
    assert (inside[0].start_beat, inside[0].end_beat) == (first.start_beat, first.end_beat)
    empty_notes, empty_instruments = window_notes(notes, 5.0, 6.0)
    assert empty_notes == () and empty_instruments == ()


@pytest.mark.parametrize("row, match", [
    (["10", "5", "41", "60", "0", "1", "Quarter"], "^1.csv line 2: note from sample 10 to 5"),
    (["0", "5", "0", "60", "0", "1", "Quarter"], r"^1\.csv line 2: instrument 0 .*1\.\.128"),
    (["0", "5", "41", "200", "0", "1", "Quarter"], "outside 0..127"),
    (["0", "x", "41", "60", "0", "1", "Quarter"], "bad label row"),
    (["0", "5", "41"], "bad label row"),
])
def test_bad_labels(row: list[str], match: str) -> None:
    with pytest.raises(MetadataError, match=match):
        parse_labels(csv_text([LABEL_HEADER, row]), "1.csv")


def test_label_header_checked() -> None:
    with pytest.raises(MetadataError, match="note_value"):
        parse_labels("start_time,end_time,instrument,note\n0,1,1,60\n", "1.csv")
