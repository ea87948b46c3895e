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

import atexit
import os
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from typing import Any, Sequence

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
METEOR_TIMEOUT_S = 60.0    # waiting for an ended Java process to exit


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


def _require_java() -> None:
    if shutil.which("java") is None:
        raise MeteorUnavailable("METEOR needs Java and `java` is not on PATH (Debian: apt-get "
                                "install default-jre-headless; `make system-deps` does it)")


class MeteorProcess:
    """One METEOR 1.5 Java process (pycocoevalcap's jar, command and stdio protocol) that
    scores any number of caption sets: starting Java and loading the paraphrase table costs
    5-30 s, so ``llark eval`` pays it once, not once per dataset it reports."""

    def __init__(self) -> None:
        _require_java()
        import pycocoevalcap.meteor.meteor as pycoco_meteor

        self._proc = subprocess.Popen(
            ["java", "-jar", "-Xmx2G", pycoco_meteor.METEOR_JAR, "-", "-", "-stdio", "-l", "en",
             "-norm"], cwd=os.path.dirname(os.path.abspath(pycoco_meteor.__file__)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lock = threading.Lock()

    def _ask(self, line: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write((line + "\n").encode())
        self._proc.stdin.flush()

    def _read(self) -> str:
        assert self._proc.stdout is not None
        out = self._proc.stdout.readline()
        if not out:
            raise MeteorUnavailable(f"the METEOR Java process ended: {self._stderr()}")
        return out.decode().strip()

    def _stderr(self) -> str:
        self._proc.kill()
        try:
            _, err = self._proc.communicate(timeout=METEOR_TIMEOUT_S)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            return "(no stderr)"
        return (err or b"").decode(errors="replace")[-500:]

    def score(self, gts: dict[int, list[str]], res: dict[int, list[str]]
              ) -> tuple[float, list[float]]:
        """(corpus score, score per caption) of ``res[i] = [caption]`` against ``gts[i]``."""
        if gts.keys() != res.keys():
            raise ValueError("METEOR needs the same caption ids in references and predictions")
        with self._lock:
            try:
                stats = []
                for i in gts:
                    hyp = res[i][0].replace("|||", "").replace("  ", " ")
                    self._ask(" ||| ".join(("SCORE", " ||| ".join(gts[i]), hyp)))
                    stats.append(self._read())
                self._ask("EVAL ||| " + " ||| ".join(stats))
                per_caption = [float(self._read()) for _ in gts]
                return float(self._read()), per_caption
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise MeteorUnavailable(f"the METEOR Java process failed ({type(exc).__name__}: "
                                        f"{exc}): {self._stderr()}") from exc

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()
                except BrokenPipeError:
                    pass
            self._proc.kill()
            self._proc.wait(timeout=METEOR_TIMEOUT_S)


_METEOR: MeteorProcess | None = None


def meteor_score(gts: dict[int, list[str]], res: dict[int, list[str]]
                 ) -> tuple[float, list[float]]:
    """METEOR 1.5: (corpus score, score per caption). The Java process starts on first use and
    serves the rest of the run (it is ended at exit, or at once after a failure)."""
    global _METEOR
    _require_java()
    if _METEOR is None or _METEOR._proc.poll() is not None:
        _METEOR = MeteorProcess()
        atexit.register(_METEOR.close)
    try:
        return _METEOR.score(gts, res)
    except MeteorUnavailable:
        _METEOR.close()
        _METEOR = None
        raise
