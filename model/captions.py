"""Captioning metrics, offline: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of the COCO caption toolkit.

Everything is ``pycocoevalcap`` 1.2's (the MS-COCO caption evaluation code that captioning
papers, music captioning on MusicCaps among them, report), run the way its ``COCOEvalCap``
runs it, SPICE left out:

* tokenisation: its ``PTBTokenizer`` (Stanford CoreNLP 3.4.1's PTB tokenizer, a Java process,
  ``-preserveLines -lowerCase``, then COCO's punctuation tokens dropped): ``"don't"`` is
  ``"do n't"``, ``"rock-song"``, ``"120.5"``, ``"3/4"`` and ``"café"`` stay one token each;
* corpus BLEU-1..4 (closest reference length for the brevity penalty), ROUGE-L (LCS F-measure
  with beta 1.2, the best reference per caption, averaged) and CIDEr-D (sigma 6, clipped
  counts, scaled by 10; its IDF comes from the references of the whole set, so it needs more
  than one distinct clip to mean anything) on the tokenised captions;
* METEOR 1.5: its ``Meteor`` class (``-l en -norm``, another Java process; the jars and the
  English paraphrase table ship inside the wheel, so nothing is downloaded). One METEOR
  process serves the whole run (starting it costs 5-30 s).

Java is needed for the tokenizer and for METEOR (``make system-deps`` installs
``default-jre-headless``). Without it nothing is computed and every metric says why
(``CaptionScores.unavailable``); METEOR alone can be left out (``meteor=False``) or fail alone
(``meteor_unavailable``). Scores are in [0, 1] except CIDEr-D (0..10).
"""

from __future__ import annotations

import atexit
import shutil
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

#: The metrics of :class:`CaptionScores`, in report order.
METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "meteor")


@dataclass(frozen=True)
class CaptionPair:
    """One generated caption and the reference caption(s) of the same clip."""

    prediction: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class CaptionScores:
    """Corpus-level captioning metrics of a set of :class:`CaptionPair`.

    A metric is None when it could not run: ``unavailable`` says why none ran (no Java for the
    PTB tokenizer), ``meteor_unavailable`` why METEOR alone did not ("not asked for" when
    ``meteor=False``)."""

    n: int
    bleu1: float | None
    bleu2: float | None
    bleu3: float | None
    bleu4: float | None
    rouge_l: float | None
    cider_d: float | None
    meteor: float | None
    meteor_unavailable: str = ""
    unavailable: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields, plus ``<metric>_unavailable`` (the reason) for every metric that is
        None, which is what ``llark eval``'s report prints in its place."""
        out = asdict(self)
        for f in fields(self):
            if f.name in METRICS and out[f.name] is None and not out.get(f"{f.name}_unavailable"):
                out[f"{f.name}_unavailable"] = self.unavailable or "not asked for"
        return out


class CaptionMetricsUnavailable(RuntimeError):
    """A Java part of the COCO caption evaluation could not run here; the message says why."""


def _require_java(what: str) -> None:
    if shutil.which("java") is None:
        raise CaptionMetricsUnavailable(
            f"{what} needs Java and `java` is not on PATH (Debian: apt-get install "
            "default-jre-headless; `make system-deps` does it)")


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """``texts`` through COCO's ``PTBTokenizer`` (one Java process for all of them): lower
    case, PTB tokens joined by single spaces, COCO's punctuation tokens dropped."""
    _require_java("the COCO caption evaluation's PTB tokenizer")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not texts:
        return []
    try:
        out = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    except OSError as exc:    # it writes a temporary file beside its jar, then runs Java
        raise CaptionMetricsUnavailable(f"the PTB tokenizer could not run ({type(exc).__name__}"
                                        f": {exc})") from exc
    if len(out) != len(texts):
        raise CaptionMetricsUnavailable(f"the PTB tokenizer returned {len(out)} of {len(texts)} "
                                        "lines (did its Java process fail?)")
    return [out[i][0] for i in range(len(texts))]


def tokenize(text: str) -> str:
    """One text as COCO's ``PTBTokenizer`` tokenises it (see :func:`ptb_tokenize`)."""
    return ptb_tokenize([text])[0]


def caption_scores(pairs: Sequence[CaptionPair], meteor: bool = True) -> CaptionScores:
    """BLEU-1..4, ROUGE-L, CIDEr-D and (``meteor=True``) METEOR of ``pairs``, as COCO's
    caption evaluation computes them (PTB tokenisation first)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not pairs:
        raise ValueError("caption_scores needs at least one caption pair")
    for n, p in enumerate(pairs):
        if not p.references:
            raise ValueError(f"caption pair {n} has no reference caption")
    texts = [p.prediction for p in pairs] + [r for p in pairs for r in p.references]
    try:
        tokens = ptb_tokenize(texts)
    except CaptionMetricsUnavailable as exc:
        return CaptionScores(len(pairs), None, None, None, None, None, None, None,
                             meteor_unavailable=str(exc), unavailable=str(exc))
    res = {i: [tokens[i]] for i in range(len(pairs))}
    gts: dict[int, list[str]] = {}
    at = len(pairs)
    for i, p in enumerate(pairs):
        gts[i] = tokens[at:at + len(p.references)]
        at += len(p.references)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    meteor_value: float | None = None
    why = "not asked for"
    if meteor:
        try:
            meteor_value, _ = meteor_score(gts, res)
            why = ""
        except CaptionMetricsUnavailable as exc:
            why = str(exc)
    return CaptionScores(len(pairs), *(float(b) for b in bleu), rouge_l=float(rouge),
                         cider_d=float(cider), meteor=meteor_value, meteor_unavailable=why)


_METEOR: Any = None           # one pycocoevalcap Meteor (one Java process) for the run
_METEOR_LOCK = threading.Lock()


def _close_meteor() -> None:
    """End the METEOR process (at exit, or after it failed)."""
    global _METEOR
    m, _METEOR = _METEOR, None
    if m is None:
        return
    if m.lock.locked():       # a failed compute_score leaves it held; its __del__ waits on it
        m.lock.release()
    try:
        m.meteor_p.stdin.close()
    except OSError:
        pass
    m.meteor_p.kill()
    m.meteor_p.wait()


atexit.register(_close_meteor)


def meteor_score(gts: dict[int, list[str]], res: dict[int, list[str]]
                 ) -> tuple[float, list[float]]:
    """METEOR 1.5 by pycocoevalcap's ``Meteor``: (corpus score, score per caption) of
    ``res[i] = [caption]`` against ``gts[i]`` (tokenised text). Its Java process starts on
    first use and serves the rest of the run; one that fails is ended and raises
    :class:`CaptionMetricsUnavailable` with Java's own message."""
    global _METEOR
    _require_java("METEOR")
    if gts.keys() != res.keys():
        raise ValueError("METEOR needs the same caption ids in references and predictions")
    from pycocoevalcap.meteor.meteor import Meteor

    with _METEOR_LOCK:
        if _METEOR is None or _METEOR.meteor_p.poll() is not None:
            _close_meteor()
            try:
                _METEOR = Meteor()
            except OSError as exc:
                raise CaptionMetricsUnavailable(f"METEOR could not start Java ({exc})") from exc
        try:
            score, scores = _METEOR.compute_score(gts, res)
            return float(score), [float(s) for s in scores]
        except (OSError, ValueError) as exc:    # a broken pipe; an empty line from a dead JVM
            err = b""
            proc = _METEOR.meteor_p
            _close_meteor()
            if proc.stderr is not None:
                err = proc.stderr.read()[-500:]
            raise CaptionMetricsUnavailable(
                f"the METEOR Java process failed ({type(exc).__name__}: {exc}): "
                f"{err.decode(errors='replace') or '(no stderr)'}") from exc
