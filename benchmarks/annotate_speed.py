"""CPU time per minute of audio and peak memory of an annotate worker, per backend.

    python -m benchmarks.annotate_speed [--clips N] [--seconds S] [--real DIR] [--repeat R]

Each variant runs in a fresh subprocess (one Beam worker's worth: models built once, then
clip windows annotated one after another), so its peak RSS is the worker's. Figures:

* ``load_cpu_s``: CPU seconds to build the annotator (import + model loading), once per worker;
* ``cpu_s_per_min``: CPU seconds (``time.process_time``: every thread of the process, so
  onnxruntime's and BLAS's threads count) per minute of audio, annotating 44.1 kHz windows;
* ``decode_cpu_s_per_min``: the same including the worker's decode + resample of each window
  from a 22.05 kHz ogg file (``llark.audio.load_audio``), i.e. the whole per-clip cost;
* ``wall_s_per_min`` and ``peak_rss_mb`` (``ru_maxrss`` of the subprocess).

onnxruntime runs with one intra-op thread per session (the backend's default, what a Beam
worker uses: parallelism comes from one worker per core). Clips: ``--clips`` synthesized songs
of ``--seconds`` (default: the 23.777 s Jukebox window ingest cuts) and, with ``--real``, the
first windows of the real recordings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = {
    "madmom": {"backend": "madmom"},
    "essentia": {"backend": "essentia"},
    "consensus": {"backend": "consensus"},
    "madmom (tempo from RNNBeatProcessor)": {"backend": "madmom", "tempo_activation": "beat"},
    "essentia (degara rhythm)": {"backend": "essentia", "rhythm_method": "degara"},
}


def make_clips(folder: Path, n: int, seconds: float, real: Path | None) -> list[str]:
    """Write the benchmark windows as 22.05 kHz ogg files (what ingest's sources look like)."""
    import numpy as np
    import soundfile as sf

    from llark.audio import load_audio
    from llark.demo.synth import random_song_spec, render_song

    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        song = render_song(random_song_spec(rng, seconds), 22050)
        p = folder / f"synth{i:02d}.ogg"
        sf.write(p, song.audio, 22050)
        paths.append(str(p))
    if real:
        for f in sorted(real.glob("*.ogg")):
            audio, sr = load_audio(f, None, 0.0, None)
            p = folder / f"real_{f.stem[:20]}.ogg"
            sf.write(p, audio[: int(seconds * sr)], sr)
            paths.append(str(p))
    return paths


def child(spec: dict, paths: list[str], repeat: int) -> dict:
    """Runs inside the subprocess: build once, annotate every clip ``repeat`` times."""
    from annotate.annotator import AnnotatorConfig, build_annotator
    from annotate.essentia_backend import EssentiaConfig
    from annotate.madmom_backend import MadmomConfig
    from llark.audio import load_audio

    c0, w0 = time.process_time(), time.perf_counter()
    cfg = AnnotatorConfig(
        backend=spec["backend"],
        madmom=MadmomConfig(tempo_activation=spec.get("tempo_activation", "downbeat")),
        essentia=EssentiaConfig(rhythm_method=spec.get("rhythm_method", "multifeature")))
    annotate = build_annotator(cfg)
    load_cpu, load_wall = time.process_time() - c0, time.perf_counter() - w0
    windows = [load_audio(p, 44100) for p in paths]
    annotate(*windows[0])                                   # warm-up (first-call allocations)
    audio_s = cpu = wall = 0.0
    for _ in range(repeat):
        for audio, sr in windows:
            c, w = time.process_time(), time.perf_counter()
            annotate(audio, sr)
            cpu += time.process_time() - c
            wall += time.perf_counter() - w
            audio_s += audio.size / sr
    dec_cpu = 0.0
    for p in paths:                                          # decode + resample + annotate
        c = time.process_time()
        annotate(*load_audio(p, 44100))
        dec_cpu += time.process_time() - c
    dec_audio_s = sum(a.size / sr for a, sr in windows)
    return {"load_cpu_s": round(load_cpu, 2), "load_wall_s": round(load_wall, 2),
            "audio_s": round(audio_s, 1),
            "cpu_s_per_min": round(cpu / audio_s * 60, 2),
            "decode_cpu_s_per_min": round(dec_cpu / dec_audio_s * 60, 2),
            "wall_s_per_min": round(wall / audio_s * 60, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=8, help="synthesized clips")
    ap.add_argument("--seconds", type=float, default=23.777, help="clip length")
    ap.add_argument("--real", type=Path, default=None, help="also the real recordings' first windows")
    ap.add_argument("--repeat", type=int, default=2, help="passes over the clips")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        spec, paths, repeat = json.loads(args.child)
        print(json.dumps(child(spec, paths, repeat)))
        return 0

    from tqdm import tqdm

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_clips(Path(tmp), args.clips, args.seconds, args.real)
        for name, spec in tqdm(VARIANTS.items(), desc="variants", file=sys.stderr):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.annotate_speed", "--child",
                 json.dumps([spec, paths, args.repeat])],
                cwd=REPO, capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": str(REPO)})
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{len(paths)} clips of {args.seconds:g}s x {args.repeat} passes, onnxruntime "
          f"intra-op threads = 1, CPUs visible: {os.cpu_count()}")
    cols = ("cpu_s_per_min", "decode_cpu_s_per_min", "wall_s_per_min", "load_cpu_s",
            "load_wall_s", "peak_rss_mb")
    print(f"{'variant':<40}" + "".join(f"{c:>22}" for c in cols))
    for name, r in results.items():
        print(f"{name:<40}" + "".join(f"{r[c]:>22}" for c in cols))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
