"""Captioning metrics, offline: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of the COCO caption toolkit.

The scorers are ``pycocoevalcap`` 1.2's (the MS-COCO caption evaluation code that captioning
papers, music captioning on MusicCaps among them, report): corpus BLEU-1..4 (closest reference
length for the brevity penalty), METEOR 1.5 (``-l en -norm``, a Java process; the jar and its
English paraphrase table ship inside the wheel, so nothing is downloaded), ROUGE-L (LCS
F-measure with beta 1.2, the best reference per caption, averaged) and CIDEr-D (sigma 6,
clipped counts, scaled by 10; its IDF comes from the references of the whole set, so it needs
more than one distinct clip to mean anything).

Tokenisation is one Python rule for all four (lower case, runs of letters/digits with inner
apostrophes, punctuation dropped): the effect of COCO's PTBTokenizer without starting a second
Java process for it. Scores are in [0, 1] except CIDEr-D (0..10).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from typing import Any, Sequence

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
METEOR_TIMEOUT_S = 60.0    # waiting for the killed Java process to exit


@dataclass(frozen=True)
class CaptionPair:
    """One generated caption and the reference caption(s) of the same clip."""

    prediction: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class CaptionScores:
    """Corpus-level captioning metrics of a set of :class:`CaptionPair`."""

    n: int
    bleu1: float
    bleu2: float
    bleu3: float
    bleu4: float
    rouge_l: float
    cider_d: float
    meteor: float | None          # None when it could not run (see meteor_unavailable)
    meteor_unavailable: str = ""  # why METEOR is missing ("" when it ran or was not asked for)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenize(text: str) -> str:
    """Lower-cased word tokens joined by single spaces (the form every scorer receives)."""
    return " ".join(TOKEN.findall(text.lower()))


def caption_scores(pairs: Sequence[CaptionPair], meteor: bool = True) -> CaptionScores:
    """BLEU-1..4, ROUGE-L, CIDEr-D and (``meteor=True``, Java present) METEOR of ``pairs``."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not pairs:
        raise ValueError("caption_scores needs at least one caption pair")
    for n, p in enumerate(pairs):
        if not p.references:
            raise ValueError(f"caption pair {n} has no reference caption")
    res = {i: [tokenize(p.prediction)] for i, p in enumerate(pairs)}
    gts = {i: [tokenize(r) for r in p.references] for i, p in enumerate(pairs)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    meteor_value: float | None = None
    why = ""
    if meteor:
        try:
            meteor_value, _ = meteor_score(gts, res)
        except MeteorUnavailable as exc:
            why = str(exc)
    return CaptionScores(len(pairs), *(float(b) for b in bleu), rouge_l=float(rouge),
                         cider_d=float(cider), meteor=meteor_value, meteor_unavailable=why)


class MeteorUnavailable(RuntimeError):
    """METEOR could not run here (no Java, or the Java process failed); the message says why."""


def meteor_score(gts: dict[int, list[str]], res: dict[int, list[str]]
                 ) -> tuple[float, list[float]]:
    """METEOR 1.5 through pycocoevalcap's Java scorer: (corpus score, score per caption), of
    ``res[i] = [caption]`` against ``gts[i] = references``. The process is always ended."""
    if shutil.which("java") is None:
        raise MeteorUnavailable("METEOR needs Java and `java` is not on PATH (Debian: apt-get "
                                "install default-jre-headless; `make system-deps` does it)")
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        score, scores = scorer.compute_score(gts, res)
        return float(score), [float(x) for x in scores]
    except (ValueError, BrokenPipeError, OSError) as exc:
        err = b""
        scorer.meteor_p.kill()
        try:
            _, err = scorer.meteor_p.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            pass
        raise MeteorUnavailable(f"the METEOR Java process failed ({type(exc).__name__}: {exc}); "
                                f"its stderr: {err.decode(errors='replace')[-500:]}") from exc
    finally:
        # A failed compute_score leaves pycocoevalcap's lock held, and its __del__ takes the
        # lock: give it a free one, and end the process here rather than at garbage collection.
        scorer.lock = threading.Lock()
        proc = scorer.meteor_p
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        proc.kill()
        proc.wait(timeout=METEOR_TIMEOUT_S)
