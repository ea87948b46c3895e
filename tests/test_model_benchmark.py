"""``llark benchmark`` (model/benchmark.py) on miniature copies of the paper's benchmarks.

Each benchmark's published layout is built in a temporary folder from synthesized songs
(llark.demo.synth: GiantSteps key ``annotations/key/*.key`` + ``audio/*.mp3``, GiantSteps tempo
``annotations_v2/tempo/*.bpm``, GTZAN ``genres/<genre>/<genre>.000NN.wav``, MedleyDB
``Audio/<track>/<track>_MIX.wav`` + ``_METADATA.yaml``), with bad entries that must be skipped
with a counted reason. The scores are checked against what the inputs imply: the annotator
against references chosen one fifth / relative key / double tempo away from the synthesized
truth, scripted answers against hand-computed accuracy and F1, a tiny checkpoint's answers
against mir_eval applied to them directly, and a tiny checkpoint overfit to answer each song's
true key against the score those references imply.
"""

from __future__ import annotations

import json
from pathlib import Path

import mir_eval
import numpy as np
import pytest
import soundfile as sf
import yaml

from llark.demo.synth import Part, SongSpec, render_song, roman_to_harte
from model.benchmark import (BAD_ANNOTATION, BAD_AUDIO, BENCHMARKS, NO_ACTIVATIONS,
                             NO_ANNOTATION, NO_AUDIO, NO_INSTRUMENTS, NO_TEMPO, BenchmarkData,
                             Item, read_giantsteps_key, read_giantsteps_tempo, read_gtzan,
                             read_medleydb, run as bench_run, run_benchmark)
from model.evaluate import TASK_QUESTIONS, Labels, Vocabulary, parse_key

SR = 22050

# The two songs tests/test_annotate_backends.py checks the consensus annotator on (tempo within
# 4 %, exact key): here they stand for GiantSteps tracks.
SONGS = {
    "1001.LOFI": SongSpec(tonic=2, mode="major", tempo_bpm=112.0, beats_per_bar=4,
                          progression=roman_to_harte(["I", "IV", "V", "I"], 2, "major"),
                          parts=(Part("drums", "drums", "rock"), Part("electric bass", "bass"),
                                 Part("piano", "chords"), Part("synth lead", "melody")),
                          duration_s=16.0, seed=11, first_beat_s=0.3),         # D major, 112
    "1002.LOFI": SongSpec(tonic=4, mode="minor", tempo_bpm=96.0, beats_per_bar=3,
                          progression=roman_to_harte(["i", "iv", "V", "i"], 4, "minor"),
                          parts=(Part("drums", "drums", "waltz"),
                                 Part("contrabass", "bass", "waltz"),
                                 Part("acoustic guitar", "chords", "waltz"),
                                 Part("flute", "melody")),
                          duration_s=16.0, seed=5, first_beat_s=0.2),          # E minor, 96
}


def write_song(path: Path, stem: str, seconds: float | None = None) -> None:
    spec = SONGS[stem]
    audio = render_song(spec, SR).audio
    if seconds is not None:
        audio = audio[: int(seconds * SR)]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR)


def giantsteps(root: Path, seconds: float | None = None) -> Path:
    """Both GiantSteps layouts in one folder (as the two data sets' repositories lay them out).

    References: 1001 = D major / 112 BPM (the truth), 1002 = G major (the relative major of the
    true E minor) / 192 BPM (twice the true 96). Bad entries: an unreadable key, an annotation
    without audio, audio without annotation.
    """
    for stem in SONGS:
        write_song(root / "audio" / f"{stem}.mp3", stem, seconds)
    key = root / "annotations" / "key"
    tempo = root / "annotations_v2" / "tempo"
    key.mkdir(parents=True)
    tempo.mkdir(parents=True)
    (key / "1001.LOFI.key").write_text("D major\n")
    (key / "1002.LOFI.key").write_text("G major")
    (key / "1003.LOFI.key").write_text("-")                        # unreadable
    (key / "1004.LOFI.key").write_text("A minor")                  # no audio
    (tempo / "1001.LOFI.bpm").write_text("112\n")
    (tempo / "1002.LOFI.bpm").write_text("192.0")
    (tempo / "1004.LOFI.bpm").write_text("120")                    # no audio
    (tempo / "1003.LOFI.bpm").write_text("fast")                   # unreadable
    (root / "annotations" / "tempo").mkdir()                       # v1: not used when v2 exists
    (root / "annotations" / "tempo" / "1001.LOFI.bpm").write_text("50")
    sf.write(root / "audio" / "1005.LOFI.wav", np.zeros(SR, np.float32), SR)   # no annotation
    return root


def tone(path: Path, hz: float, seconds: float = 3.0, sr: int = SR) -> None:
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), sr)


def gtzan(root: Path) -> Path:
    genres = root / "genres"
    tone(genres / "hiphop" / "hiphop.00000.wav", 220)
    tone(genres / "rock" / "rock.00001.wav", 330)
    tone(genres / "jazz" / "jazz.00002.wav", 440)
    (genres / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF not really a wave file")
    tone(genres / "polka" / "polka.00000.wav", 550)                 # not a GTZAN genre
    (genres / "rock" / "readme.txt").write_text("not audio: ignored")
    return root


#: MedleyDB's activation confidence hop (medleydb/annotate/activation_conf.py: 2048 samples of
#: 44.1 kHz audio) and the real files' format (np.savetxt, header "time,S01,...", "%.4f").
HOP_S = 2048 / 44100


def activation_file(path: Path, seconds: float, active: dict[str, list[tuple[float, float]]]
                    ) -> None:
    """``<track>_ACTIVATION_CONF.lab``: each stem 0.9 inside its (start, end) spans, else 0.05."""
    times = np.arange(0.0, seconds, HOP_S)
    cols = []
    for spans in active.values():
        on = np.zeros(len(times), bool)
        for a, b in spans:
            on |= (times >= a) & (times <= b)
        cols.append(np.where(on, 0.9, 0.05))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([times] + cols), header="time," + ",".join(active),
               delimiter=",", fmt="%.4f", comments="")


def medleydb(root: Path) -> Path:
    """MedleyDB's layout with two real tracks' stem labels (as the MedleyDB metadata and the
    LLark notebook list them) and bad entries.

    AClassicEducation_NightOwl, 70 s (crop 30-60 s): in the crop are active the bass, the drum
    set, the guitars (S03 only 58-59 s), the singers, the tambourine and the fx stem; the
    synthesizer plays 0-25 s and 62-70 s only. Scored classes (the paper's mapping; tambourine
    and fx/processed sound are not scored): bass, drum, guitar, vocals.
    LizNelson_Rainfall, 40 s (crop 0-30 s): the three singers sing 31-40 s only, the acoustic
    guitar 0-30 s, the electric guitar 33-40 s. Scored: guitar.
    """
    audio = root / "Audio"
    night_owl = {"S01": "electric bass", "S02": "drum set", "S03": "distorted electric guitar",
                 "S04": "distorted electric guitar", "S05": "clean electric guitar",
                 "S06": "male singer", "S07": "synthesizer", "S08": "vocalists",
                 "S09": "tambourine", "S10": "fx/processed sound", "S11": "male singer"}
    rainfall = {"S01": "female singer", "S02": "female singer", "S03": "female singer",
                "S04": "acoustic guitar", "S05": "clean electric guitar"}
    tracks = {
        "AClassicEducation_NightOwl": (night_owl, 70.0, {
            **{s: [(0.0, 70.0)] for s in night_owl},
            "S03": [(58.0, 59.0)], "S07": [(0.0, 25.0), (62.0, 70.0)]}),
        "LizNelson_Rainfall": (rainfall, 40.0, {
            "S01": [(31.0, 40.0)], "S02": [(31.0, 40.0)], "S03": [(31.0, 40.0)],
            "S04": [(0.0, 30.0)], "S05": [(33.0, 40.0)]}),
        "JoelHelander_IntheAtticBedroom": ({"S01": "Main System"}, 20.0,     # nothing scored
                                           {"S01": [(0.0, 20.0)]}),
        "ArtistC_Song": ({}, 10.0, {}),                                      # no instrument
        "ArtistD_Song": ({"S01": "flute"}, 10.0, {"S01": [(0, 10)]}),        # no mix
        "ArtistF_Song": ({"S01": "flute"}, 10.0, None),                      # no activations
        "ArtistG_Song": ({"S01": "flute"}, 10.0, "garbled"),                 # bad activations
    }
    conf_dir = root / "Annotations" / "Instrument_Activations" / "ACTIVATION_CONF"
    for name, (stems, seconds, active) in tracks.items():
        folder = audio / name
        folder.mkdir(parents=True)
        meta = {"artist": name.split("_")[0], "title": name.split("_")[1],
                "mix_filename": f"{name}_MIX.wav",
                "stems": {s: {"instrument": i, "stem_idx": k + 1,
                              "filename": f"{name}_STEM_{s[1:]}.wav"}
                          for k, (s, i) in enumerate(stems.items())}
                or {"S01": {"component": "melody"}}}
        where = folder if name != "LizNelson_Rainfall" else root / "Metadata"  # both places
        where.mkdir(exist_ok=True)
        (where / f"{name}_METADATA.yaml").write_text(yaml.safe_dump(meta))
        if name != "ArtistD_Song":
            tone(folder / f"{name}_MIX.wav", 262, seconds, sr=8000)
        if active == "garbled":
            (conf_dir / f"{name}_ACTIVATION_CONF.lab").write_text("time;S01\n0.0;0.9\n")
        elif active is not None:
            activation_file(conf_dir / f"{name}_ACTIVATION_CONF.lab", seconds, active)
    (audio / "ArtistE_Song").mkdir()                                 # no metadata
    return root


def skips(data) -> dict[str, str]:
    return {s.item_id: s.reason for s in data.skipped}


# ---------------------------------------------------------------- readers

def test_readers_find_every_track_and_count_the_rest(tmp_path):
    gs = giantsteps(tmp_path / "gs", seconds=1.0)
    key = read_giantsteps_key(gs)
    assert [(i.item_id, i.labels.key) for i in key.items] == [
        ("giantsteps-key:1001.LOFI", "D major"), ("giantsteps-key:1002.LOFI", "G major")]
    assert key.items[0].audio.suffix == ".mp3"
    assert skips(key) == {"giantsteps-key:1003.LOFI": BAD_ANNOTATION,
                          "giantsteps-key:1004.LOFI": NO_AUDIO,
                          "giantsteps-key:1005.LOFI": NO_ANNOTATION}
    tempo = read_giantsteps_tempo(gs)
    assert tempo.source == "annotations_v2/tempo"
    assert [i.labels.tempo_bpm for i in tempo.items] == [112.0, 192.0]
    assert skips(tempo)["giantsteps-tempo:1003.LOFI"] == BAD_ANNOTATION

    g = read_gtzan(gtzan(tmp_path / "gtzan"))
    assert {i.item_id: i.labels.genres for i in g.items} == {
        "gtzan:hiphop.00000": ("hip hop",), "gtzan:jazz.00002": ("jazz",),
        "gtzan:jazz.00054": ("jazz",), "gtzan:rock.00001": ("rock",)}
    assert skips(g) == {"gtzan:polka.00000": BAD_ANNOTATION}
    assert len(g.vocabulary.genres["gtzan"]) == 10

    m = read_medleydb(medleydb(tmp_path / "mdb"))
    # the paper's coarse classes of the stems active in the crop (see the fixture's docstring)
    assert {i.item_id: (i.labels.instruments, i.start_s) for i in m.items} == {
        "medleydb:AClassicEducation_NightOwl": (("bass", "drum", "guitar", "vocals"), 30.0),
        "medleydb:LizNelson_Rainfall": (("guitar",), 0.0)}
    assert skips(m) == {"medleydb:ArtistC_Song": NO_INSTRUMENTS,
                        "medleydb:JoelHelander_IntheAtticBedroom": NO_INSTRUMENTS,
                        "medleydb:ArtistD_Song": NO_AUDIO,
                        "medleydb:ArtistE_Song": NO_ANNOTATION,
                        "medleydb:ArtistF_Song": NO_ACTIVATIONS,
                        "medleydb:ArtistG_Song": BAD_ANNOTATION}
    # the notebook's mapping has 18 coarse classes (plus None)
    assert len(m.vocabulary.instruments["medleydb"]) == 18
    assert m.notes == {"label the paper does not score: fx/processed sound": 1,
                       "label the paper does not score: main system": 1,
                       "label the paper does not score: tambourine": 1,
                       "stem inactive in the crop": 5}       # S07; Rainfall's S01-S03, S05


def test_the_miniature_layouts_of_llark_demo_read_back_with_their_truth(tmp_path):
    from llark.demo.benchmarks import write_benchmarks

    folders = write_benchmarks(tmp_path, tracks=2, seconds=1.5, seed=3)
    for name, folder in folders.items():
        data = BENCHMARKS[name].read(folder)
        assert len(data.items) == 2 and not data.skipped, name
    keys = [i.labels.key for i in read_giantsteps_key(folders["giantsteps-key"]).items]
    assert all(k.endswith((" major", " minor")) for k in keys)
    assert all(60 <= i.labels.tempo_bpm <= 200
               for i in read_giantsteps_tempo(folders["giantsteps-tempo"]).items)
    assert [i.labels.genres for i in read_gtzan(folders["gtzan"]).items] == [("pop",), ("rock",)]
    assert all("drum" in i.labels.instruments
               for i in read_medleydb(folders["medleydb"]).items)


def test_a_wrong_folder_is_a_clear_error(tmp_path, capsys):
    assert bench_run(["--name", "gtzan", "--data-dir", str(tmp_path), "--checkpoint",
                      "annotator-nope", "--output", str(tmp_path / "o")]) == 2
    assert "no genres/ folder" in capsys.readouterr().err
    assert bench_run(["--name", "giantsteps-key", "--data-dir", str(tmp_path / "missing"),
                      "--checkpoint", "x"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    # the annotators have no genre or instruments: said, not scored as zero
    assert bench_run(["--name", "medleydb", "--data-dir", str(tmp_path), "--checkpoint",
                      "annotator"]) == 2
    assert "estimate key and tempo only" in capsys.readouterr().err


# ---------------------------------------------------------------- scoring with known answers

class Scripted:
    """An answerer with fixed answers by track id (reads the audio like the real ones do)."""

    label = "scripted answers"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def prepare(self, item: Item, task: str) -> str:
        from llark.audio import probe_audio

        probe_audio(str(item.audio))                 # raises for audio that does not decode
        return self.answers[item.item_id]

    def answer(self, prepared, task):
        return list(prepared)


def test_genre_accuracy_and_instrument_f1_on_known_answers(tmp_path):
    data = read_gtzan(gtzan(tmp_path / "gtzan"))
    result = run_benchmark(BENCHMARKS["gtzan"], data, Scripted({
        "gtzan:hiphop.00000": "This is hiphop.",             # correct (spelling variant)
        "gtzan:rock.00001": "Jazz, or maybe rock",           # first genre named: jazz, wrong
        "gtzan:jazz.00002": "Some smooth jazz.",             # correct
        "gtzan:jazz.00054": "never asked"}), batch_size=2)
    m = result.metrics
    assert m["genre"]["n"] == 3 and m["genre"]["accuracy"] == pytest.approx(2 / 3)
    assert m["skipped"] == {BAD_ANNOTATION: 1, BAD_AUDIO: 1}      # polka; the broken jazz file
    assert m["n_tracks"] == 5 and m["n_asked"] == 4
    assert {r["question"] for r in result.records} == {TASK_QUESTIONS["genre"]}

    data = read_medleydb(medleydb(tmp_path / "mdb"))
    m = run_benchmark(BENCHMARKS["medleydb"], data, Scripted({
        # references {bass, drum, guitar, vocals}: tp 4, fp 0, fn 0 -> F1 1
        "medleydb:AClassicEducation_NightOwl": "electric guitar, drums, bass and male vocals",
        # reference {guitar}: guitar, piano, vocals named, drums denied: tp 1, fp 2 -> F1 0.5
        "medleydb:LizNelson_Rainfall": "Acoustic guitar and piano, with female vocals; "
                                       "no drums."})).metrics
    ins = m["instruments"]
    assert ins["mean_f1"] == pytest.approx((1.0 + 0.5) / 2)          # the paper's figure
    assert (ins["micro_precision"], ins["micro_recall"]) == (pytest.approx(5 / 7), 1.0)
    assert ins["micro_f1"] == pytest.approx(2 * 5 / (2 * 5 + 2))
    assert m["skipped"] == {BAD_ANNOTATION: 1, NO_ACTIVATIONS: 1, NO_ANNOTATION: 1,
                            NO_AUDIO: 1, NO_INSTRUMENTS: 2}
    assert m["label_notes"]["stem inactive in the crop"] == 5


# ---------------------------------------------------------------- the annotator ceiling

def test_annotator_scores_what_the_references_imply(tmp_path, capsys):
    gs = giantsteps(tmp_path / "gs")
    out = tmp_path / "key"
    assert bench_run(["--name", "giantsteps-key", "--data-dir", str(gs), "--checkpoint",
                      "annotator", "--output", str(out)]) == 0
    preds = {r["clip_id"]: r["prediction"] for r in
             map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    # the annotator hears the truth (D major, E minor); 1002's reference is E minor's relative
    assert preds == {"giantsteps-key:1001.LOFI": "D major", "giantsteps-key:1002.LOFI": "E minor"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["key"]["weighted_score"] == pytest.approx((1.0 + 0.3) / 2)
    assert m["skipped"] == {BAD_ANNOTATION: 1, NO_ANNOTATION: 1, NO_AUDIO: 1}
    skipped = [json.loads(l) for l in (out / "skipped.jsonl").read_text().splitlines()]
    assert {s["item_id"] for s in skipped} == {"giantsteps-key:1003.LOFI",
                                               "giantsteps-key:1004.LOFI",
                                               "giantsteps-key:1005.LOFI"}
    assert "MIREX weighted score 0.650" in capsys.readouterr().out
    assert ("| key | 2 | MIREX weighted score | 0.650 | — | — | 0.750 | — | 100% |"
            in (out / "report.md").read_text())

    out = tmp_path / "tempo"
    from pipelines.cli import main as llark                      # through the `llark` command
    assert llark(["benchmark", "--name", "giantsteps-tempo", "--data-dir", str(gs),
                  "--checkpoint", "annotator", "--output", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # 1001: 112 (Acc1 and Acc2); 1002: the reference 192 is twice the true 96 (Acc2 only)
    assert (m["tempo"]["acc1"], m["tempo"]["acc2"]) == (0.5, 1.0)
    assert m["reference_source"] == "annotations_v2/tempo"


# ---------------------------------------------------------------- a tiny checkpoint

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step tiny run on 128-d 'features-v1' shards (the offline encoder's frames)."""
    from model.train import run as train_run
    from tests.shard_factory import make_shard_set

    root = tmp_path_factory.mktemp("bench-run")
    make_shard_set(root / "s", n_rows=4, n_frames=4, dim=128, encoder="features-v1")
    assert train_run(["--shards", str(root / "s"), "--output", str(root / "run"), "max_steps=2",
                      "tiny_hidden_size=32", "trackers=", "splits="]) == 0
    return root / "run"


def test_a_checkpoint_answers_every_benchmark_and_is_scored_on_its_answers(tiny_run, tmp_path):
    layouts = {"giantsteps-key": giantsteps(tmp_path / "gs", seconds=2.0),
               "giantsteps-tempo": tmp_path / "gs",
               "gtzan": gtzan(tmp_path / "gtzan"), "medleydb": medleydb(tmp_path / "mdb")}
    for name, data_dir in layouts.items():
        out = tmp_path / f"out-{name}"
        assert bench_run(["--name", name, "--data-dir", str(data_dir), "--checkpoint",
                          str(tiny_run), "--output", str(out), "--max-new-tokens", "6",
                          "--batch-size", "2"]) == 0, name
        recs = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
        m = json.loads((out / "metrics.json").read_text())
        task = BENCHMARKS[name].task
        assert {r["task"] for r in recs} == {task}
        assert all(isinstance(r["prediction"], str) for r in recs)
        assert m["n_scored"] == len(recs) and m[task]["n"] == len(recs)
        if name == "giantsteps-key":                     # scored on the answers, by mir_eval
            assert [r["labels"]["key"] for r in recs] == ["D major", "G major"]
            expected = np.mean([mir_eval.key.weighted_score(r["labels"]["key"], k)
                                if (k := parse_key(r["prediction"])) else 0.0 for r in recs])
            assert m["key"]["weighted_score"] == pytest.approx(expected)
        if name == "gtzan":                              # the broken file is skipped, not zero
            assert len(recs) == 3 and m["skipped"] == {BAD_ANNOTATION: 1, BAD_AUDIO: 1}
        if name == "medleydb":
            assert sorted(r["labels"]["instruments"] for r in recs) == [
                ["bass", "drum", "guitar", "vocals"], ["guitar"]]
    # the predictions are llark infer's format: llark eval rescores them to the same numbers
    from model.evaluate import run as eval_run

    assert eval_run(["--predictions", str(tmp_path / "out-giantsteps-tempo" /
                                          "predictions.jsonl"),
                     "--output", str(tmp_path / "re")]) == 0
    again = json.loads((tmp_path / "re" / "metrics.json").read_text())["tempo"]
    first = json.loads((tmp_path / "out-giantsteps-tempo" / "metrics.json").read_text())["tempo"]
    assert again == first


@pytest.mark.slow
def test_a_checkpoint_that_learned_the_keys_scores_what_the_references_imply(tmp_path):
    """Overfit a tiny model on the two songs' own features-v1 frames (the frames the benchmark
    encodes), each answering its true key; then the benchmark must score exactly what the
    references imply: 1001's reference is the truth (1.0), 1002's the relative major (0.3)."""
    from dataclasses import replace

    from embed.features import FeaturesEncoder
    from model.infer import encode_window
    from model.train import run as train_run
    from pipelines.schema import Embedding, Turn
    from tests.shard_factory import make_row, write_shard_set

    gs = giantsteps(tmp_path / "gs", seconds=2.0)
    encoder, rows = FeaturesEncoder(), []
    for i, (stem, truth) in enumerate((("1001.LOFI", "D major"), ("1002.LOFI", "E minor"))):
        row = make_row(i, families=("mir",), dim=128, encoder="features-v1")
        frames = encode_window(gs / "audio" / f"{stem}.mp3", encoder, SR)
        conv = replace(row.conversations[0], turns=(
            Turn("user", TASK_QUESTIONS["key"]), Turn("assistant", f"The key is {truth}.")))
        rows.append(replace(row, conversations=(conv,), embedding=Embedding.from_array(
            row.id, row.clip.dataset, "features-v1", 10.0, frames)))
    write_shard_set(tmp_path / "s", rows)
    run = tmp_path / "run"
    assert train_run(["--shards", str(tmp_path / "s"), "--output", str(run), "max_steps=70",
                      "log_every=35", "learning_rate=0.005", "per_device_batch_size=2",
                      "shuffle_buffer=0", "warmup_ratio=0.05", "trackers=", "splits="]) == 0
    out = tmp_path / "out"
    assert bench_run(["--name", "giantsteps-key", "--data-dir", str(gs), "--checkpoint",
                      str(run), "--output", str(out), "--max-new-tokens", "24"]) == 0
    preds = [json.loads(l)["prediction"] for l in
             (out / "predictions.jsonl").read_text().splitlines()]
    assert preds == ["The key is D major.", "The key is E minor."]
    m = json.loads((out / "metrics.json").read_text())
    assert m["key"]["weighted_score"] == pytest.approx((1.0 + 0.3) / 2)


def test_benchmark_references_ablated_checkpoint_constant_and_annotator(tiny_run, tmp_path,
                                                                        capsys):
    """--ablate-audio asks the same checkpoint again without the audio; the constant answer
    and the annotator are scored on the same tracks, all beside the model's figure."""
    data_dir = giantsteps(tmp_path / "gs", seconds=6.0)
    out = tmp_path / "out"
    assert bench_run(["--name", "giantsteps-key", "--data-dir", str(data_dir), "--checkpoint",
                      str(tiny_run), "--output", str(out), "--max-new-tokens", "6",
                      "--ablate-audio", "zero", "--ablate-audio", "shuffle",
                      "--annotator-reference"]) == 0
    recs = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r.get("condition", "heard") for r in recs) == [
        "heard", "heard", "shuffled", "shuffled", "zeroed", "zeroed"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_scored"] == 2                                      # the model's own answers
    ref = m["references"]
    # references D major and G major: D major scores 1 + 0.5 (D is a fifth above G) = 1.5,
    # G major 0 + 1 = 1.0 -> the constant "D major" scores 0.75
    assert ref["constant"]["key"]["answers"] == {"*": "It is in D major."}
    assert ref["constant"]["key"]["metrics"]["key"]["weighted_score"] == pytest.approx(0.75)
    assert ref["zeroed"]["key"]["n"] == ref["shuffled"]["key"]["n"] == 2
    assert ref["annotator"]["key"]["n"] == 2
    md = (out / "report.md").read_text()
    row = next(l for l in md.splitlines() if l.startswith("| key | 2 | MIREX"))
    assert row.count("—") == 0                                     # every column computed
    printed = capsys.readouterr().out
    assert "constant 0.750" in printed and "annotator" in printed
    assert bench_run(["--name", "giantsteps-key", "--data-dir", str(data_dir), "--checkpoint",
                      "annotator", "--ablate-audio", "zero", "--output", str(tmp_path / "x")]) == 2


# ---------------------------------------------------------------- issue 18.5: the paper's protocol

def test_gtzan_answers_are_read_with_negation_and_word_boundaries(tmp_path):
    """GTZAN's layout (10 genre folders) with answers that the first-mention search misread."""
    answers = {
        "blues.00000": "It sounds blue and sad, like soul music.",   # "blue" is not blues: 0
        "jazz.00000": "Not rock but jazz.",                          # jazz: 1
        "reggae.00000": "It's neither country nor disco, it's reggae.",  # reggae: 1
        "hiphop.00000": "hip hop",                                   # 1
        "hiphop.00001": "Hip-hop.",                                  # 1
        "hiphop.00002": "hiphop with a boom-bap beat",               # 1
        "country.00000": "This isn't rock, it is country.",          # country: 1
        "rock.00000": "Not only rock but also a bit of blues.",      # rock (first affirmed): 1
    }
    for stem in answers:
        tone(tmp_path / "genres" / stem.split(".")[0] / f"{stem}.wav", 220, 1.0)
    for genre in ("classical", "disco", "metal", "pop"):              # empty genre folders
        (tmp_path / "genres" / genre).mkdir()
    data = read_gtzan(tmp_path)
    m = run_benchmark(BENCHMARKS["gtzan"], data,
                      Scripted({f"gtzan:{k}": v for k, v in answers.items()})).metrics
    assert m["genre"]["n"] == 8
    assert m["genre"]["accuracy"] == pytest.approx(7 / 8)
    assert m["genre"]["parsed_rate"] == pytest.approx(7 / 8)         # the blues answer names none


def test_medleydb_correct_answer_scores_by_the_active_coarse_classes(tmp_path):
    """The issue's case: on NightOwl's real stem labels the correct answer scored F1 0 on the
    fine labels; on the paper's coarse classes of the stems active in 30-60 s it scores 1."""
    data = read_medleydb(medleydb(tmp_path / "mdb"))
    item = next(i for i in data.items if i.item_id.endswith("NightOwl"))
    m = run_benchmark(BENCHMARKS["medleydb"], BenchmarkData((item,), (), data.vocabulary, ""),
                      Scripted({item.item_id: "electric guitar, drums, bass and male vocals"})
                      ).metrics
    assert (m["instruments"]["micro_f1"], m["instruments"]["mean_f1"]) == (1.0, 1.0)
    # naming the synthesizer, which plays only outside the crop, is a false positive: 4/(4+.5)
    m = run_benchmark(BENCHMARKS["medleydb"], BenchmarkData((item,), (), data.vocabulary, ""),
                      Scripted({item.item_id: "synthesizer, electric guitar, drums, bass and "
                                              "male vocals, but no piano"})).metrics
    assert m["instruments"]["mean_f1"] == pytest.approx(2 * 4 / (2 * 4 + 1))


def test_mirdata_layouts_of_giantsteps(tmp_path):
    """mirdata's giantsteps_key (GiantSteps+: ``keys_gs+/<id> Artist - Title.txt`` beside
    ``audio/<id> Artist - Title.mp3``) and giantsteps_tempo (the repository unpacked as
    ``giantsteps-tempo-dataset-<commit>/``, audio beside it), with a tempo of 0.0."""
    key_dir = tmp_path / "key"
    names = {"1001.LOFI": "1001 Jason Sparks - Close My Eyes feat. J. Little (Original Mix)",
             "1002.LOFI": "1002 Some Artist - Some Title (Extended Mix)"}
    for stem, name in names.items():
        write_song(key_dir / "audio" / f"{name}.mp3", stem, seconds=1.0)
    (key_dir / "keys_gs+").mkdir()
    (key_dir / "keys_gs+" / f"{names['1001.LOFI']}.txt").write_text("D major\n")
    (key_dir / "keys_gs+" / f"{names['1002.LOFI']}.txt").write_text("g major")
    (key_dir / "keys_gs+" / "1003 Nobody - No Audio (Original Mix).txt").write_text("A minor")
    key = read_giantsteps_key(key_dir)
    assert [(i.labels.key, i.audio.name) for i in key.items] == [
        ("D major", f"{names['1001.LOFI']}.mp3"), ("G major", f"{names['1002.LOFI']}.mp3")]
    assert [s.reason for s in key.skipped] == [NO_AUDIO]
    m = run_benchmark(BENCHMARKS["giantsteps-key"], key, Scripted({
        key.items[0].item_id: "D major", key.items[1].item_id: "It is in E minor."})).metrics
    assert m["key"]["weighted_score"] == pytest.approx((1.0 + 0.3) / 2)   # exact; relative

    tempo_dir = tmp_path / "tempo"
    ann = tempo_dir / "giantsteps-tempo-dataset-0b7d47ba8cae59d3535a02e3db69e2cf6d0af5bb"
    (ann / "annotations_v2" / "tempo").mkdir(parents=True)
    (ann / "annotations" / "tempo").mkdir(parents=True)
    for stem, bpm in (("1001.LOFI", "112.0"), ("1002.LOFI", "0.0"), ("1006.LOFI", "96")):
        (ann / "annotations_v2" / "tempo" / f"{stem}.bpm").write_text(bpm + "\n")
        (ann / "annotations" / "tempo" / f"{stem}.bpm").write_text("50")   # v1: not read
    for stem in ("1001.LOFI", "1002.LOFI"):
        write_song(tempo_dir / "audio" / f"{stem}.mp3", stem, seconds=1.0)
    write_song(tempo_dir / "audio" / "1006.LOFI.mp3", "1002.LOFI", seconds=1.0)
    tempo = read_giantsteps_tempo(tempo_dir)
    assert [(i.item_id, i.labels.tempo_bpm) for i in tempo.items] == [
        ("giantsteps-tempo:1001.LOFI", 112.0), ("giantsteps-tempo:1006.LOFI", 96.0)]
    assert skips(tempo) == {"giantsteps-tempo:1002.LOFI": NO_TEMPO}
    assert tempo.source == ann.name + "/annotations_v2/tempo"


def test_the_answerers_hear_the_item_window(tmp_path):
    """An item's own start (MedleyDB's crop) is the window the annotator hears: a track that is
    D major for 16 s, then E minor, heard from 16 s is E minor; an item start past the end is a
    counted skip, whatever --start-s says."""
    from model.benchmark import AnnotatorAnswerer

    first = render_song(SONGS["1001.LOFI"], SR).audio
    second = render_song(SONGS["1002.LOFI"], SR).audio
    path = tmp_path / "two.wav"
    sf.write(path, np.concatenate([first, second]), SR)
    bench = BENCHMARKS["giantsteps-key"]
    key = Labels(dataset="giantsteps-key", key="E minor")
    item = Item("t:two", path, key, start_s=16.0)
    late = Item("t:late", path, key, start_s=40.0)
    result = run_benchmark(bench, BenchmarkData((item, late), (), Vocabulary(), ""),
                           AnnotatorAnswerer(start_s=0.0))
    assert [r["prediction"] for r in result.records] == ["E minor"]
    assert [(s.item_id, s.reason) for s in result.skipped] == [("t:late", BAD_AUDIO)]


def test_the_model_hears_the_item_window(tiny_run, tmp_path):
    """ModelAnswerer encodes the window at the item's own start (MedleyDB's 30 s crop start),
    not at --start-s."""
    from model.benchmark import ModelAnswerer
    from model.infer import encode_window

    data = read_medleydb(medleydb(tmp_path / "mdb"))
    item = next(i for i in data.items if i.item_id.endswith("NightOwl"))
    path = tmp_path / "steps.wav"                     # 220 Hz for 30 s, then 660 Hz
    t = np.arange(int(70 * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * np.where(t < 30, 220, 660) * t)).astype(np.float32),
             SR)
    item = Item(item.item_id, path, item.labels, start_s=item.start_s)
    model = ModelAnswerer(str(tiny_run), 0.0, "cpu", "float32", "", 4)
    request = model.prepare(item, "instruments")
    at_30 = encode_window(path, model.encoder, model.sample_rate_hz, 30.0)
    at_0 = encode_window(path, model.encoder, model.sample_rate_hz, 0.0)
    assert not np.array_equal(at_0, at_30)
    np.testing.assert_array_equal(request.frames, at_30)
