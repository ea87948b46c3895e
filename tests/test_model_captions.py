"""Captioning metrics (model/captions.py: pycocoevalcap's BLEU, METEOR, ROUGE-L, CIDEr-D) on
known values, and ``llark eval`` reporting them for the caption family."""

from __future__ import annotations

import json
import math

import pytest

from model.captions import CaptionPair, caption_scores, meteor_score, tokenize
from model.evaluate import run as eval_run

SONGS = [CaptionPair("A mellow jazz trio with brushed drums and a walking bass.",
                     ("A mellow jazz trio with brushed drums and a walking bass",)),
         CaptionPair("Loud rock song, distorted guitars, male vocals",
                     ("loud rock song distorted guitars male vocals",))]


def test_tokenize_drops_case_and_punctuation():
    assert tokenize("It's a LOUD, fast rock-song!") == "it's a loud fast rock song"


def test_identical_captions_score_the_maximum():
    s = caption_scores(SONGS, meteor=False)             # METEOR: below (one Java start)
    for value in (s.bleu1, s.bleu2, s.bleu3, s.bleu4, s.rouge_l):
        assert value == pytest.approx(1.0, abs=1e-6)
    assert s.cider_d == pytest.approx(10.0)            # CIDEr-D is scaled by 10
    assert s.n == 2 and s.meteor is None


def test_hand_checked_bleu_and_rouge():
    # 6 words each; 5 of 6 unigrams and 3 of 5 bigrams match; LCS "the cat on the mat" = 5
    s = caption_scores([CaptionPair("The cat sat on the mat.", ("the cat is on the mat",))],
                       meteor=False)
    assert s.bleu1 == pytest.approx(5 / 6, abs=1e-6)
    assert s.bleu2 == pytest.approx(math.sqrt(5 / 6 * 3 / 5), abs=1e-6)
    assert s.rouge_l == pytest.approx(5 / 6)
    assert s.meteor is None and s.meteor_unavailable == ""


def test_bleu_matches_the_published_examples_of_papineni_et_al_2002():
    refs = ("It is a guide to action that ensures that the military will forever heed Party "
            "commands.",
            "It is the guiding principle which guarantees the military forces always being "
            "under the command of the Party.",
            "It is the practical guide for the army always to heed the directions of the party.")
    cand = ("It is a guide to action which ensures that the military always obeys the commands "
            "of the party.")
    s = caption_scores([CaptionPair(cand, refs)], meteor=False)
    # the paper: modified unigram precision 17/18, bigram 10/17; 18 words = a reference's
    # length, so no brevity penalty
    assert s.bleu1 == pytest.approx(17 / 18, abs=1e-6)
    assert s.bleu2 == pytest.approx(math.sqrt(17 / 18 * 10 / 17), abs=1e-6)
    # "the the the the the the the": modified unigram precision 2/7
    s = caption_scores([CaptionPair("the the the the the the the",
                                    ("The cat is on the mat.", "There is a cat on the mat."))],
                       meteor=False)
    assert s.bleu1 == pytest.approx(2 / 7, abs=1e-6)


@pytest.mark.slow
def test_meteor_runs_offline_and_says_why_when_java_is_missing(monkeypatch):
    # one Java process for all three: identical captions score 1, a different one much less
    gts = {0: [tokenize(SONGS[0].references[0])], 1: [tokenize(SONGS[1].references[0])],
           2: ["a loud rock song with drums"]}
    res = {0: [tokenize(SONGS[0].prediction)], 1: [tokenize(SONGS[1].prediction)],
           2: ["a quiet piano piece"]}
    corpus, per_caption = meteor_score(gts, res)
    assert per_caption[:2] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert 0.0 < per_caption[2] < 0.5 and per_caption[2] < corpus < 1.0
    monkeypatch.setenv("PATH", "/nonexistent")
    s = caption_scores(SONGS)
    assert s.meteor is None and "needs Java" in s.meteor_unavailable
    assert s.bleu4 == pytest.approx(1.0, abs=1e-6)       # the others still run
    with pytest.raises(ValueError, match="no reference"):
        caption_scores([CaptionPair("x", ())])


def test_llark_eval_reports_caption_metrics(tmp_path):
    def rec(pred, ref, family="caption"):
        return {"clip_id": "c", "task": "conversation", "prediction": pred, "reference": ref,
                "family": family, "labels": {"dataset": "d"}}

    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps(r) for r in [
        rec(SONGS[0].prediction, SONGS[0].references[0]),
        rec(SONGS[1].prediction, SONGS[1].references[0]),
        rec("Because it is slow.", "It is slow and sad.", family="reasoning")]) + "\n")
    assert eval_run(["--predictions", str(preds), "--output", str(tmp_path / "e"),
                     "--no-meteor"]) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    cap = m["captions"]
    assert cap["n"] == 2                                  # the caption family only
    assert cap["bleu4"] == pytest.approx(1.0, abs=1e-6) and cap["cider_d"] == pytest.approx(10)
    assert cap["meteor"] is None
    md = (tmp_path / "e" / "report.md").read_text()
    assert "| captions | 2 | BLEU-4 | 1.000 | — |" in md
    assert "| captions | 2 | METEOR | not computed: not asked for | — |" in md
