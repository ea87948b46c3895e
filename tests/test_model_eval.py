"""model/evaluate.py parsing and metrics, and model/infer.py's command line (shards and audio)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from llark.music import tempo_accuracy
from model.evaluate import (evaluate, find_terms, parse_genre, parse_key, parse_tempo,
                            run as eval_run)
from model.infer import run as infer_run
from model.train import run as train_run
from tests.shard_factory import make_shard_set

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("text,key", [
    ("The key is F# minor.", "F# minor"),
    ("It is in Bb major", "Bb major"),
    ("This piece is in E flat major.", "Eb major"),
    ("C sharp minor, slow", "C# minor"),
    ("Am", "A minor"),
    ("A calm piece in D minor", "D minor"),       # the article "A" is not a key
    ("the key of G", "G major"),
    ("Key: E", "E major"),
    ("It is in A# major.", "Bb major"),            # musicians' spelling (llark.music)
    ("D flat minor", "C# minor"),
    ("a minor chord progression", None),          # lower-case "a" is a word
    ("I cannot tell.", None),
])
def test_parse_key(text, key):
    assert parse_key(text) == key


@pytest.mark.parametrize("text,bpm", [("About 120 BPM.", 120.0), ("96.5 beats per minute", 96.5),
                                      ("2 bars at 88", 88.0), ("It is fast.", None),
                                      ("In 4/4 at 140 bpm", 140.0)])
def test_parse_tempo(text, bpm):
    assert parse_tempo(text) == bpm


def test_tempo_accuracies():
    assert tempo_accuracy(120, 124) == (True, True)        # within 4 %
    assert tempo_accuracy(120, 125) == (False, False)      # 4.2 % off
    assert tempo_accuracy(120, 60) == (False, True)        # half
    assert tempo_accuracy(120, 240) == (False, True)       # double
    assert tempo_accuracy(120, 360) == (False, True)       # triple
    assert tempo_accuracy(120, 40.5) == (False, True)      # a third, within 4 %
    assert tempo_accuracy(120, 90) == (False, False)
    assert tempo_accuracy(120, None) == (False, False)
    assert tempo_accuracy(120, 0) == (False, False) and tempo_accuracy(0, 120) == (False, False)
    assert tempo_accuracy(100, 96) == (True, True)       # exactly 4 % below: counted
    assert tempo_accuracy(100, 208.5) == (False, False)  # 4.25 % above double


def test_find_terms_in_order_longest_first():
    vocab = ["rock", "punk rock", "piano", "drums", "hip hop"]
    assert find_terms("Punk rock with drums and a Piano; hip-hop beats", vocab) == \
        ["punk rock", "drums", "piano", "hip hop"]
    assert find_terms("pianos", vocab) == ["piano"]
    assert find_terms("rockabilly", vocab) == []


GTZAN = ["blues", "classical", "country", "disco", "hip hop", "jazz", "metal", "pop", "reggae",
         "rock"]


@pytest.mark.parametrize("text,genre", [
    ("not rock but jazz", "jazz"),
    ("It's neither country nor disco, it's reggae.", "reggae"),
    ("This isn't rock; it is metal.", "metal"),
    ("A blue, melancholy mood.", None),                  # "blue" is not blues
    ("The blues.", "blues"),
    ("hip hop", "hip hop"), ("Hip-hop", "hip hop"), ("hiphop", "hip hop"),
    ("Not only rock but also pop.", "rock"),            # "not only" denies nothing
    ("There is no jazz here.", None),
    ("Without a doubt, pop.", "pop"),                   # an idiom, not a denial
    ("No doubt it is rock.", "rock"),
    ("Not rock, jazz or blues: reggae.", "reggae"),     # a comma does not end the denial
    ("Classical, maybe rock.", "classical"),
    ("Popular music, rock.", "rock"),                   # "popular" is not pop
])
def test_parse_genre_respects_negation_and_word_boundaries(text, genre):
    assert parse_genre(text, GTZAN) == genre


def test_find_terms_leaves_out_denied_instruments():
    vocab = ["drum", "bass", "guitar", "vocals", "piano"]
    assert find_terms("electric guitar, drums, bass and male vocals", vocab) == \
        ["guitar", "drum", "bass", "vocals"]
    assert find_terms("Piano and bass, no drums.", vocab) == ["piano", "bass"]
    assert find_terms("There are no drums or guitars, but a piano.", vocab) == ["piano"]
    assert find_terms("A piano without vocals. Drums come in later.", vocab) == ["piano", "drum"]
    # a term denied once and named later is named
    assert find_terms("No guitar at first; then a guitar solo.", vocab) == ["guitar"]


def test_eval_scores_genre_and_instruments_through_the_same_parser():
    records = [rec("genre", "Not rock but jazz.", genres=["jazz"]),          # 1 (was rock: 0)
               rec("genre", "blue and slow", genres=["blues"]),             # 0 (was blues: 1)
               rec("genre", "Rock.", genres=["rock"]),                      # 1
               rec("instruments", "piano, no drums", instruments=["piano"]),  # tp 1, fp 0
               rec("instruments", "drums", instruments=["piano", "drums"])]   # tp 1, fn 1
    m, _ = evaluate(records)
    assert m["genre"]["accuracy"] == pytest.approx(2 / 3)
    assert m["instruments"]["micro_precision"] == 1.0
    assert m["instruments"]["micro_recall"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- metrics

def rec(task, prediction, **labels):
    base = {"dataset": "d", "key": "", "tempo_bpm": None, "genres": [], "instruments": []}
    return {"clip_id": "c", "task": task, "prediction": prediction, "labels": {**base, **labels}}


def test_metrics_on_known_answers():
    records = [
        rec("key", "The key is C major.", key="C major"),          # 1.0
        rec("key", "It is in G major.", key="C major"),            # fifth 0.5
        rec("key", "A minor.", key="C major"),                     # relative 0.3
        rec("key", "C minor", key="C major"),                      # parallel 0.2
        rec("key", "no idea", key="C major"),                      # unparsed 0
        rec("tempo", "120 BPM", tempo_bpm=121.0),
        rec("tempo", "60 BPM", tempo_bpm=121.0),
        rec("genre", "Classical, maybe rock.", genres=["rock"]),  # first mention: classical
        rec("genre", "Rock!", genres=["rock"]),
        rec("genre", "Classical.", genres=["classical"]),
        rec("instruments", "piano and drums", instruments=["piano", "bass"]),
        rec("instruments", "bass", instruments=["bass"]),
    ]
    m, scored = evaluate(records)
    assert m["key"]["weighted_score"] == pytest.approx((1 + 0.5 + 0.3 + 0.2 + 0) / 5)
    assert m["key"]["parsed_rate"] == pytest.approx(0.8)
    assert (m["tempo"]["acc1"], m["tempo"]["acc2"]) == (0.5, 1.0)
    assert m["genre"]["accuracy"] == pytest.approx(2 / 3)
    # instruments vocabulary {piano, bass}: "drums" is not in it; tp=2 fp=0 fn=1
    assert m["instruments"]["micro_precision"] == 1.0
    assert m["instruments"]["micro_recall"] == pytest.approx(2 / 3)
    assert m["instruments"]["mean_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert len(scored) == 12


def test_eval_cli_writes_json_and_markdown(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps(r) for r in [
        rec("key", "F# minor", key="F# minor"), rec("tempo", "99 BPM", tempo_bpm=100.0),
        {**rec("conversation", "A rock song with piano."), "reference": "A rock song.",
         "family": "caption"}]) + "\n")
    assert eval_run(["--predictions", str(preds), "--output", str(tmp_path / "eval"),
                     "--no-meteor"]) == 0
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["key"]["weighted_score"] == 1.0 and m["tempo"]["acc1"] == 1.0
    assert m["conversations"]["token_f1_by_family"]["caption"] == pytest.approx(0.75)
    md = (tmp_path / "eval" / "report.md").read_text()
    # model 1.000; no ablated records; the best constant for one clip is its own key
    assert "| key | 1 | MIREX weighted score | 1.000 | — | — | 1.000 | — | 100% |" in md
    assert "key 1.000" in capsys.readouterr().out
    from pipelines.cli import main as llark                    # the same through `llark eval`
    assert llark(["eval", "--predictions", str(preds), "--output", str(tmp_path / "e3"),
                  "--no-meteor"]) == 0
    assert (tmp_path / "e3" / "report.md").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert eval_run(["--predictions", str(bad), "--output", str(tmp_path / "e2")]) == 2


# ---------------------------------------------------------------- infer command line

@pytest.fixture(scope="module")
def features_run(tmp_path_factory):
    """A 2-step tiny run on 128-d 'features-v1' shards (the offline encoder's size and name)."""
    root = tmp_path_factory.mktemp("features-run")
    make_shard_set(root / "s", n_rows=6, n_frames=4, dim=128, encoder="features-v1",
                   splits=("train", "test"))
    assert train_run(["--shards", str(root / "s"), "--output", str(root / "run"), "max_steps=2",
                      "tiny_hidden_size=32", "trackers=", "splits="]) == 0
    return root


def test_infer_on_shards_writes_scorable_predictions(features_run, tmp_path):
    out = tmp_path / "p.jsonl"
    assert infer_run(["--checkpoint", str(features_run / "run"), "--shards",
                      str(features_run / "s"), "--split", "test", "--max-new-tokens", "4",
                      "--batch-size", "3", "--output", str(out)]) == 0
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(lines) == 3 * 4                   # 3 test clips x key, tempo, genre, instruments
    assert {l["task"] for l in lines} == {"key", "tempo", "genre", "instruments"}
    assert all(l["labels"]["key"] and l["labels"]["tempo_bpm"] for l in lines)
    conv = tmp_path / "c.jsonl"
    assert infer_run(["--checkpoint", str(features_run / "run"), "--shards",
                      str(features_run / "s"), "--questions", "conversations", "--limit", "1",
                      "--temperature", "0.8", "--max-new-tokens", "4", "--output",
                      str(conv)]) == 0
    got = [json.loads(l) for l in conv.read_text().splitlines()]
    assert {g["family"] for g in got} == {"mir", "caption", "reasoning"}
    assert all(g["reference"] for g in got)


def test_infer_on_an_audio_file_runs_the_features_encoder(features_run, tmp_path, capsys):
    import soundfile as sf

    sr = 22050
    t = np.arange(int(2.5 * sr)) / sr
    sf.write(tmp_path / "a.wav", 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32), sr)
    assert infer_run(["--checkpoint", str(features_run / "run"), "--audio",
                      str(tmp_path / "a.wav"), "--prompt", "What key is this?",
                      "--max-new-tokens", "4"]) == 0
    (line,) = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    rec_ = json.loads(line)
    assert rec_["task"] == "prompt" and rec_["question"] == "What key is this?"
    assert isinstance(rec_["prediction"], str)
    # the encoder's frames must fit the projector: a 4800-d encoder is refused
    assert infer_run(["--checkpoint", str(features_run / "run"), "--audio",
                      str(tmp_path / "a.wav"), "--prompt", "x", "--encoder",
                      "jukebox-tiny-random"]) == 2
    assert "projector reads 128-d" in capsys.readouterr().err


@pytest.mark.integration
def test_infer_on_a_real_recording(features_run, real_audio_dir, capsys):
    audio = sorted(real_audio_dir.glob("*.ogg"))[0]
    assert infer_run(["--checkpoint", str(features_run / "run"), "--audio", str(audio),
                      "--prompt", "Describe this music.", "--max-new-tokens", "4"]) == 0
    assert '"task": "prompt"' in capsys.readouterr().out


def test_infer_needs_a_prompt_and_a_checkpoint(tmp_path, capsys):
    assert infer_run(["--checkpoint", str(tmp_path), "--audio", "x.wav"]) == 2
    assert infer_run(["--checkpoint", str(tmp_path), "--shards", str(tmp_path)]) == 2
    assert "complete checkpoints" in capsys.readouterr().err


# ---------------------------------------------------------------- GPU benchmark dry run

def test_gpu_benchmark_dry_run_on_cpu(tmp_path, monkeypatch, capsys):
    out = tmp_path / "gpu.json"
    monkeypatch.setattr(sys, "argv", ["train_gpu.py", "--dry-run", "--steps", "3", "--json",
                                      str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO / "benchmarks" / "train_gpu.py"), run_name="__main__")
    assert done.value.code == 0
    result = json.loads(out.read_text())
    assert result["dry_run"] and result["device"] == "cpu" and result["mfu"] is None
    assert result["tokens_per_s"] > 0 and result["parameters"] > 100_000
    assert result["mean_seq_len"] > result["audio_frames"]
    assert "MFU n/a" in capsys.readouterr().out


def test_eval_without_java_still_summarises(tmp_path, monkeypatch, capsys) -> None:
    """Without Java every caption metric is None with its reason; the summary line skips them
    instead of failing to format None."""
    import json as _json

    from model.evaluate import run as eval_run

    preds = tmp_path / "preds.jsonl"
    preds.write_text(_json.dumps({"clip_id": "c1", "task": "conversation", "family": "caption",
                                  "prediction": "A slow piano piece.",
                                  "reference": "A calm solo piano piece."}) + "\n")
    monkeypatch.setenv("PATH", str(tmp_path))          # no java on PATH
    assert eval_run(["--predictions", str(preds), "--output", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out
    assert "conversations" in line and "BLEU-4" not in line
    metrics = _json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["captions"]["bleu4"] is None
