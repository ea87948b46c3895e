"""Ingest against what the metadata promises: files shorter than their metadata (truncated
downloads), labels past the decoded end, orphan audio files, and a folder of odd files in which
every file ends as a clip, a dead letter or a counted skip (issue 12 point 2, issue 14 point 8).

The datasets are written in their real column layouts by ``tests/dataset_fixtures.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import soundfile as sf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from llark.errors import TruncatedAudioError
from pipelines.datasets import read_tasks
from pipelines.datasets.common import BadRow, ReaderOptions, SkippedFile, TrackTask
from pipelines.ingest import (
    LABELS_PAST_END,
    SHORTER_THAN_METADATA,
    IngestTrackFn,
    WindowParams,
    ingest_task,
    skip_notes,
)
from pipelines.schema import DeadLetter
from pipelines.stage import with_dead_letters
from tests.dataset_fixtures import (
    fma_row,
    musiccaps_row,
    musicnet_meta,
    write_fma,
    write_musiccaps,
    write_musicnet,
    write_tone,
)

FAST = ["--runner", "DirectRunner", "--direct_running_mode", "in_memory",
        "--direct_num_workers", "1"]
PARAMS = WindowParams(clip_seconds=2.0, min_clip_seconds=1.0, sample_rate_hz=8000)
KEEP = WindowParams(clip_seconds=2.0, min_clip_seconds=1.0, sample_rate_hz=8000,
                    keep_shorter_than_metadata=True)
NEEDS_FFMPEG = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
SR_LABELS = 44100


def _tasks(dataset: str, root: Path, **opts: str) -> list[TrackTask | BadRow | SkippedFile]:
    return list(read_tasks(dataset, str(root), ReaderOptions(**opts)))


def _clip_json(clip) -> str:
    return json.dumps({"id": clip.id, "uri": clip.audio_uri})


def _run_fn(items: list, tmp_path: Path, params: WindowParams = PARAMS
            ) -> tuple[list, list[DeadLetter], list[dict]]:
    """Items through the real DoFn under TestPipeline: (clips, dead letters, skip notes)."""
    staging = tmp_path / "staging"
    clips_out = tmp_path / "clips.jsonl"
    with BeamTestPipeline(options=PipelineOptions(FAST)) as p:
        good = with_dead_letters(p | beam.Create(items), "Ingest", IngestTrackFn(params),
                                 "ingest", str(staging))
        (good | beam.Map(_clip_json)
         | beam.io.WriteToText(str(clips_out), shard_name_template=""))
    clips = [json.loads(line) for line in clips_out.read_text().splitlines() if line.strip()]

    def lines(folder: str) -> list[str]:
        d = staging / folder
        return [line for f in sorted(d.iterdir()) if d.exists()
                for line in f.read_text().splitlines() if line.strip()] if d.exists() else []

    return (clips, [DeadLetter.from_json(x) for x in lines("dead")],
            [json.loads(x) for x in lines("skipped")])


# --------------------------------------------------------------------------- MusicNet

def _musicnet_half(tmp_path: Path) -> TrackTask:
    """MusicNet says 8 s; the wav holds 4 s. Labels: a note at 1 s, one at 6 s (past the end)."""
    root = write_musicnet(tmp_path / "musicnet", [musicnet_meta("2186", seconds=8)],
                          {("train", "2186"): [
                              [str(SR_LABELS), str(2 * SR_LABELS), "1", "60", "1", "1", "Quarter"],
                              [str(6 * SR_LABELS), str(7 * SR_LABELS), "41", "72", "6", "1",
                               "Quarter"]]})
    write_tone(root / "train_data" / "2186.wav", 4.0, sr=8000)
    (task,) = _tasks("musicnet", root)
    assert isinstance(task, TrackTask) and task.expected_duration_s == 8.0
    return task


def test_musicnet_wav_cut_to_half_is_a_dead_letter_naming_both_lengths(tmp_path: Path) -> None:
    task = _musicnet_half(tmp_path)
    with pytest.raises(TruncatedAudioError) as err:
        ingest_task(task, PARAMS)
    message = str(err.value)
    assert "decodes to 4.000s" in message and "says 8.000s" in message
    assert "musicnet_metadata.csv line 2" in message and "2186.wav" in message
    assert "--keep-shorter-than-metadata" in message


def test_musicnet_wav_cut_to_half_kept_with_counted_notes(tmp_path: Path) -> None:
    task = _musicnet_half(tmp_path)
    out = ingest_task(task, KEEP)
    assert [(c.start_s, c.end_s) for c in out.clips] == [(0.0, 2.0), (2.0, 4.0)]
    assert out.missing_span == (4.0, 8.0)
    assert [(n.program, n.pitch_midi) for n in out.labels_past_end] == [(41, 72)]
    notes = [json.loads(n) for n in skip_notes(task, out)]
    assert [(n["id"], n["reason"]) for n in notes] == [
        ("musicnet:2186:4000-8000", SHORTER_THAN_METADATA),
        ("musicnet:2186:note:41:72@6.000", LABELS_PAST_END)]
    # the note that was heard is in the first clip, the one past the end in none
    assert [n.pitch_midi for c in out.clips for n in c.notes] == [60]


def test_length_within_tolerance_passes(tmp_path: Path) -> None:
    root = write_musicnet(tmp_path / "mn", [musicnet_meta("1", seconds=5)], {("train", "1"): []})
    write_tone(root / "train_data" / "1.wav", 4.2, sr=8000)       # rounded metadata: 0.8 s off
    (task,) = _tasks("musicnet", root)
    assert len(ingest_task(task, PARAMS).clips) == 2
    strict = WindowParams(2.0, 1.0, 8000, length_tolerance_s=0.5)
    with pytest.raises(TruncatedAudioError, match="tolerance 0.5s"):
        ingest_task(task, strict)


# --------------------------------------------------------------------------- FMA

@NEEDS_FFMPEG
def test_fma_mp3_cut_to_half_without_xing_header(tmp_path: Path) -> None:
    root = write_fma(tmp_path / "fma", [fma_row(2, "training", "small", "[21]", duration="168"),
                                        fma_row(5, "training", "small", "[21]", duration="168")])
    folder = root / "fma_small" / "000"
    folder.mkdir(parents=True)
    for name in ("000002.mp3", "000005.mp3"):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=30", "-ar", "22050", "-c:a", "libmp3lame",
                        "-write_xing", "0", str(folder / name)], check=True)
    data = (folder / "000005.mp3").read_bytes()
    (folder / "000005.mp3").write_bytes(data[:len(data) // 2])    # the download stopped halfway
    whole, half = (t for t in _tasks("fma", root) if isinstance(t, TrackTask))
    assert whole.expected_duration_s == half.expected_duration_s == 30.0   # fma_small: 30 s clips
    params = WindowParams(clip_seconds=10.0, min_clip_seconds=5.0, sample_rate_hz=8000)
    assert len(ingest_task(whole, params).clips) == 3
    with pytest.raises(TruncatedAudioError, match=r"decodes to 1\d\.\d+s but the metadata "
                                                  r"\(tracks.csv line 5\) says 30.000s"):
        ingest_task(half, params)


def test_fma_orphan_and_outside_subset_mp3s_are_counted(tmp_path: Path) -> None:
    root = write_fma(tmp_path / "fma", [fma_row(2, "training", "small", "[21]"),
                                        fma_row(3, "training", "medium", "[21]")])
    for tid in ("000002", "000003", "000004"):
        path = root / "fma_small" / "000" / f"{tid}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"ID3")
    (root / "fma_small" / "000" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    items = _tasks("fma", root, subset="small")
    assert [t.id for t in items if isinstance(t, TrackTask)] == ["fma:000002"]
    assert sorted((t.id, t.reason) for t in items if isinstance(t, SkippedFile)) == [
        ("fma:000/.DS_Store", "not_audio:.ds_store"),
        ("fma:000/000003.mp3", "outside_subset"), ("fma:000/000004.mp3", "audio_without_metadata")]


# --------------------------------------------------------------------------- MusicCaps

def test_musiccaps_short_precut_clip_names_the_file_read(tmp_path: Path) -> None:
    root = write_musiccaps(tmp_path / "mc", [
        musiccaps_row("-cut", 30, 40, "['calm']", "calm", False),
        musiccaps_row("ok", 30, 40, "['calm']", "calm", False),
        musiccaps_row("bad1", 30, 40, "['calm", "calm", False)])     # malformed aspect_list
    write_tone(root / "audio" / "-cut.flac", 5.0, sr=8000)       # a 10 s clip cut at 5 s
    write_tone(root / "audio" / "ok.flac", 10.0, sr=8000)
    write_tone(root / "audio" / "stray.flac", 10.0, sr=8000)     # no row names it
    (root / "audio" / "x.webm.part").write_bytes(b"\x1a\x45")     # an unfinished download
    (root / "audio" / "okay.flac").write_bytes(b"")   # "ok" is a prefix, not this file's ytid
    write_tone(root / "audio" / "bad1.flac", 10.0, sr=8000)      # its row is a dead letter
    (root / "audio" / "bad12.flac").write_bytes(b"")  # another ytid
    items = _tasks("musiccaps", root)
    clips, dead, skipped = _run_fn(items, tmp_path, WindowParams(23.777, 5.0, 8000))
    assert [c["id"] for c in clips] == ["musiccaps:ok:0-10000"]
    malformed, letter = sorted(dead, key=lambda d: d.error_type)
    assert (malformed.id, malformed.error_type) == ("musiccaps:bad1", "MetadataError")
    assert letter.error_type == "TruncatedAudioError" and letter.id == "musiccaps:-cut"
    # input_uri is the file that was read, not the first candidate name (-cut.wav)
    assert letter.input_uri == str(root / "audio" / "-cut.flac")
    assert "decodes to 5.000s" in letter.message and "says 10.000s" in letter.message
    assert sorted((s["id"], s["reason"]) for s in skipped) == [
        ("musiccaps:bad12.flac", "audio_without_metadata"),
        ("musiccaps:okay.flac", "audio_without_metadata"),
        ("musiccaps:stray.flac", "audio_without_metadata"),
        ("musiccaps:x.webm.part", "not_audio:.part")]


# --------------------------------------------------------------------------- folder (point 8)

def _odd_folder(root: Path) -> dict[str, str]:
    """Real odd files; returns ``{relative name: expected outcome}``."""
    root.mkdir(parents=True)
    t = np.arange(8000 * 3) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    expected = {}
    sf.write(str(root / "quad.wav"), np.stack([tone] * 4, axis=1), 8000, subtype="PCM_16")
    expected["quad.wav"] = "clip"
    sf.write(str(root / "deep.wav"), tone, 8000, subtype="PCM_24")
    expected["deep.wav"] = "clip"
    sf.write(str(root / "sun.au"), tone, 8000, format="AU", subtype="PCM_16")
    expected["sun.au"] = "clip"
    sf.write(str(root / "take1.bak"), tone, 8000, format="WAV", subtype="PCM_16")
    expected["take1.bak"] = "clip"                       # unlisted extension, probed: audio
    sf.write(str(root / "mac.sd2"), tone, 8000, format="SD2", subtype="PCM_16")
    expected["mac.sd2"] = "any"                          # readable or not: never lost
    expected["._mac.sd2"] = "skip:not_audio:._* (macOS AppleDouble)"   # its resource fork
    (root / "monkey.ape").write_bytes(b"MAC \x96\x0f\x00\x00" + bytes(range(256)) * 8)
    expected["monkey.ape"] = "dead:UndecodableAudioError"
    sf.write(str(root / "silent.wav"), np.zeros((0,), np.float32), 8000, subtype="PCM_16")
    expected["silent.wav"] = "dead:EmptyAudioError"      # a WAV header and no samples
    (root / "zero.flac").write_bytes(b"")
    expected["zero.flac"] = "dead:EmptyAudioError"
    (root / "zero.xyz").write_bytes(b"")
    expected["zero.xyz"] = "skip:no_audio_stream:.xyz"
    (root / "liner notes.txt").write_text("recorded live")
    expected["liner notes.txt"] = "skip:not_audio:.txt"
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    expected["cover.jpg"] = "skip:not_audio:.jpg"
    (root / "README").write_text("not audio")
    expected["README"] = "skip:no_audio_stream:(no extension)"
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=3", "-c:a", "aac", str(root / "adts.aac")],
                       check=True)
        expected["adts.aac"] = "clip"
    return expected


def test_every_file_of_an_odd_folder_is_a_clip_a_dead_letter_or_a_counted_skip(
        tmp_path: Path) -> None:
    expected = _odd_folder(tmp_path / "odd")
    items = _tasks("folder", tmp_path / "odd")
    clips, dead, skipped = _run_fn(items, tmp_path)
    outcome: dict[str, list[str]] = {}
    for c in clips:
        outcome.setdefault(Path(c["uri"]).name, []).append("clip")
    for d in dead:
        outcome.setdefault(d.id.split(":", 1)[1], []).append(f"dead:{d.error_type}")
    for s in skipped:
        outcome.setdefault(s["id"].split(":", 1)[1], []).append(f"skip:{s['reason']}")
    assert set(outcome) == set(expected)                  # no file vanished
    for name, want in expected.items():
        got = set(outcome[name])
        assert len(got) == 1, (name, outcome[name])       # one kind of outcome per file
        (kind,) = got
        if want != "any":
            assert kind == want, (name, kind)
    assert not any("unexpected" in d.message for d in dead)


# --------------------------------------------------------------------------- the demo corpus

@pytest.mark.slow
def test_demo_corpus_with_truncated_downloads_and_an_orphan(tmp_path: Path) -> None:
    """The demo corpus writer's real layouts (musicnet_metadata.csv with seconds, FMA's
    tracks.csv with track/duration): a MusicNet wav and an FMA mp3 cut to half are dead
    letters naming both lengths, an unlisted wav is a counted skip, the rest are clips."""
    from llark.demo.corpus import build_corpus

    root = tmp_path / "corpus"
    build_corpus(root, seed=0, scale="tiny")
    wav = root / "musicnet" / "train_data" / "1788.wav"
    audio, sr = sf.read(str(wav), dtype="float32")
    sf.write(str(wav), audio[:len(audio) // 2], sr, subtype="PCM_16")
    shutil.copy(root / "musicnet" / "test_data" / "1759.wav",
                root / "musicnet" / "train_data" / "9999.wav")
    mp3 = next(p for p in sorted((root / "fma" / "fma_small").rglob("*.mp3"))
               if p.stat().st_size)                 # the corpus leaves one empty on purpose
    data = mp3.read_bytes()
    mp3.write_bytes(data[:len(data) // 2])
    params = WindowParams(clip_seconds=23.777, min_clip_seconds=5.0, sample_rate_hz=8000)
    items = _tasks("musicnet", root / "musicnet") + _tasks("fma", root / "fma")
    clips, dead, skipped = _run_fn(items, tmp_path, params)
    truncated = {d.id: d.message for d in dead if d.error_type == "TruncatedAudioError"}
    assert set(truncated) == {"musicnet:1788", f"fma:{mp3.stem}"}
    assert "says 48.000s" in truncated["musicnet:1788"]
    assert "decodes to 2" in truncated["musicnet:1788"]          # ~24 s of the 48 s
    assert [(s["id"], s["reason"]) for s in skipped if s["reason"] != "tail_too_short"] == [
        ("musicnet:train_data/9999.wav", "audio_without_metadata")]
    # every other listed track gave clips; the rows the corpus breaks on purpose dead-letter
    sources = {c["id"].rsplit(":", 1)[0] for c in clips}
    inputs = {t.id for t in items if not isinstance(t, SkippedFile)}
    assert sources | {d.id for d in dead} == inputs and not sources & {d.id for d in dead}
