"""The Beam stage ``llark annotate``: AnnotateTrackFn under TestPipeline, an end-to-end run
on tmp folders that feeds a silent clip (written, ``is_silent``) and corrupt, missing and
truncated clips (dead letters only), with index counts that add up; a remote file is opened
once per track; one annotator per process."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from annotate.annotator import AnnotatorConfig
from llark.errors import ConfigError
from llark.demo.synth import Part, SongSpec, render_song, roman_to_harte
from pipelines import schema as s
from pipelines.annotate import AnnotateConfig, AnnotateTrackFn, run, to_annotation
from pipelines.sources import open_audio
from pipelines.stage import DEAD_TAG, TrackClips
from tests.remote_fs import CountingFileSystem
from tests.setfactory import write_set

FAST = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
SR = 22050


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """A 16 s song (key G major, 100 BPM, 4/4), a silent file, a corrupt file."""
    d = tmp_path_factory.mktemp("audio")
    spec = SongSpec(tonic=7, mode="major", tempo_bpm=100.0, beats_per_bar=4,
                    progression=roman_to_harte(["I", "V", "vi", "IV"], 7, "major"),
                    parts=(Part("drums", "drums", "rock"), Part("electric bass", "bass"),
                           Part("electric piano", "chords")),
                    duration_s=16.0, seed=3, first_beat_s=0.2)
    sf.write(d / "song.wav", render_song(spec, SR).audio, SR)
    sf.write(d / "silence.wav", np.zeros(8 * SR, np.float32), SR)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 40)
    return d


def clip(audio_dir: Path, name: str, start: float, end: float, sid: str | None = None) -> s.Clip:
    sid = sid or name.split(".")[0]
    return s.Clip(id=s.clip_id("folder", sid, start, end), dataset="folder", source_id=sid,
                  split="train", audio_uri=str(audio_dir / name), start_s=start, end_s=end,
                  sample_rate_hz=SR, title=sid)


def clips(audio_dir: Path) -> dict[str, s.Clip]:
    return {
        "song_a": clip(audio_dir, "song.wav", 0.0, 8.0),
        "song_b": clip(audio_dir, "song.wav", 8.0, 16.0),
        "silent": clip(audio_dir, "silence.wav", 0.0, 8.0),
        "corrupt": clip(audio_dir, "corrupt.wav", 0.0, 8.0),
        "missing": clip(audio_dir, "missing.wav", 0.0, 8.0),
        "truncated": clip(audio_dir, "song.wav", 10.0, 20.0, sid="song_late"),
    }


def _summary(ac: s.AnnotatedClip) -> tuple:
    a = ac.annotation
    return (ac.id, a.is_silent, a.key, round(a.tempo_bpm / 10))


def _dead_id(line: str) -> tuple[str, str]:
    d = s.DeadLetter.from_json(line)
    return d.id, d.error_type


def _group(*cs: s.Clip) -> TrackClips:
    return TrackClips(cs[0].audio_uri, tuple(c.to_row() for c in cs))


def test_annotate_fn_under_test_pipeline(audio_dir: Path) -> None:
    c = clips(audio_dir)
    groups = [_group(c["song_a"], c["truncated"]), _group(c["silent"]), _group(c["corrupt"])]
    with TestPipeline() as p:
        out = (p | beam.Create(groups)
               | beam.ParDo(AnnotateTrackFn(AnnotatorConfig())).with_outputs(DEAD_TAG,
                                                                             main="main"))
        good = out["main"] | "Summ" >> beam.Map(_summary)
        bad = out[DEAD_TAG] | "Dead" >> beam.Map(_dead_id)
        assert_that(good, equal_to([(c["song_a"].id, False, "G major", 10),
                                    (c["silent"].id, True, "", 0)]), label="annotated")
        # one dead letter per failing clip; the track's other clip is still annotated
        assert_that(bad, equal_to([(c["corrupt"].id, "UndecodableAudioError"),
                                   (c["truncated"].id, "TruncatedAudioError")]), label="dead")


def test_end_to_end_run_dead_letters_and_counts(tmp_path: Path, audio_dir: Path, capsys) -> None:
    c = clips(audio_dir)
    write_set(tmp_path / "clips", list(c.values()), "clip", "ingest")
    out = tmp_path / "annotations"
    argv = ["--input", str(tmp_path / "clips"), "--output", str(out), "--max-error-rate", "0.9",
            *FAST]
    assert run(argv) == 0
    index = s.read_index(out, "annotated_clip")
    s.verify_shards(out, index)
    # good + silent clips written; corrupt, missing and truncated ones dead-lettered only
    assert index.total_rows == 3
    assert index.dead_letters == {"AudioNotFoundError": 1, "TruncatedAudioError": 1,
                                  "UndecodableAudioError": 1}
    assert index.counts["inputs"] == 6 and index.counts["annotated"] == 3
    assert index.counts["silent"] == 1 and index.counts["dead_letters"] == 3
    assert index.counts["unaccounted"] == 0 and index.counts["backend"] == "consensus"
    assert index.config["backend"] == "consensus" and index.config["essentia_profile"] == "shaath"

    table = pq.read_table(out / index.shards[0].path)
    assert table.schema.metadata[b"llark_record"] == b"annotated_clip"
    written = {r["id"]: s.AnnotatedClip.from_row(r) for r in table.to_pylist()}
    assert set(written) == {c["song_a"].id, c["song_b"].id, c["silent"].id}
    silent = written[c["silent"].id].annotation
    assert silent.is_silent and silent.beats == () and silent.key == ""
    assert [ch.label for ch in silent.chords] == ["N"]
    for k in ("song_a", "song_b"):
        ac = written[c[k].id]
        a = ac.annotation
        assert ac.clip == c[k]                       # the clip's columns pass through unchanged
        assert not a.is_silent and a.backend == "consensus" and a.meter == 4
        assert a.tempo_bpm == pytest.approx(100.0, rel=0.04)
        assert a.key == "G major"
        # times are relative to the window, which is what the model hears
        assert all(0.0 <= b.time_s < 8.05 for b in a.beats)
        assert a.chords[-1].end_s == pytest.approx(8.0, abs=0.06)
        raw = json.loads(a.backends_json)
        assert {"madmom", "essentia"} <= set(raw)

    dead_file = out / s.DEAD_LETTER_DIR / "annotate" / "part-00000.jsonl"
    dead = [s.DeadLetter.from_json(line) for line in dead_file.read_text().splitlines()]
    assert {d.id for d in dead} == {c["corrupt"].id, c["missing"].id, c["truncated"].id}
    assert all(d.stage == "annotate" and d.input_uri and d.message for d in dead)
    assert not set(written) & {d.id for d in dead}

    err = capsys.readouterr().err
    assert "wrote 3 annotated_clip rows" in err and "dead letters" in err
    # a rerun of a complete stage does nothing
    assert run(argv) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_config_errors_and_input_checks(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError):
        AnnotateConfig(input="x", output="y", backend="librosa")
    with pytest.raises(ConfigError):
        AnnotateConfig(input="", output="y")
    with pytest.raises(ConfigError):
        AnnotateConfig(input="x", output="y", tempo_activation="none")
    # an input folder without an index is refused before any worker starts
    (tmp_path / "clips").mkdir()
    assert run(["--input", str(tmp_path / "clips"), "--output", str(tmp_path / "o"), *FAST]) == 1
    assert "no _index.json" in capsys.readouterr().err


def test_remote_uris_are_read_as_bytes_through_beam_filesystems(audio_dir: Path, capsys) -> None:
    from annotate.annotator import build_annotator
    from pipelines.analyze import run as analyze
    from pipelines.annotate import annotate_clip

    uri = "llarktest://" + str(audio_dir / "song.wav")
    data = open_audio(uri)
    assert isinstance(data, bytes) and data == (audio_dir / "song.wav").read_bytes()
    c = clip(audio_dir, "song.wav", 4.0, 12.0)
    remote = s.Clip(**{**c.__dict__, "audio_uri": uri})
    ac = annotate_clip(remote, data, build_annotator("essentia"))
    assert ac.clip.audio_uri == uri and ac.annotation.backend == "essentia"
    assert ac.annotation.chords[-1].end_s == pytest.approx(8.0, abs=0.06)
    assert analyze([uri, "llarktest:///no/such.wav", "--backend", "essentia", "--end", "4"]) == 1
    ok, missing = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert ok["path"] == uri and ok["tempo_bpm"] > 0
    assert missing["error"].startswith("AudioNotFoundError")


def test_to_annotation_and_read_source(tmp_path: Path) -> None:
    from annotate.consensus import silent_analysis

    a = to_annotation("folder:x:0-5000", silent_analysis("consensus", 5.0, -90.0))
    assert a.clip_id == "folder:x:0-5000" and a.is_silent and a.chords[0].label == "N"
    assert s.Annotation.from_row(a.to_row()) == a
    f = tmp_path / "a.wav"
    f.write_bytes(b"x")
    assert open_audio(str(f)) == str(f)
    assert open_audio("file://" + str(f)) == str(f)


def test_remote_audio_is_read_once_per_track(tmp_path: Path, audio_dir: Path) -> None:
    """Four clips of one remote track and one of another: two reads, four + one annotations."""
    def remote(name: str, start: float, end: float) -> s.Clip:
        c = clip(audio_dir, name, start, end)
        return s.Clip(**{**c.__dict__, "audio_uri": "llarkcount://" + str(audio_dir / name)})

    song = [remote("song.wav", a, a + 4.0) for a in (0.0, 4.0, 8.0, 12.0)]
    write_set(tmp_path / "clips", song + [remote("silence.wav", 0.0, 8.0)], "clip", "ingest")
    CountingFileSystem.opened.clear()
    out = tmp_path / "annotations"
    assert run(["--input", str(tmp_path / "clips"), "--output", str(out), "--backend",
                "essentia", *FAST]) == 0
    assert s.read_index(out, "annotated_clip").total_rows == 5
    assert sorted(CountingFileSystem.opened) == sorted(
        "llarkcount://" + str(audio_dir / n) for n in ("song.wav", "silence.wav"))


def test_threads_of_a_process_share_one_annotator() -> None:
    """A worker unpickles the DoFn once per harness thread; setup() hands every copy the same
    models (a second DoFn of the pipeline gets its own)."""
    import pickle

    payload = pickle.dumps(AnnotateTrackFn(AnnotatorConfig(backend="essentia")))
    fns = [pickle.loads(payload) for _ in range(3)]
    for fn in fns:
        fn.setup()
    assert fns[0]._annotator is fns[1]._annotator is fns[2]._annotator
    other = AnnotateTrackFn(AnnotatorConfig(backend="essentia"))
    other.setup()
    assert other._annotator is not fns[0]._annotator
