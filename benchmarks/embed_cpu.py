"""CPU throughput of the embed stage with the default ``features`` encoder.

    python benchmarks/embed_cpu.py [--clips 24] [--seconds 23.777] [--workers 1,2]

Synthesizes ``--clips`` songs (llark.demo.synth) as 44.1 kHz mono wav files, then measures:

* ``features-v1`` in-process on windows already at 22,050 Hz (the encoder alone);
* decode + resample 44.1 → 22.05 kHz + encoder in-process (what one worker does per clip);
* ``llark embed`` end to end (DirectRunner, multi-process, 1 and 2 workers): wall clock
  including Beam's start-up, RunInference batching, the Parquet write and the commit.

Prints clips/s and real-time factors; the load average is printed with each run because the
dev machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def make_corpus(folder: Path, n: int, seconds: float) -> Path:
    import numpy as np
    import soundfile as sf

    from llark.demo.synth import random_song_spec, render_song
    from pipelines import schema as s

    rows = []
    for i in range(n):
        song = render_song(random_song_spec(np.random.default_rng(i), seconds + 0.5), 44100)
        path = folder / f"song{i}.wav"
        sf.write(path, song.audio, 44100)
        rows.append(s.Clip(id=s.clip_id("folder", f"song{i}", 0.0, seconds), dataset="folder",
                           source_id=f"song{i}", split="train", audio_uri=str(path),
                           start_s=0.0, end_s=seconds, sample_rate_hz=44100).to_row())
    clips = folder / "clips"
    s.write_record_set(clips, rows, "clip", "bench")
    return clips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=23.777)
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args(argv)

    from embed.features import FeaturesEncoder
    from llark.audio import load_audio
    from pipelines import embed as E

    tmp = Path(tempfile.mkdtemp(prefix="llark-embed-bench-"))
    try:
        clips = make_corpus(tmp, args.clips, args.seconds)
        wavs = sorted(tmp.glob("song*.wav"))
        enc = FeaturesEncoder()
        windows = [load_audio(w, 22050, 0.0, args.seconds)[0] for w in wavs]
        enc(windows[:1])                                               # warm-up (imports)
        audio_s = args.clips * args.seconds
        print(f"{args.clips} clips x {args.seconds} s; load {load()}")
        t0 = time.perf_counter()
        enc(windows)
        dt = time.perf_counter() - t0
        print(f"features-v1 alone:           {args.clips / dt:6.1f} clips/s "
              f"({audio_s / dt:5.0f}x real time, {1000 * dt / args.clips:.0f} ms/clip)")
        t0 = time.perf_counter()
        for w in wavs:
            enc([load_audio(w, 22050, 0.0, args.seconds)[0]])
        dt = time.perf_counter() - t0
        print(f"decode+resample+features:    {args.clips / dt:6.1f} clips/s "
              f"({audio_s / dt:5.0f}x real time)")
        for n in [int(x) for x in args.workers.split(",") if x]:
            out = tmp / f"emb{n}"
            t0 = time.perf_counter()
            rc = E.run(["--input", str(clips), "--output", str(out), "--batch-size", "8",
                        "--direct_num_workers", str(n)])
            dt = time.perf_counter() - t0
            print(f"llark embed, {n} worker(s):   {args.clips / dt:6.1f} clips/s ({dt:.1f} s, "
                  f"rc {rc}); load {load()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
