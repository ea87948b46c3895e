"""The embed stage: RunInference with the encoder's ModelHandler, dead letters for clips that
cannot be loaded or encoded, float16 embeddings covering each clip's window, the index."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from embed.features import features_v1
from llark.audio import load_audio
from llark.errors import EncoderError
from pipelines import embed as E
from pipelines import schema as s
from pipelines.stage import group_by_track, with_dead_letters
from tests.shards_testdata import FAST, make_clips, write_set


def _dead_letters(folder) -> list[s.DeadLetter]:
    return [s.DeadLetter.from_json(line) for f in sorted(folder.rglob("*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]


def _clip_shape(e: s.Embedding) -> tuple[str, int, int, str]:
    return e.clip_id, e.n_frames, e.dim, e.encoder


class FlakyModel:
    """Stands in for an encoder on a GPU: refuses one window with an EncoderError (bad input)
    and fails a whole batch with a RuntimeError when it holds a 'poison' window (as a CUDA
    out-of-memory would). Everything else goes to the real tiny Jukebox."""

    def __init__(self, real) -> None:
        self.real = real

    def __call__(self, windows):
        sizes = {w.size for w in windows}
        if 22050 in sizes:                            # the 0.5 s clip: poison for its batch
            raise RuntimeError("CUDA out of memory (simulated)")
        if 26460 in sizes:                            # the 0.6 s clip: refused on its own
            raise EncoderError("window refused (simulated)")
        return self.real(windows)


class FlakyHandler(E.EmbedModelHandler):
    def load_model(self):
        return FlakyModel(super().load_model())


def test_embed_transforms_with_testpipeline(tmp_path):
    clips = make_clips(tmp_path / "audio", 3, seconds=1.0, corrupt=[1])
    staging = str(tmp_path / "staging")
    cfg = E.EmbedConfig(input="unused", output="unused", encoder="jukebox-tiny-random",
                        batch_size=2)
    with BeamTestPipeline(options=PipelineOptions(FAST)) as p:
        rows = p | beam.Create([c.to_row() for c in clips])
        windows = with_dead_letters(group_by_track(rows), "LoadAudio", E.LoadWindowsFn(44100),
                                    "embed", staging)
        results, _ = windows | RunInference(E.EmbedModelHandler(cfg)).with_exception_handling()
        emb = with_dead_letters(results | beam.Map(E.to_encoded), "ToEmbedding",
                                E.ToEmbeddingFn(cfg.encoder), "embed", staging)
        assert_that(emb | beam.Map(_clip_shape), equal_to([
            (clips[0].id, 10, 32, "jukebox-tiny-random"),
            (clips[2].id, 10, 32, "jukebox-tiny-random")]))
    dead = _dead_letters(tmp_path / "staging")
    assert [(d.id, d.error_type) for d in dead] == [(clips[1].id, "UndecodableAudioError")]
    assert dead[0].input_uri == clips[1].audio_uri


def test_batch_and_window_failures_become_dead_letters(tmp_path):
    # 0.5 s clip poisons its whole batch; 0.6 s clip is refused alone; the rest is encoded.
    clips = [c for k, sec in enumerate((1.0, 0.5, 0.6, 0.8))
             for c in make_clips(tmp_path / f"a{k}", 1, seconds=sec)]
    clips = [s.Clip(**{**c.__dict__, "id": s.clip_id("folder", f"x{k}", 0, c.end_s),
                       "source_id": f"x{k}"}) for k, c in enumerate(clips)]
    staging = str(tmp_path / "staging")
    cfg = E.EmbedConfig(input="unused", output="unused", encoder="jukebox-tiny-random",
                        batch_size=1)
    with BeamTestPipeline(options=PipelineOptions(FAST)) as p:
        rows = p | beam.Create([c.to_row() for c in clips])
        windows = with_dead_letters(group_by_track(rows), "LoadAudio", E.LoadWindowsFn(44100),
                                    "embed", staging)
        results, dlq = windows | RunInference(FlakyHandler(cfg)).with_exception_handling()
        (dlq.failed_inferences | beam.ParDo(E.BatchDeadLettersFn())
         | beam.io.WriteToText(f"{staging}/dead/Encode", file_name_suffix=".jsonl"))
        emb = with_dead_letters(results | beam.Map(E.to_encoded), "ToEmbedding",
                                E.ToEmbeddingFn(cfg.encoder), "embed", staging)
        assert_that(emb | beam.Map(lambda e: e.clip_id), equal_to([clips[0].id, clips[3].id]))
    dead = {d.id: d for d in _dead_letters(tmp_path / "staging")}
    assert set(dead) == {clips[1].id, clips[2].id}
    assert dead[clips[1].id].error_type == "RuntimeError"
    assert "whole batch" in dead[clips[1].id].message
    assert dead[clips[2].id].error_type == "EncoderError"
    assert "refused" in dead[clips[2].id].message


def test_to_embedding_refuses_what_float16_cannot_hold():
    fn = E.ToEmbeddingFn("features")
    fn.setup()
    meta = E.WindowMeta("folder:x:0-1000", "folder", "/x.wav", 22050)
    good = np.ones((10, 128), np.float32)
    (emb,) = list(fn.process(E.Encoded(meta, good, None)))
    assert emb.array().dtype == np.float16 and emb.array().shape == (10, 128)
    with pytest.raises(EncoderError, match="float16"):
        list(fn.process(E.Encoded(meta, good * 1e6, None)))
    with pytest.raises(EncoderError, match="shape"):
        list(fn.process(E.Encoded(meta, good[:9], None)))


def test_embed_run_end_to_end(tmp_path, capsys):
    clips = make_clips(tmp_path / "audio", 5, seconds=1.0, corrupt=[3])
    missing = s.Clip(id=s.clip_id("folder", "gone", 0, 1), dataset="folder", source_id="gone",
                     split="train", audio_uri=str(tmp_path / "audio" / "gone.wav"),
                     start_s=0.0, end_s=1.0, sample_rate_hz=22050)
    clip_dir = write_set(tmp_path / "clips", "clip", [c.to_row() for c in clips + [missing]])
    out = tmp_path / "emb"
    assert E.run(["--input", str(clip_dir), "--output", str(out), "--batch-size", "2",
                  *FAST]) == 0
    idx = s.verify_shards(out)
    assert idx.record == "embedding" and idx.total_rows == 4
    assert idx.dead_letters == {"AudioNotFoundError": 1, "UndecodableAudioError": 1}
    assert idx.counts["inputs"] == 6 == idx.total_rows + sum(idx.dead_letters.values())
    assert idx.counts["embedded"] == 4 and idx.counts["dead_letters"] == 2
    assert idx.counts["unaccounted"] == 0
    assert idx.counts["encoder"] == "features-v1" and idx.counts["dim"] == 128
    assert idx.config["encoder"] == "features" and idx.config["batch_size"] == 2
    dead = _dead_letters(out / s.DEAD_LETTER_DIR)
    assert {d.id for d in dead} == {clips[3].id, missing.id}          # only in dead letters
    rows = [s.Embedding.from_row(r) for r in pq.read_table(out).to_pylist()]
    assert sorted(e.clip_id for e in rows) == sorted(c.id for c in clips if c.id != clips[3].id)
    by_id = {c.id: c for c in clips}
    for e in rows:
        assert (e.n_frames, e.dim, e.frame_rate_hz) == (10, 128, 10.0)
        audio, _ = load_audio(by_id[e.clip_id].audio_uri, 22050, 0.0, 1.0)
        np.testing.assert_allclose(e.array(), features_v1(audio), rtol=2e-3, atol=2e-3)
    # A rerun of a complete stage does nothing.
    before = (out / s.INDEX_FILE).read_text()
    assert E.run(["--input", str(clip_dir), "--output", str(out), *FAST]) == 0
    assert (out / s.INDEX_FILE).read_text() == before
    assert "nothing to do" in capsys.readouterr().err


def test_embed_run_reads_annotated_clips_and_refuses_missing_weights(tmp_path, capsys,
                                                                      monkeypatch):
    clips = make_clips(tmp_path / "audio", 2, seconds=0.5)
    from tests.shards_testdata import annotation

    ann = write_set(tmp_path / "ann", "annotated_clip",
                    [s.AnnotatedClip(c, annotation(c.id)).to_row() for c in clips])
    out = tmp_path / "emb"
    assert E.run(["--input", str(ann), "--output", str(out), *FAST]) == 0
    assert s.verify_shards(out).total_rows == 2
    monkeypatch.delenv("LLARK_JUKEBOX_DIR", raising=False)
    assert E.run(["--input", str(ann), "--output", str(tmp_path / "j"), "--encoder", "jukebox",
                  *FAST]) == 1
    err = capsys.readouterr().err
    assert "prior_level_2.pth.tar" in err and "--checkpoint-dir" in err
    assert not (tmp_path / "j" / s.INDEX_FILE).exists()
    assert E.run(["--input", str(ann), "--output", str(out), "--encoder", "nope"]) == 1
    assert "--encoder 'nope'" in capsys.readouterr().err


def test_localize_checkpoint_keeps_local_folders():
    assert E.localize_checkpoint("") == ""
    assert E.localize_checkpoint("/models/jukebox") == "/models/jukebox"


def test_a_refused_window_does_not_take_its_batch_down():
    from embed.registry import build_encoder

    handler = E.EmbedModelHandler(E.EmbedConfig(input="x", output="y",
                                                encoder="jukebox-tiny-random"))
    model = FlakyModel(build_encoder("jukebox-tiny-random", device="cpu"))
    windows = [E.AudioWindow(E.WindowMeta(f"folder:w{n}:0-1", "folder", "", n),
                             np.full(n, 0.1, np.float32)) for n in (4410, 26460, 8820)]
    out = list(handler.run_inference(windows, model))
    assert [r.example.clip_id for r in out] == ["folder:w4410:0-1", "folder:w26460:0-1",
                                                "folder:w8820:0-1"]
    assert out[0].inference.shape == (1, 32) and out[2].inference.shape == (2, 32)
    assert isinstance(out[1].inference, E.EncodeFailure)
    assert out[1].inference.error_type == "EncoderError"


def test_a_remote_track_is_opened_once_for_all_of_its_clips(tmp_path):
    from pipelines.stage import TrackClips
    from tests.remote_fs import CountingFileSystem

    (clip,) = make_clips(tmp_path / "audio", 1, seconds=1.0, track_seconds=3.0)
    uri = "llarkcount://" + clip.audio_uri
    clips = [s.Clip(**{**clip.__dict__, "audio_uri": uri, "start_s": a, "end_s": a + 1.0,
                       "id": s.clip_id("folder", "t0", a, a + 1.0)}) for a in (0.0, 1.0, 2.0)]
    CountingFileSystem.opened.clear()
    out = list(E.LoadWindowsFn(22050).process(TrackClips(uri, tuple(c.to_row() for c in clips))))
    assert [w.clip_id for w in out] == [c.id for c in clips]
    assert all(w.audio.size == 22050 for w in out)
    assert CountingFileSystem.opened == [uri]
