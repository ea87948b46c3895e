"""``llark analyze``: JSON lines with exactly the documented fields, errors per file, exit
status, windows, backends, keys and chords spelled as musicians write them; and a run over the
real recordings (skips when they are absent)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from llark.demo.synth import Part, SongSpec, render_song, roman_to_harte
from llark.music import KEYS, spell_chord
from pipelines.analyze import run

FIELDS = {"path", "tempo_bpm", "beats", "downbeats", "key", "chords", "backend"}
HARTE_RE = re.compile(r"^(N|[A-G](#|b)?:(maj|min))$")
SR = 22050


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("analyze")
    # F minor: i iv V i = F:min Bb:min C:maj F:min (sharps-only spelling would say A#:min)
    spec = SongSpec(tonic=5, mode="minor", tempo_bpm=120.0, beats_per_bar=4,
                    progression=roman_to_harte(["i", "iv", "V", "i"], 5, "minor"),
                    parts=(Part("drums", "drums", "rock"), Part("electric bass", "bass"),
                           Part("piano", "chords"), Part("synth lead", "melody")),
                    duration_s=16.0, seed=2, first_beat_s=0.25)
    song = render_song(spec, SR)
    out = {"song": d / "song.flac", "silence": d / "silence.wav", "corrupt": d / "corrupt.mp3",
           "missing": d / "missing.wav"}
    sf.write(out["song"], song.audio, SR)
    sf.write(out["silence"], np.zeros(5 * SR, np.float32), SR)
    out["corrupt"].write_bytes(b"ID3" + bytes(1000))
    return out


def lines(capsys, want_err: list | None = None) -> list[dict]:
    captured = capsys.readouterr()
    if want_err is not None:
        want_err.append(captured.err)
    return [json.loads(line) for line in captured.out.splitlines()]


def check_result(d: dict, duration_s: float) -> None:
    assert set(d) == FIELDS
    assert isinstance(d["tempo_bpm"], float) and d["tempo_bpm"] >= 0
    times = [b["time"] for b in d["beats"]]
    assert times == sorted(times) and all(0 <= t <= duration_s + 0.05 for t in times)
    assert all(set(b) == {"time", "beat_number"} and b["beat_number"] >= 0 for b in d["beats"])
    assert d["downbeats"] == [b["time"] for b in d["beats"] if b["beat_number"] == 1]
    assert set(d["key"]) == {"label", "confidence"}
    assert d["key"]["label"] == "" or d["key"]["label"] in KEYS     # "Bb major", not "A# major"
    assert 0.0 <= d["key"]["confidence"] <= 1.0
    assert d["chords"] and d["chords"][0]["start"] == 0.0
    assert d["chords"][-1]["end"] == pytest.approx(duration_s, abs=0.06)
    for a, b in zip(d["chords"], d["chords"][1:]):
        assert a["end"] == b["start"]
    assert all(set(c) == {"start", "end", "label"} and HARTE_RE.match(c["label"])
               for c in d["chords"])
    # every chord is spelled in the reported key ("Bb:min" in F minor)
    assert all(c["label"] == spell_chord(c["label"], d["key"]["label"] or None)
               for c in d["chords"])


def test_analyze_prints_one_object_per_file_and_fails_at_the_end(files, capsys) -> None:
    paths = [str(files[k]) for k in ("song", "missing", "corrupt", "silence")]
    assert run(paths) == 1
    err: list[str] = []
    out = lines(capsys, err)
    assert [d["path"] for d in out] == paths          # in order, one line per file
    song, missing, corrupt, silence = out
    check_result(song, 16.0)
    assert song["backend"] == "consensus"
    assert song["tempo_bpm"] == pytest.approx(120.0, rel=0.04)
    assert song["key"]["label"] == "F minor"
    labels = {c["label"] for c in song["chords"]}
    assert "Bb:min" in labels and not any("#" in lab for lab in labels), labels
    assert len(song["downbeats"]) >= 6
    assert set(missing) == {"path", "error"} and missing["error"].startswith("AudioNotFoundError")
    assert set(corrupt) == {"path", "error"} and "Undecodable" in corrupt["error"]
    check_result(silence, 5.0)
    assert silence["beats"] == [] and silence["tempo_bpm"] == 0.0
    assert silence["key"] == {"label": "", "confidence": 0.0}
    assert [c["label"] for c in silence["chords"]] == ["N"]
    assert "2 of 4 file(s) analysed" in err[0] and "2 failed" in err[0]


def test_window_and_single_backends(files, capsys) -> None:
    song = str(files["song"])
    assert run([song, "--start", "4", "--end", "12", "--backend", "madmom"]) == 0
    (d,) = lines(capsys)
    check_result(d, 8.0)                                # times are relative to --start
    assert d["backend"] == "madmom" and d["downbeats"]
    assert run([song, "--backend", "essentia", "--end", "8"]) == 0
    (d,) = lines(capsys)
    check_result(d, 8.0)
    assert d["backend"] == "essentia" and d["downbeats"] == []     # essentia has no bar model
    assert all(b["beat_number"] == 0 for b in d["beats"])


def test_bad_arguments_exit_with_usage(files, capsys) -> None:
    for argv in ([str(files["song"]), "--start", "5", "--end", "2"],
                 [str(files["song"]), "--start", "-1"],
                 [str(files["song"]), "--backend", "librosa"], []):
        with pytest.raises(SystemExit) as exc:
            run(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_window_past_the_end_is_an_error_line(files, capsys) -> None:
    assert run([str(files["song"]), "--start", "20", "--end", "30"]) == 1
    (d,) = lines(capsys)
    assert set(d) == {"path", "error"} and d["error"].startswith("TruncatedAudioError")


def test_llark_dispatcher_runs_analyze(files, capsys) -> None:
    from pipelines.cli import main

    assert main(["analyze", str(files["silence"])]) == 0
    (d,) = lines(capsys)
    assert d["path"] == str(files["silence"]) and d["tempo_bpm"] == 0.0


@pytest.mark.integration
@pytest.mark.slow
def test_analyze_real_recordings(real_audio_dir: Path, capsys) -> None:
    import soundfile as sf

    paths = sorted(str(p) for p in real_audio_dir.glob("*.ogg"))
    assert len(paths) == 6
    assert run(paths) == 0
    out = {Path(d["path"]).name: d for d in lines(capsys)}
    assert len(out) == 6
    for path in paths:
        d = out[Path(path).name]
        check_result(d, sf.info(path).duration)
        assert 40.0 <= d["tempo_bpm"] <= 240.0 and d["beats"] and d["downbeats"]
        assert d["key"]["label"] and d["backend"] == "consensus"
        # whole bars: beat numbers count up within a bar
        numbers = [b["beat_number"] for b in d["beats"]]
        assert max(numbers) in (3, 4)
    # Known facts of these recordings (docs: real-audio/README.md and the works themselves):
    # the Sugar Plum Fairy is in E minor; Vibe Ace is a steady swing at about 130 BPM.
    assert out["Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"]["key"][
        "label"] == "E minor"
    assert out["Kevin_MacLeod_-_Vibe_Ace.ogg"]["tempo_bpm"] == pytest.approx(130, rel=0.04)
