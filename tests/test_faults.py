"""Faults lose nothing: a killed Beam stage reruns without duplicates or gaps, and every bad
input (undecodable, empty, silent, 2-hour, mono/stereo/5.1, odd sample rates, NaN samples,
malformed metadata rows, path traversal) is written, skipped with a counted reason, or
dead-lettered with a clear message, through ingest → annotate → embed.

Other fault tests live with their stages: the LLM server dying mid-run (test_instruct_*), the
trainer SIGKILLed and resumed, and a truncated shard refused by checksum (test_model_*).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from llark.demo.synth import random_song_spec, render_song
from pipelines import schema as s

REPO = Path(__file__).resolve().parents[1]
BEAM = ["--direct_num_workers", "2"]


def rows(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def dead_letters(folder: Path, stage: str) -> list[s.DeadLetter]:
    path = folder / s.DEAD_LETTER_DIR / stage / "part-00000.jsonl"
    if not path.exists():
        return []
    return [s.DeadLetter.from_json(line) for line in path.read_text().splitlines() if line]


def song(seed: int, seconds: float, sr: int = 44100, stereo: bool = False) -> np.ndarray:
    spec = random_song_spec(np.random.default_rng(seed), seconds)
    return render_song(spec, sr, stereo=stereo).audio


# --------------------------------------------------------------------------- kill and rerun

@pytest.mark.slow
def test_killed_ingest_reruns_without_duplicates_or_gaps(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    tone = song(0, 50.0, 22050)
    for i in range(40):
        sf.write(data / f"track_{i:02d}.wav", np.roll(tone, i * 1000), 22050)
    out = tmp_path / "clips"
    cmd = [sys.executable, "-m", "pipelines.ingest", "--dataset", "folder", "--data-dir", str(data),
           "--output", str(out), *BEAM]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # kill the whole process group as soon as a worker has written its first staged file
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for p in (out / "_staging").rglob("*") if p.is_file()] \
            if (out / "_staging").exists() else []
        if staged:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / s.INDEX_FILE).exists(), "killed too late: the stage had already finished"

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    index = s.verify_shards(out)
    ids = [r["id"] for r in rows(out)]
    assert len(ids) == len(set(ids)) == index.total_rows
    # 50 s at 23.777 s windows: two clips per track and a 2.446 s tail, dropped and counted
    expected = {s.clip_id("folder", f"track_{i:02d}.wav", a, b)
                for i in range(40) for a, b in ((0.0, 23.777), (23.777, 47.554))}
    assert set(ids) == expected
    assert index.skipped == {"tail_too_short": 40}
    assert not (out / "_staging").exists()


# --------------------------------------------------------------------------- bad inputs

@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("bad") / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    sf.write(data / "mono.wav", song(1, 12.0), 44100)
    sf.write(data / "stereo.flac", song(2, 12.0, stereo=True), 44100)
    six = np.repeat(song(3, 12.0)[:, None], 6, axis=1) * np.linspace(1.0, 0.3, 6)
    sf.write(data / "surround_5_1.wav", six.astype(np.float32), 48000)
    sf.write(data / "low_rate_8k.wav", song(4, 12.0, 8000), 8000)
    sf.write(data / "high_rate_96k.wav", song(5, 12.0, 96000), 96000)
    sf.write(data / "silent.wav", np.zeros(44100 * 12, np.float32), 44100)
    # two hours at 8 kHz of near-silence (-80 dBFS): 303 windows, ~115 MB on disk
    two_hours = (rng.standard_normal(8000 * 7200) * 1e-4).astype(np.float32)
    sf.write(data / "two_hours.wav", two_hours, 8000, subtype="PCM_16")
    nan = song(6, 12.0, 22050)
    nan[1000:5000] = np.nan
    sf.write(data / "nan_samples.wav", nan, 22050, subtype="FLOAT")
    (data / "undecodable.mp3").write_bytes(rng.bytes(20000))
    (data / "empty.ogg").write_bytes(b"")
    sf.write(data / "too_short.wav", song(7, 2.0), 44100)
    (data / "metadata.csv").write_text(
        "file_name,title,genres,split\n"
        "mono.wav,Mono song,pop,train\n"
        "../../etc/passwd,Escape,rock,train\n"
        "/etc/hostname,Absolute,rock,train\n"
        "missing.wav,Gone,rock,train\n"
        "stereo.flac,Stereo,pop,not-a-split\n")
    return data


EXPECT_INGEST_DEAD = {
    "nan_samples.wav": "InvalidAudioError",
    "undecodable.mp3": "UndecodableAudioError",
    "empty.ogg": "EmptyAudioError",
    "too_short.wav": "AudioTooShortError",
    "missing.wav": "AudioNotFoundError",
}


@pytest.mark.slow
def test_every_bad_input_is_accounted_for_through_every_stage(bad_corpus, tmp_path):
    from pipelines.annotate import run as annotate
    from pipelines.embed import run as embed
    from pipelines.ingest import run as ingest

    clips_dir = tmp_path / "clips"
    assert ingest(["--dataset", "folder", "--data-dir", str(bad_corpus), "--output",
                   str(clips_dir), "--max-error-rate", "0.9", *BEAM]) == 0
    index = s.read_index(clips_dir)
    clips = rows(clips_dir)
    by_file: dict[str, int] = {}
    for r in clips:
        by_file[r["source_id"]] = by_file.get(r["source_id"], 0) + 1
    letters = dead_letters(clips_dir, "ingest")
    messages = " | ".join(f"{d.error_type}: {d.id}: {d.message}" for d in letters)

    # written: every readable file, whatever its channels and rate (5.1 and 96 kHz included)
    for name in ("mono.wav", "surround_5_1.wav", "low_rate_8k.wav", "high_rate_96k.wav",
                 "silent.wav"):
        assert by_file.get(name) == 1, (name, by_file, messages)
    # 7200 s = 302 full windows + a 19.3 s tail, long enough to be a clip of its own
    assert by_file["two_hours.wav"] == 303
    assert index.skipped == {}
    # dead-lettered, each under its file with an actionable message
    for name, error_type in EXPECT_INGEST_DEAD.items():
        assert any(d.error_type == error_type and name in (d.id + d.message) for d in letters), \
            (name, messages)
    # path traversal and an absolute path never leave the data directory
    traversal = [d for d in letters if "passwd" in d.message or "hostname" in d.message]
    assert len(traversal) == 2 and {d.error_type for d in traversal} == {"UnsafePathError"}
    # a row with a bad value is refused by name, and its file is not ingested twice
    assert any("not-a-split" in d.message for d in letters), messages
    assert "stereo.flac" not in by_file or by_file["stereo.flac"] == 1
    # every input accounted for: tracks written + dead letters == inputs
    tracks_written = len(by_file)
    assert tracks_written + len(letters) == index.counts["inputs"], (by_file, messages)
    assert all(d.message and d.error_type for d in letters)

    # annotate: break two files after ingest; the rest are annotated (silence as silence)
    (bad_corpus / "low_rate_8k.wav").write_bytes(b"")            # now empty
    (bad_corpus / "high_rate_96k.wav").unlink()                  # now missing
    ann_dir = tmp_path / "annotations"
    assert annotate(["--input", str(clips_dir), "--output", str(ann_dir), "--max-error-rate",
                     "0.9", *BEAM]) == 0
    ann = {r["id"]: r["annotation"] for r in rows(ann_dir)}
    ann_dead = {d.id: d.error_type for d in dead_letters(ann_dir, "annotate")}
    assert len(ann) + len(ann_dead) == len(clips)
    broken = {r["id"] for r in clips if r["source_id"] in ("low_rate_8k.wav", "high_rate_96k.wav")}
    assert set(ann_dead) == broken
    assert set(ann_dead.values()) == {"EmptyAudioError", "AudioNotFoundError"}
    silent = next(r["id"] for r in clips if r["source_id"] == "silent.wav")
    assert ann[silent]["is_silent"] and ann[silent]["beats"] == []
    assert all(c["label"] == "N" for c in ann[silent]["chords"])
    long_ids = [r["id"] for r in clips if r["source_id"] == "two_hours.wav"]
    assert all(ann[i]["is_silent"] for i in long_ids)
    mono = next(r["id"] for r in clips if r["source_id"] == "mono.wav")
    assert not ann[mono]["is_silent"] and ann[mono]["tempo_bpm"] > 0 and ann[mono]["key"]

    # embed: the same two clips dead-letter; every other clip gets frames for its whole window
    emb_dir = tmp_path / "embeddings"
    assert embed(["--input", str(clips_dir), "--output", str(emb_dir), "--encoder", "features",
                  "--max-error-rate", "0.9", *BEAM]) == 0
    emb = {r["clip_id"]: r for r in rows(emb_dir)}
    emb_dead = {d.id for d in dead_letters(emb_dir, "embed")}
    assert emb_dead == broken and len(emb) + len(emb_dead) == len(clips)
    clip_len = {r["id"]: r["end_s"] - r["start_s"] for r in clips}
    for cid, r in emb.items():
        assert abs(r["n_frames"] - 10 * clip_len[cid]) <= 1, cid
        frames = s.decode_embedding(r["embedding"], r["n_frames"], r["dim"])
        assert np.isfinite(frames.astype(np.float32)).all(), cid
