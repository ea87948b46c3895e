"""End-to-end ``llark ingest`` runs: a tmp corpus on the 2-process DirectRunner, the real
recordings, and every dataset of the demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llark.audio import probe_audio
from llark.windows import clip_windows
from pipelines.ingest import run
from pipelines.schema import Clip, DeadLetter, read_index, verify_shards
from tests.dataset_fixtures import write_tone

IN_MEMORY = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]


def _clips(out: Path) -> list[Clip]:
    return [Clip.from_row(r) for p in sorted(out.glob("part-*.parquet"))
            for r in pq.read_table(p).to_pylist()]


def _dead(out: Path) -> list[DeadLetter]:
    path = out / "_dead_letter" / "ingest" / "part-00000.jsonl"
    return [DeadLetter.from_json(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_run_two_workers_counts_add_up(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "music"
    write_tone(data / "a.wav", 5.0, sr=16000)                   # 2 clips + a 1 s tail kept
    write_tone(data / "albums" / "b.flac", 4.4, sr=22050, channels=2)   # 2 clips, tail dropped
    write_tone(data / "c.mp3", 3.0, sr=16000)
    (data / "empty.wav").write_bytes(b"")
    (data / "corrupt.ogg").write_bytes(b"OggS" + b"\x00" * 200)
    (data / "metadata.csv").write_text(
        "file_name,title,tags,split\n"
        "a.wav,Song A,\"rock, live\",validation\n"
        "albums/b.flac,Song B,,test\n"
        "missing.wav,Gone,,train\n"
        "../outside.wav,Evil,,train\n"
        "c.mp3,Song C,,nosuchsplit\n")
    out = tmp_path / "clips"
    argv = ["--dataset", "folder", "--data-dir", str(data), "--output", str(out),
            "--clip-seconds", "2", "--min-clip-seconds", "1", "--sample-rate-hz", "16000",
            "--max-error-rate", "0.9", "--direct_num_workers", "2"]
    assert run(argv) == 0
    index = verify_shards(out, read_index(out, "clip"))
    c = index.counts
    # 5 metadata rows + empty.wav + corrupt.ogg (c.mp3's row is bad, so it is not also bare)
    assert c["inputs"] == 7
    assert c["tracks_ok"] == 2 and c["clips"] == 5 == index.total_rows
    assert c["dead_letters"] == 5 == sum(index.dead_letters.values())
    assert c["inputs"] == c["tracks_ok"] + c["dead_letters"] and c["unaccounted"] == 0
    assert c["clips_by_split"] == {"test": 2, "validation": 3}
    assert c["tracks_by_split"] == {"test": 1, "validation": 1}
    assert index.skipped == {"tail_too_short": 1}
    assert index.dead_letters == {"AudioNotFoundError": 1, "EmptyAudioError": 1,
                                  "MetadataError": 1, "UndecodableAudioError": 1,
                                  "UnsafePathError": 1}
    assert {d.id for d in _dead(out)} == {"folder:missing.wav", "folder:empty.wav",
                                          "folder:corrupt.ogg", "folder:c.mp3",
                                          "folder:metadata.csv#L5"}
    clips = {c.id: c for c in _clips(out)}
    assert set(clips) == {"folder:a.wav:0-2000", "folder:a.wav:2000-4000",
                          "folder:a.wav:4000-5000", "folder:albums/b.flac:0-2000",
                          "folder:albums/b.flac:2000-4000"}
    a = clips["folder:a.wav:0-2000"]
    assert a.title == "Song A" and a.tags == ("rock", "live") and a.split == "validation"
    b = clips["folder:albums/b.flac:2000-4000"]
    assert b.sample_rate_hz == 22050 and b.channels == 2 and b.audio_uri.endswith("b.flac")
    assert index.config["dataset"] == "folder" and index.config["clip_seconds"] == 2.0
    err = capsys.readouterr().err
    assert "tracks_ok: 2" in err and "dead letters (UnsafePathError): 1" in err
    # a rerun of a complete output does nothing
    assert run(argv) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_run_reports_config_and_metadata_errors(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    write_tone(tmp_path / "d" / "ok.wav", 2.0, sr=8000)
    (tmp_path / "d" / "bad.wav").write_bytes(b"")
    (tmp_path / "d" / "bad2.wav").write_bytes(b"")
    assert run(["--dataset", "folder", "--data-dir", str(tmp_path / "d"), "--output",
                str(tmp_path / "rate"), "--min-clip-seconds", "1", *IN_MEMORY]) == 1
    assert "above --max-error-rate" in capsys.readouterr().err
    assert run(["--dataset", "nope", "--data-dir", str(tmp_path), "--output",
                str(tmp_path / "o")]) == 1
    assert "choose one of" in capsys.readouterr().err
    assert run(["--dataset", "musiccaps", "--data-dir", str(tmp_path), "--output",
                str(tmp_path / "o"), *IN_MEMORY]) == 1
    assert "musiccaps-public.csv" in capsys.readouterr().err
    assert not (tmp_path / "o" / "_index.json").exists()


def test_cli_dispatches_ingest(tmp_path: Path) -> None:
    from pipelines.cli import main

    write_tone(tmp_path / "d" / "x.wav", 1.5, sr=8000)
    assert main(["ingest", "--dataset", "folder", "--data-dir", str(tmp_path / "d"),
                 "--output", str(tmp_path / "o"), "--min-clip-seconds", "1", *IN_MEMORY]) == 0
    assert [c.id for c in _clips(tmp_path / "o")] == ["folder:x.wav:0-1500"]


@pytest.mark.integration
def test_folder_ingest_of_real_recordings(real_audio_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "real"
    assert run(["--dataset", "folder", "--data-dir", str(real_audio_dir), "--output", str(out),
                "--direct_num_workers", "2"]) == 0
    index = read_index(out, "clip")
    files = sorted(real_audio_dir.glob("*.ogg"))
    expected = {}
    for f in files:
        windows, _ = clip_windows(probe_audio(str(f)).duration_s)
        expected.update({f"folder:{f.name}:{round(s * 1000)}-{round(e * 1000)}": f
                         for s, e in windows})
    clips = _clips(out)
    assert {c.id for c in clips} == set(expected)
    assert index.counts["tracks_ok"] == len(files) == index.counts["inputs"]
    assert index.dead_letters == {}
    for clip in clips:
        assert clip.sample_rate_hz == 22050 and clip.channels == 1
        assert clip.audio_uri == str(expected[clip.id])
        assert clip.end_s - clip.start_s <= 23.777 + 1e-9
        assert -60.0 < clip.rms_dbfs < 0.0       # real music, not silence, not clipped


def test_ingest_of_the_whole_demo_corpus(tmp_path: Path) -> None:
    from llark.demo import corpus as demo_data

    corpus = tmp_path / "demo"
    assert demo_data.run(["--output", str(corpus), "--scale", "tiny", "--seed", "5"]) == 0
    truth = json.loads((corpus / "ground_truth.json").read_text())
    for dataset in ("musiccaps", "magnatagatune", "fma", "musicnet", "folder"):
        out = tmp_path / "clips" / dataset
        assert run(["--dataset", dataset, "--data-dir", str(corpus / dataset),
                    "--output", str(out), *IN_MEMORY]) == 0, dataset
        index = read_index(out, "clip")
        c = index.counts
        assert c["inputs"] == c["tracks_ok"] + c["dead_letters"], dataset
        good = [t for t in truth["files"].values() if t["dataset"] == dataset]
        assert c["tracks_ok"] == len(good), dataset
        broken = [b for b in truth["broken"] if b["dataset"] == dataset]
        pad = (lambda i: f"{int(i):06d}") if dataset == "fma" else str
        assert {d.id for d in _dead(out)} == {f"{dataset}:{pad(b['id'])}" for b in broken}
        clips = _clips(out)
        if dataset == "musicnet":
            # GM names of the instruments in the clips = the synthesizer's (0-based programs)
            for rel, t in truth["files"].items():
                if t["dataset"] != "musicnet":
                    continue
                heard = {i for c in clips if c.audio_uri.endswith(rel) for i in c.instruments}
                assert heard == {i["gm_name"] for i in t["instruments"] if not i["is_drum"]}
        if dataset == "musiccaps":
            assert all(c.end_s - c.start_s == pytest.approx(10.0, abs=0.05) for c in clips)
        if dataset == "magnatagatune":
            # the corpus writes the reader's split (default 12-1-3), and every split is present
            split_by_path = {rel: t["split"] for rel, t in truth["files"].items()
                             if t["dataset"] == dataset}
            got = {rel: c.split for c in clips for rel in split_by_path
                   if c.audio_uri.endswith(rel)}
            assert got == split_by_path
            assert set(got.values()) == {"train", "validation", "test"}
