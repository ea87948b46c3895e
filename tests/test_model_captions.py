"""Captioning metrics (model/captions.py: pycocoevalcap's PTB tokenizer, BLEU, METEOR, ROUGE-L,
CIDEr-D) on known values, and ``llark eval``'s caption metrics against the COCO caption
evaluation run directly (pycocoevalcap's own PTBTokenizer and scorers, as its COCOEvalCap runs
them)."""

from __future__ import annotations

import json
import math
import re

import pytest

from model.captions import CaptionPair, caption_scores, meteor_score, ptb_tokenize, tokenize
from model.evaluate import run as eval_run

SONGS = [CaptionPair("A mellow jazz trio with brushed drums and a walking bass.",
                     ("A mellow jazz trio with brushed drums and a walking bass",)),
         CaptionPair("Loud rock song, distorted guitars, male vocals",
                     ("loud rock song distorted guitars male vocals",))]


def test_tokenize_is_the_ptb_tokenizer_of_the_coco_evaluation():
    # the Penn Treebank conventions: clitics split ("do n't", "it 's"), hyphenated words,
    # decimals, fractions and accented words kept whole; COCO then drops punctuation tokens
    assert ptb_tokenize(["It's a LOUD, fast rock-song!", "I don't know.",
                         "About 120.5 BPM.", "A café waltz in 3/4 time.", ""]) == [
        "it 's a loud fast rock-song", "i do n't know", "about 120.5 bpm",
        "a café waltz in 3/4 time", ""]
    assert tokenize("Rock'n'roll (live)") == "rock 'n' roll -lrb- live -rrb-"   # COCO's quirk


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
    assert s.meteor is None and s.meteor_unavailable == "not asked for"


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


# Music captions in the style of MusicCaps (written for this test), with what PTB tokenisation
# changes: contractions, hyphens, decimals, a time signature, an accent, brackets.
COCO_CASES = [
    ("A mellow jazz trio: brushed drums, a walking upright bass and a café-style piano.",
     "This is a mellow jazz piece with brushed drums, an upright bass and a piano."),
    ("Loud rock-song with distorted guitars; the male singer doesn't hold back.",
     "A loud rock song with distorted electric guitars and a male vocalist who doesn't hold "
     "back."),
    ("A slow waltz in 3/4 at about 88.5 BPM, played by a string quartet.",
     "A string quartet plays a slow waltz in 3/4 time."),
    ("Upbeat EDM track (128 BPM) with a four-on-the-floor kick and bright synth leads.",
     "An energetic electronic dance track with a steady kick drum and synth leads at 128 BPM."),
    ("Solo acoustic guitar, fingerpicked, calm and intimate; no vocals.",
     "A calm, intimate fingerpicked acoustic guitar solo without vocals."),
]


def _predictions(tmp_path, cases):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(
        {"clip_id": f"c{i}", "task": "conversation", "prediction": pred, "reference": ref,
         "family": "caption", "labels": {"dataset": "musiccaps"}}) + "\n"
        for i, (pred, ref) in enumerate(cases)))
    return preds


def _coco(cases, meteor: bool = False) -> dict[str, float]:
    """The COCO caption evaluation run directly: pycocoevalcap's COCOEvalCap.evaluate() (PTB
    tokenisation of gts and res, then each scorer) without SPICE."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = PTBTokenizer().tokenize({i: [{"caption": ref}] for i, (_, ref) in enumerate(cases)})
    res = PTBTokenizer().tokenize({i: [{"caption": p}] for i, (p, _) in enumerate(cases)})
    out = dict(zip(("bleu1", "bleu2", "bleu3", "bleu4"), Bleu(4).compute_score(gts, res)[0]))
    out["rouge_l"] = Rouge().compute_score(gts, res)[0]
    out["cider_d"] = Cider().compute_score(gts, res)[0]
    if meteor:
        out["meteor"] = Meteor().compute_score(gts, res)[0]
    return out


def test_llark_eval_caption_metrics_match_the_coco_caption_evaluation(tmp_path):
    assert eval_run(["--predictions", str(_predictions(tmp_path, COCO_CASES)), "--output",
                     str(tmp_path / "e"), "--no-meteor"]) == 0
    got = json.loads((tmp_path / "e" / "metrics.json").read_text())["captions"]
    coco = _coco(COCO_CASES)
    assert got["n"] == len(COCO_CASES)
    for metric, value in coco.items():
        assert got[metric] == pytest.approx(value, abs=1e-9), metric
    # the test tells tokenisations apart: the regex of earlier versions scores otherwise
    regex = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
    from pycocoevalcap.bleu.bleu import Bleu

    def words(text: str) -> str:
        return " ".join(regex.findall(text.lower()))

    bleu_regex = Bleu(4).compute_score({i: [words(r)] for i, (_, r) in enumerate(COCO_CASES)},
                                       {i: [words(p)] for i, (p, _) in enumerate(COCO_CASES)},
                                       verbose=0)[0]
    assert abs(bleu_regex[3] - coco["bleu4"]) > 1e-3


@pytest.mark.slow
def test_meteor_is_pycocoevalcaps_and_says_why_when_java_is_missing(tmp_path, monkeypatch):
    assert eval_run(["--predictions", str(_predictions(tmp_path, COCO_CASES)), "--output",
                     str(tmp_path / "e")]) == 0
    got = json.loads((tmp_path / "e" / "metrics.json").read_text())["captions"]
    coco = _coco(COCO_CASES, meteor=True)
    assert got["meteor"] == pytest.approx(coco["meteor"], abs=1e-9)
    assert 0.0 < got["meteor"] < 1.0 and got["meteor_unavailable"] == ""
    # the same Java process scores again: identical captions score 1 each
    corpus, per_caption = meteor_score({0: ["a loud rock song"], 1: ["a quiet piano piece"]},
                                       {0: ["a loud rock song"], 1: ["a quiet piano piece"]})
    assert per_caption == [pytest.approx(1.0), pytest.approx(1.0)]
    monkeypatch.setenv("PATH", "/nonexistent")
    s = caption_scores(SONGS)
    assert s.n == 2 and s.bleu4 is None and s.meteor is None
    assert "needs Java" in s.unavailable and "needs Java" in s.meteor_unavailable
    assert "needs Java" in s.to_dict()["bleu4_unavailable"]
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
