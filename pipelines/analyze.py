"""``llark analyze AUDIO... [--backend consensus|madmom|essentia] [--start S --end E]``.

Prints one JSON object per file on stdout, in the order given, with exactly these fields::

    {"path": ..., "tempo_bpm": 120.1, "beats": [{"time": 0.52, "beat_number": 1}, ...],
     "downbeats": [0.52, 2.51, ...], "key": {"label": "F# minor", "confidence": 0.83},
     "chords": [{"start": 0.0, "end": 2.1, "label": "F#:min"}, ...], "backend": "consensus"}

Keys and chords are spelled as musicians write them (:mod:`llark.music`): ``"Bb major"``, not
``"A# major"``, and chords in the key (``"Bb:min"`` in F minor). Times are seconds from
``--start`` (the start of the analysed window). A file that cannot be
read or analysed prints ``{"path": ..., "error": "<ErrorType>: <message>"}`` instead; the other
files are still analysed and the command exits with status 1 at the end. Progress and a summary
go to stderr, so stdout stays machine-readable. The models load once for all files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from annotate.types import BACKENDS
from llark.errors import LlarkError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="llark analyze",
        description="Tempo, beats, downbeats, key and chords of audio files, one JSON object "
                    "per file on stdout.")
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3, m4a, ...)")
    parser.add_argument("--backend", choices=BACKENDS, default="consensus",
                        help="consensus (madmom + essentia, merged; default), madmom or essentia")
    parser.add_argument("--start", type=float, default=0.0,
                        help="analyse from this many seconds into each file (default 0)")
    parser.add_argument("--end", type=float, default=None,
                        help="analyse up to this many seconds into each file (default: the end)")
    args = parser.parse_args(argv)
    if args.start < 0:
        parser.error(f"--start must be >= 0, got {args.start}")
    if args.end is not None and args.end <= args.start:
        parser.error(f"--end ({args.end}) must be after --start ({args.start})")
    return args


def analyze_file(path: str, annotator: object, start_s: float, end_s: float | None) -> dict:
    """One file → the output object (raises typed errors for unreadable audio)."""
    from annotate.madmom_backend import SAMPLE_RATE_HZ
    from llark.audio import load_audio

    from pipelines.sources import open_audio

    audio, sr = load_audio(open_audio(path), SAMPLE_RATE_HZ, start_s, end_s)
    result = annotator(audio, sr)  # type: ignore[operator]
    return result.to_json_dict(path)


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from annotate.annotator import build_annotator

    t0 = time.perf_counter()
    annotator = build_annotator(args.backend)
    failed = 0
    for path in tqdm(args.audio, desc="analyze", unit="file", file=sys.stderr,
                     disable=len(args.audio) < 2):
        try:
            out = analyze_file(path, annotator, args.start, args.end)
        except (LlarkError, OSError) as exc:
            failed += 1
            out = {"path": path, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out, ensure_ascii=False), flush=True)
    n = len(args.audio)
    print(f"[analyze] {n - failed} of {n} file(s) analysed with {args.backend} in "
          f"{time.perf_counter() - t0:.1f}s" + (f"; {failed} failed (see their 'error')"
                                                 if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run())
