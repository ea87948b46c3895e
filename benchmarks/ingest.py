"""Ingest throughput: clips/s for decode + resample + window, in-process and on 1 and 2 workers.

    python benchmarks/ingest.py [--tracks 96] [--seconds 60] [--format mp3] [--sr 44100]
                                [--channels 2] [--real DIR]

Writes a folder of ``--tracks`` synthetic tracks (a chord of partials plus noise, so the codecs
have real work; the defaults look like FMA: 44.1 kHz stereo mp3), then measures

1. the pure per-track function (:func:`pipelines.ingest.ingest_task`) in this process;
2. the whole ``llark ingest`` job on the multi-process DirectRunner with
   ``--direct_num_workers`` 1 and 2 (wall clock, including Beam's start-up and the commit);
3. the same job on a one-track corpus, to show the fixed cost of starting the pipeline.

With ``--real DIR`` the same measurements also run on a folder of real recordings
(e.g. ``../shared/data/real-audio``). Every window is decoded and resampled to 44.1 kHz, as
the job does by default. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.datasets import read_tasks
from pipelines.datasets.common import ReaderOptions, TrackTask
from pipelines.ingest import WindowParams, ingest_task, run

FORMATS = {"ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III"), "wav": ("WAV", "PCM_16"),
           "flac": ("FLAC", "PCM_16")}


def make_corpus(folder: Path, tracks: int, seconds: float, fmt: str, sr: int,
                channels: int, unique: int = 4) -> None:
    """``tracks`` files: ``unique`` different renderings, copied (encoding is slower than
    decoding, and a copy costs the decoder exactly as much as a new file)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    made: list[Path] = []
    for i in range(min(unique, tracks)):
        f0 = 110.0 * 2 ** (i / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3, 5))   # (n,)
        signal = 0.2 * tone + 0.02 * rng.standard_normal(t.shape)             # (n,)
        data = np.stack([signal] * channels, axis=1) if channels > 1 else signal
        fmt_name, subtype = FORMATS[fmt]
        path = folder / f"track{i:03d}.{fmt}"
        sf.write(str(path), data.astype(np.float32), sr, format=fmt_name, subtype=subtype)
        made.append(path)
    for i in range(len(made), tracks):
        shutil.copyfile(made[i % len(made)], folder / f"track{i:03d}.{fmt}")


def time_in_process(folder: Path, params: WindowParams) -> tuple[int, float, float]:
    """(clips, audio seconds, wall seconds) of the pure per-track function over the folder."""
    tasks = [t for t in read_tasks("folder", str(folder), ReaderOptions())
             if isinstance(t, TrackTask)]
    start = time.perf_counter()
    clips = 0
    audio_s = 0.0
    for task in tasks:
        result = ingest_task(task, params)
        clips += len(result.clips)
        audio_s += sum(c.end_s - c.start_s for c in result.clips)
    return clips, audio_s, time.perf_counter() - start


def time_job(folder: Path, out: Path, workers: int) -> tuple[int, float]:
    """(clips, wall seconds) of the whole ingest job on ``workers`` DirectRunner processes."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        rc = run(["--dataset", "folder", "--data-dir", str(folder), "--output", str(out),
                  "--direct_num_workers", str(workers)])
    wall = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"ingest failed on {folder} with {workers} worker(s)")
    from pipelines.schema import read_index

    return read_index(out, "clip").total_rows, wall


def report(name: str, folder: Path, work: Path, params: WindowParams) -> None:
    clips, audio_s, wall = time_in_process(folder, params)
    print(f"\n{name}")
    print(f"  in-process, pure function : {clips:4d} clips, {audio_s:7.1f} s audio in "
          f"{wall:6.2f} s = {clips / wall:6.1f} clips/s ({audio_s / wall:6.0f}x real time)")
    for workers in (1, 2):
        n, wall = time_job(folder, work / f"out-{workers}", workers)
        print(f"  llark ingest, {workers} worker(s)  : {n:4d} clips in {wall:6.2f} s = "
              f"{n / wall:6.1f} clips/s (wall clock, with start-up)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--format", choices=sorted(FORMATS), default="mp3")
    ap.add_argument("--sr", type=int, default=44100)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--real", help="also measure on this folder of real recordings")
    args = ap.parse_args(argv)
    params = WindowParams()          # 23.777 s windows, 5 s minimum tail, 44.1 kHz
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start")
    print(f"windows: {params.clip_seconds} s (min tail {params.min_clip_seconds} s), every "
          f"window decoded and resampled to {params.sample_rate_hz} Hz")
    with tempfile.TemporaryDirectory(prefix="llark-bench-ingest-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        make_corpus(corpus, args.tracks, args.seconds, args.format, args.sr, args.channels)
        report(f"synthetic: {args.tracks} x {args.seconds:g} s {args.format}, {args.sr} Hz, "
               f"{args.channels} ch", corpus, work, params)
        one = work / "one"
        make_corpus(one, 1, 10.0, args.format, args.sr, args.channels)
        n, wall = time_job(one, work / "out-one", 2)
        print(f"\nfixed cost: a 1-track, 1-clip job on 2 workers takes {wall:.2f} s")
        if args.real:
            report(f"real recordings: {args.real}", Path(args.real), work, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
