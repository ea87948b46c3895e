"""Which beat activation madmom's tempo histogram should read, measured on the development set.

    python -m benchmarks.tempo_activation [--cache .cache/devset] [--kinds bach essen ryans drums]

The madmom backend's default (``MadmomConfig.tempo_activation = "downbeat"``) was chosen on
synthesized songs; this re-makes the development set's score clips (rendering is
deterministic, :mod:`benchmarks.devset`) and runs the alternative, madmom's own eight-network
``RNNBeatProcessor``, through the backend's same tempo code (:meth:`MadmomAnnotator.tempo`).
The default's answers are the cached ones. Prints tempo Acc1 / Acc2 per kind and overall, and
the CPU time of the extra network.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.annotate_accuracy import tempo_scores  # noqa: E402
from benchmarks.devset import (  # noqa: E402
    DEFAULT_CACHE,
    Clip,
    drum_clips,
    load_devset,
    score_clips,
)

SCORE_KINDS = ("bach", "essen", "ryans", "drums")


def clips_of(kind: str, seconds: float = 24.0, seed: int = 0) -> Iterator[Clip]:
    """The development set's clips of ``kind``, with the build's default counts."""
    counts = {"bach": 40, "essen": 35, "ryans": 35}
    if kind == "drums":
        return drum_clips(20, seconds, seed, Counter())
    return score_clips(kind, counts[kind], 2, seconds, seed, Counter())


def main(argv: list[str] | None = None) -> int:
    from annotate.madmom_backend import SAMPLE_RATE_HZ, MadmomAnnotator, MadmomConfig
    from llark.audio import resample
    from madmom.audio.signal import Signal

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--kinds", nargs="+", default=list(SCORE_KINDS), choices=SCORE_KINDS)
    args = ap.parse_args(argv)

    cached = {c.id: c for c in load_devset(args.cache)}
    beat = MadmomAnnotator(MadmomConfig(tempo_activation="beat"))
    assert beat._beat_rnn is not None
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {}
    cpu = audio_s = 0.0
    for kind in args.kinds:
        rows = scores.setdefault(kind, {"downbeat": [], "beat": []})
        for clip in clips_of(kind):
            dev = cached.get(clip.id)
            if dev is None or dev.truth.tempo_bpm <= 0:
                continue
            x = resample(np.ascontiguousarray(clip.audio, np.float32), clip.sr, SAMPLE_RATE_HZ)
            t0 = time.process_time()
            act = np.asarray(beat._beat_rnn(Signal(x, sample_rate=SAMPLE_RATE_HZ,
                                                   num_channels=1)), dtype=np.float32)
            bpm = beat.tempo(act).bpm
            cpu += time.process_time() - t0
            audio_s += len(x) / SAMPLE_RATE_HZ
            ref = dev.truth.tempo_bpm
            rows["beat"].append(tempo_scores(bpm, ref))
            rows["downbeat"].append(tempo_scores(float(dev.raw["madmom"]["tempo"]["bpm"]), ref))
        print(f"{kind}: {len(rows['beat'])} clips", file=sys.stderr)
    print(f"{'kind':8s} {'clips':>5s}  downbeat Acc1/Acc2   beat RNN Acc1/Acc2")
    every: dict[str, list[tuple[float, float]]] = {"downbeat": [], "beat": []}
    for kind, rows in scores.items():
        for name in every:
            every[name] += rows[name]
        print(f"{kind:8s} {len(rows['beat']):5d}  " + "   ".join(
            f"{np.mean([a for a, _ in rows[n]]):.3f} / {np.mean([b for _, b in rows[n]]):.3f}"
            for n in ("downbeat", "beat")))
    print(f"{'all':8s} {len(every['beat']):5d}  " + "   ".join(
        f"{np.mean([a for a, _ in every[n]]):.3f} / {np.mean([b for _, b in every[n]]):.3f}"
        for n in ("downbeat", "beat")))
    print(f"RNNBeatProcessor + tempo: {cpu / max(audio_s, 1e-9) * 60:.2f} CPU s per minute of "
          "audio (on top of the downbeat network the backend runs anyway)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
