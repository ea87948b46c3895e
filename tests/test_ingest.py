"""Ingest: the per-track core (windows, tail rule, MusicCaps cuts, loudness, typed failures),
the config, and the Beam DoFn under TestPipeline with a bad record per dataset."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llark.config import from_dict
from llark.errors import (
    AudioNotFoundError,
    AudioTooShortError,
    ConfigError,
    EmptyAudioError,
    TruncatedAudioError,
    UndecodableAudioError,
)
from pipelines.datasets import read_tasks
from pipelines.datasets.common import BadRow, ReaderOptions, TrackTask
from pipelines.ingest import (
    IngestConfig,
    IngestTrackFn,
    WindowParams,
    ingest_task,
    rms_dbfs,
    track_clips,
)
from pipelines.schema import DeadLetter
from pipelines.stage import with_dead_letters
from tests.dataset_fixtures import (
    LABEL_HEADER,
    csv_text,
    fma_row,
    mtat_info,
    musiccaps_row,
    musicnet_meta,
    write_fma,
    write_mtat,
    write_musiccaps,
    write_musicnet,
    write_tone,
)

FAST = ["--runner", "DirectRunner", "--direct_running_mode", "in_memory",
        "--direct_num_workers", "1"]
PARAMS = WindowParams(clip_seconds=2.0, min_clip_seconds=1.0, sample_rate_hz=16000)


def _task(path: Path, **kw: object) -> TrackTask:
    sid = path.name
    return TrackTask(id=f"folder:{sid}", dataset="folder", source_id=sid, split="train",
                     audio_uri=str(path), row="test", **kw)


# --------------------------------------------------------------------------- pure core

def test_windows_tail_rule_and_loudness(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 5.5, sr=8000, channels=2, amplitude=0.5)
    out = track_clips(_task(path), str(path), str(path), PARAMS)
    assert [(c.start_s, c.end_s) for c in out.clips] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.5)]
    assert out.dropped_tail is None
    clip = out.clips[0]
    assert clip.id == "folder:a.wav:0-2000" and clip.audio_uri == str(path)
    assert clip.sample_rate_hz == 8000 and clip.channels == 2 and clip.track_duration_s == 5.5
    # a 0.5-amplitude sine is 0.5/sqrt(2) RMS = -9.03 dBFS
    assert clip.rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)

    short_tail = write_tone(tmp_path / "b.flac", 4.6, sr=8000)
    out = track_clips(_task(short_tail), str(short_tail), str(short_tail), PARAMS)
    assert [(c.start_s, c.end_s) for c in out.clips] == [(0.0, 2.0), (2.0, 4.0)]
    assert out.dropped_tail == (4.0, 4.6)


def test_bytes_source_gives_the_same_clips(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.ogg", 3.0, sr=22050)
    from_path = track_clips(_task(path), str(path), "gs://b/a.ogg", PARAMS)
    from_bytes = track_clips(_task(path), path.read_bytes(), "gs://b/a.ogg", PARAMS)
    assert from_path == from_bytes
    assert from_bytes.clips[0].audio_uri == "gs://b/a.ogg"


def test_silence_and_rms() -> None:
    import numpy as np

    assert rms_dbfs(np.zeros(100, np.float32)) == -120.0
    assert rms_dbfs(np.ones(100, np.float32)) == 0.0


def test_typed_audio_failures(tmp_path: Path) -> None:
    tiny = write_tone(tmp_path / "tiny.wav", 0.5, sr=8000)
    with pytest.raises(AudioTooShortError, match="min-clip-seconds"):
        track_clips(_task(tiny), str(tiny), str(tiny), PARAMS)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        ingest_task(_task(empty), PARAMS)
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40)
    with pytest.raises(UndecodableAudioError):
        ingest_task(_task(corrupt), PARAMS)
    with pytest.raises(AudioNotFoundError, match="listed at test"):
        ingest_task(_task(tmp_path / "gone.wav"), PARAMS)
    task = _task(tmp_path / "x.wav", alt_audio_uris=(str(tmp_path / "x.mp3"),))
    with pytest.raises(AudioNotFoundError, match="x.wav, .*x.mp3"):
        ingest_task(task, PARAMS)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("ext, codec, sr", [("m4a", "aac", 44100), ("opus", "libopus", 48000),
                                            ("webm", "libopus", 48000)])
def test_formats_only_ffmpeg_reads(tmp_path: Path, ext: str, codec: str, sr: int) -> None:
    # what yt-dlp downloads for MusicCaps: soundfile cannot read these, ffmpeg does
    path = tmp_path / f"-x.{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=14", "-c:a", codec, str(path)], check=True)
    task = _musiccaps_task(path, 2.0, 12.0)
    params = WindowParams(clip_seconds=23.777, min_clip_seconds=5.0, sample_rate_hz=16000)
    (clip,) = ingest_task(task, params).clips
    assert (clip.start_s, clip.end_s) == (2.0, 12.0) and clip.sample_rate_hz == sr
    assert clip.rms_dbfs == pytest.approx(20 * math.log10(0.125 / math.sqrt(2)), abs=0.5)


def _musiccaps_task(path: Path, start: float, end: float) -> TrackTask:
    return TrackTask(id="musiccaps:-abc", dataset="musiccaps", source_id="-abc", split="eval",
                     audio_uri=str(path.with_suffix(".wav")), alt_audio_uris=(str(path),),
                     window_start_s=start, window_end_s=end, row="t", caption="c")


def test_musiccaps_full_video_is_cut_and_precut_clip_is_whole(tmp_path: Path) -> None:
    params = WindowParams(clip_seconds=23.777, min_clip_seconds=5.0, sample_rate_hz=16000)
    full = write_tone(tmp_path / "full" / "-abc.mp3", 40.0, sr=8000)
    (clip,) = ingest_task(_musiccaps_task(full, 30.0, 40.0), params).clips
    assert (clip.id, clip.start_s, clip.end_s) == ("musiccaps:-abc:30000-40000", 30.0, 40.0)
    assert clip.audio_uri == str(full) and clip.track_duration_s == pytest.approx(40.0, abs=0.1)
    assert clip.caption == "c" and clip.split == "eval"

    precut = write_tone(tmp_path / "cut" / "-abc.mp3", 10.0, sr=8000)
    (clip,) = ingest_task(_musiccaps_task(precut, 30.0, 40.0), params).clips
    assert (clip.start_s, clip.end_s) == (0.0, pytest.approx(10.0, abs=0.05))

    cut_short = write_tone(tmp_path / "bad" / "-abc.mp3", 20.0, sr=8000)
    with pytest.raises(TruncatedAudioError, match="end_s=40"):
        ingest_task(_musiccaps_task(cut_short, 30.0, 40.0), params)


def test_musicnet_clip_carries_window_notes(tmp_path: Path) -> None:
    wav = write_tone(tmp_path / "train_data" / "1.wav", 5.5, sr=8000)
    labels = tmp_path / "train_labels" / "1.csv"
    labels.parent.mkdir()
    labels.write_text(csv_text([LABEL_HEADER, ["0", "44100", "43", "48", "0", "1", "Quarter"],
                                ["132300", "176400", "41", "72", "3", "1", "Quarter"]]))
    task = TrackTask(id="musicnet:1", dataset="musicnet", source_id="1", split="train",
                     audio_uri=str(wav), labels_uri=str(labels), composer="Bach")
    first, second, third = ingest_task(task, PARAMS).clips
    assert first.instruments == ("Cello",) and [n.pitch_midi for n in first.notes] == [48]
    assert second.instruments == ("Violin",) and second.notes[0].start_s == pytest.approx(1.0)
    assert third.instruments == () and third.notes == ()
    labels.write_text("start_time\n0\n")
    from llark.errors import MetadataError

    with pytest.raises(MetadataError, match="label column"):
        ingest_task(task, PARAMS)


# --------------------------------------------------------------------------- config

def test_config_validation() -> None:
    ok = from_dict(IngestConfig, {"dataset": "fma", "data_dir": "d", "output": "o",
                                  "clip_seconds": "10", "subset": "medium"})
    assert ok.clip_seconds == 10.0 and ok.reader_options().subset == "medium"
    assert ok.window_params() == WindowParams(10.0, 5.0, 44100)
    for bad in ({"dataset": "audioset"}, {"data_dir": ""}, {"output": ""},
                {"min_clip_seconds": 30}, {"clip_seconds": 0}, {"subset": "huge"},
                {"sample_rate_hz": 10}, {"dataset": "musiccaps", "filename_template": "{id}"}):
        values = {"dataset": "folder", "data_dir": "d", "output": "o", **bad}
        with pytest.raises(ConfigError):
            from_dict(IngestConfig, values)
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(IngestConfig, {"dataset": "folder", "data_dir": "d", "output": "o",
                                 "clip_secs": 3})


# --------------------------------------------------------------------------- Beam

def _five_datasets(root: Path) -> dict[str, list[TrackTask | BadRow]]:
    """One good track and bad records in each dataset's own layout."""
    mc = write_musiccaps(root / "musiccaps", [
        musiccaps_row("-good", 0, 3, "['calm']", 'a "calm", slow piece', True),
        musiccaps_row("nofile", 0, 3, "[]", "x", False),                 # no audio
        musiccaps_row("badaspects", 0, 3, "['x", "x", False),            # malformed row
    ])
    write_tone(mc / "audio" / "-good.flac", 3.0, sr=8000)
    mt = write_mtat(root / "mtat", [["1", "0", "0", "1", "0", "0", "a/good.mp3"],
                                    ["2", "0", "0", "0", "0", "0", "d/corrupt.mp3"]],
                    [mtat_info("1", "Good", "A", "a/good.mp3"),
                     mtat_info("2", "Bad", "B", "d/corrupt.mp3")])
    write_tone(mt / "a" / "good.mp3", 3.0, sr=16000)
    (mt / "d").mkdir()
    (mt / "d" / "corrupt.mp3").write_bytes(b"\xff\xfb" + b"\x00garbage" * 50)
    fma = write_fma(root / "fma", [fma_row(2, "training", "small", "[21]"),
                                   fma_row(5, "test", "small", "[12]")])
    write_tone(fma / "fma_small" / "000" / "000002.mp3", 3.0, sr=22050, channels=2)
    (fma / "fma_small" / "000" / "000005.mp3").write_bytes(b"")         # empty file
    mn = write_musicnet(root / "musicnet", [musicnet_meta("10", seconds=3),
                                            musicnet_meta("11", seconds=3)],
                        {("train", "10"): [["0", "44100", "1", "60", "0", "1", "Quarter"]],
                         ("test", "11"): [["x", "y", "1", "60", "0", "1", "Quarter"]]})
    write_tone(mn / "train_data" / "10.wav", 3.0, sr=8000)
    write_tone(mn / "test_data" / "11.wav", 3.0, sr=8000)               # bad labels
    folder = root / "folder"
    write_tone(folder / "song.ogg", 3.0, sr=22050)
    write_tone(folder / "tiny.wav", 0.4, sr=8000)                       # too short
    (folder / "metadata.csv").write_text("file_name,title\nsong.ogg,Song\nlost.wav,Lost\n"
                                         "../../etc/passwd,Evil\n")
    opts = ReaderOptions()
    return {"musiccaps": list(read_tasks("musiccaps", str(mc), opts)),
            "magnatagatune": list(read_tasks("magnatagatune", str(mt), opts)),
            "fma": list(read_tasks("fma", str(fma), opts)),
            "musicnet": list(read_tasks("musicnet", str(mn), opts)),
            "folder": list(read_tasks("folder", str(folder), opts))}


def _clip_id(clip) -> str:
    return clip.id


def test_beam_bad_records_of_every_dataset_land_in_dead_letters_only(tmp_path: Path) -> None:
    tasks = [t for items in _five_datasets(tmp_path / "data").values() for t in items]
    assert len(tasks) == 13      # 3 + 2 + 2 + 2 metadata rows, 3 folder rows + 1 bare file
    staging = str(tmp_path / "staging")
    with BeamTestPipeline(options=PipelineOptions(FAST)) as p:
        good = with_dead_letters(p | beam.Create(tasks), "Ingest", IngestTrackFn(PARAMS),
                                 "ingest", staging)
        assert_that(good | beam.Map(_clip_id), equal_to([
            "musiccaps:-good:0-2000", "musiccaps:-good:2000-3000",
            "magnatagatune:1:0-2000", "magnatagatune:1:2000-3000",
            "fma:000002:0-2000", "fma:000002:2000-3000",
            "musicnet:10:0-2000", "musicnet:10:2000-3000",
            "folder:song.ogg:0-2000", "folder:song.ogg:2000-3000"]))
    letters = [DeadLetter.from_json(line) for f in (tmp_path / "staging" / "dead").iterdir()
               for line in f.read_text().splitlines() if line.strip()]
    assert sorted((d.id, d.error_type) for d in letters) == sorted([
        ("musiccaps:nofile", "AudioNotFoundError"),
        ("musiccaps:badaspects", "MetadataError"),
        ("magnatagatune:2", "UndecodableAudioError"),
        ("fma:000005", "EmptyAudioError"),
        ("musicnet:11", "MetadataError"),
        ("folder:lost.wav", "AudioNotFoundError"),
        ("folder:metadata.csv#L4", "UnsafePathError"),
        ("folder:tiny.wav", "AudioTooShortError"),
    ])
    by_id = {d.id: d for d in letters}
    assert all(d.stage == "ingest" and d.message for d in letters)
    assert not any("unexpected" in d.message for d in letters)      # all typed, no bugs
    assert by_id["folder:lost.wav"].input_uri.endswith("lost.wav")
    assert "11.csv" in by_id["musicnet:11"].message
    assert "aspect_list" in by_id["musiccaps:badaspects"].message
    # every input accounted for: 5 tracks with clips + 8 dead letters
    assert 5 + len(letters) == len(tasks)
