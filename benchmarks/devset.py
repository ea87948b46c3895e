"""The real-music development set: build it, run every backend once per clip, cache the answers.

    python -m benchmarks.devset [--cache .cache/devset] [--bach 40] [--essen 35] [--ryans 35]
        [--renders 2] [--seconds 24] [--real DIR] [--limit N] [--relabel]

Clips (nothing is committed; everything is made at run time):

* **scores**: Bach chorales, Essen folk songs and tunes of Ryan's Mammoth Collection from the
  corpus inside the ``music21`` package (no other part of it: the rest is held out for
  acceptance), rendered by :mod:`llark.demo.score` ``--renders`` times each, every time with
  another tempo, soundfont and ensemble. Labels from the score (key, meter, beats, downbeats,
  chords for the polyphonic chorales).
* **drums**: ``--drums`` folk songs and as many fiddle tunes rendered once more, with a General
  MIDI drum kit playing one of :data:`llark.demo.score.DRUM_PATTERNS` on the score's beats (so
  the tempo fusion is fitted on music with drums too). Labels as above.
* **real**: the recordings in ``../shared/data/real-audio`` (read from there, never copied),
  a window from the start and one from 30 s where the file is long enough. Only the waltz has
  a label (3/4); the rest count for agreement and for the confidence of music.
* **non-music**: speech (``espeak-ng``, four languages, three voices), white, pink, brown and
  band-passed noise, a logarithmic sine sweep, two sirens (a sine on a random pitch contour),
  a crackle of random clicks, speech over noise. No key, tempo, meter or chords.

Each clip runs through madmom and essentia once (plus the alternative backends scored by
``benchmarks/annotate_accuracy.py --sweep``); the raw answers and the labels go to
``{cache}/clips.jsonl``, one line per clip, appended as they finish, so an interrupted build
resumes and fitting (:mod:`benchmarks.fit_fusion`) never re-runs a model. The audio itself is
not kept. ``.cache/`` is git-ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_CACHE = REPO / ".cache" / "devset"
REAL_AUDIO = REPO.parent / "shared" / "data" / "real-audio"
#: The one labelled fact about the real recordings (the README of that folder).
REAL_METERS = {"147793__setuniman__sweet-waltz-0i-22mi": 3}
#: Bumped when the clips or the backends' raw answers change (the cache is then rebuilt).
DEVSET_VERSION = "2"   # 2: essentia onsets
KINDS = ("bach", "essen", "ryans", "real", "nonmusic", "drums")
#: Quarter-note tempi drawn log-uniformly per kind: wide, so that no octave rule can be learnt
#: from where the set's tempi happen to lie.
TEMPO_RANGES = {"bach": (50.0, 130.0), "essen": (60.0, 170.0), "ryans": (70.0, 190.0)}


@dataclass(frozen=True)
class Truth:
    """Labels of a clip; an empty / zero field is unknown and not scored."""

    key: str = ""
    tempo_bpm: float = 0.0
    meter: int = 0
    beats: tuple[tuple[float, int], ...] = ()
    chords: tuple[tuple[float, float, str], ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Truth":
        return cls(key=d["key"], tempo_bpm=float(d["tempo_bpm"]), meter=int(d["meter"]),
                   beats=tuple((float(t), int(n)) for t, n in d["beats"]),
                   chords=tuple((float(s), float(e), str(lab)) for s, e, lab in d["chords"]))


@dataclass(frozen=True)
class Clip:
    """One clip to analyse: its audio and what we know about it."""

    id: str
    piece: str            # clips of one piece stay in one cross-validation fold
    kind: str             # one of KINDS
    audio: np.ndarray     # (n,) float32 mono
    sr: int
    truth: Truth
    info: dict[str, Any] = field(default_factory=dict)   # soundfont, programs, ...


@dataclass(frozen=True)
class DevClip:
    """A cached clip: labels plus every backend's raw answer (no audio)."""

    id: str
    piece: str
    kind: str
    truth: Truth
    raw: dict[str, Any]        # "madmom", "essentia" (BackendAnalysis dicts), "extra"
    info: dict[str, Any]

    @property
    def is_music(self) -> bool:
        return self.kind != "nonmusic"


# --------------------------------------------------------------------------- clips

def _abc_numbers(path: Path) -> list[int]:
    return [int(m) for m in re.findall(r"^X:\s*(\d+)", path.read_text(errors="replace"), re.M)]


def _may_be_3_or_4(path: Path) -> bool:
    """False when a one-tune ABC file names no 4/4, 3/4 or C (common time) meter at all, so
    :func:`llark.demo.score.load_piece` would refuse it for its meter (a cheap pre-filter:
    most of Ryan's Mammoth is 2/4, 6/8 or 2/2)."""
    text = path.read_text(errors="replace")
    return bool(re.search(r"M:\s*(4/4|3/4|C(?!\|))", text))


def _candidates(source: str, rng: np.random.Generator) -> Iterator[tuple[Path, int | None]]:
    from llark.demo.score import corpus_paths

    paths = corpus_paths(source)
    if source == "essen":
        pairs = [(p, n) for p in paths for n in _abc_numbers(p)]
        for i in rng.permutation(len(pairs)):
            yield pairs[int(i)]
    else:
        for i in rng.permutation(len(paths)):
            yield paths[int(i)], None


def _pieces(source: str, rng: np.random.Generator, rejected: Counter[str], tag: str
            ) -> Iterator[Any]:
    """The pieces of ``source`` in ``rng``'s order that :func:`llark.demo.score.load_piece`
    accepts (``ScoreFacts``); the others are counted in ``rejected`` under ``tag:reason``."""
    from llark.demo.score import ScoreRejected, load_piece

    for path, number in _candidates(source, rng):
        if number is None and path.suffix == ".abc" and not _may_be_3_or_4(path):
            rejected[f"{tag}:meter"] += 1      # what load_piece would say, without parsing
            continue
        try:
            yield load_piece(source, path, number)
        except ScoreRejected as exc:
            rejected[f"{tag}:{exc.reason}"] += 1


def _rendered(facts: Any, spec: Any, kind: str) -> Clip:
    """One rendering of ``facts`` as a development clip with the score's labels."""
    from llark.demo.score import render

    out = render(facts, spec)
    info = {"soundfont": Path(spec.soundfont).name, "programs": spec.programs,
            "n_parts": facts.n_parts}
    if spec.drums:
        info["drums"] = spec.drums
    return Clip(id=out.id, piece=facts.id, kind=kind, audio=out.audio, sr=out.sample_rate_hz,
                truth=Truth(out.key, out.tempo_bpm, out.meter, out.beats, out.chords), info=info)


def score_clips(source: str, n_pieces: int, renders: int, seconds: float, seed: int,
                rejected: Counter[str]) -> Iterator[Clip]:
    """``renders`` renderings of each of ``n_pieces`` accepted pieces of ``source``."""
    from llark.demo.score import PROGRAMS, RenderSpec, soundfonts

    fonts = soundfonts()
    if len(fonts) < 2:
        raise SystemExit(f"need two GM soundfonts, found {fonts} (make system-deps)")
    if n_pieces <= 0:
        return
    rng = np.random.default_rng([seed, KINDS.index(source)])
    lo, hi = TEMPO_RANGES[source]
    accepted = 0
    for facts in _pieces(source, rng, rejected, source):
        first = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        tempi = [first]
        for _ in range(renders - 1):
            t = tempi[-1] * float(rng.uniform(1.2, 1.45))
            tempi.append(t if t <= hi * 1.1 else tempi[0] / float(rng.uniform(1.2, 1.4)))
        if facts.end_q * 60.0 / max(tempi) < 12.0:
            rejected[f"{source}:short"] += 1
            continue
        accepted += 1
        for r, tempo in enumerate(tempi):
            ensembles = PROGRAMS[source]
            programs = ensembles[int(rng.integers(len(ensembles)))]
            yield _rendered(facts, RenderSpec(tempo_bpm=round(tempo, 1),
                                              soundfont=fonts[r % len(fonts)],
                                              programs=programs, seed=int(rng.integers(1 << 30)),
                                              seconds=seconds), source)
        if accepted >= n_pieces:
            return


def drum_clips(n_pieces: int, seconds: float, seed: int, rejected: Counter[str]
               ) -> Iterator[Clip]:
    """One rendering each of ``n_pieces`` folk songs and ``n_pieces`` fiddle tunes with a drum
    kit (:data:`llark.demo.score.DRUM_PATTERNS`, kick and snare on the score's beats), so the
    tempo fusion sees drums: hi-hats in eighths put two onsets on every beat."""
    from llark.demo.score import DRUM_PATTERNS, PROGRAMS, RenderSpec, soundfonts

    fonts = soundfonts()
    patterns = sorted(DRUM_PATTERNS)
    if n_pieces <= 0:
        return
    for j, source in enumerate(("essen", "ryans")):
        rng = np.random.default_rng([seed, KINDS.index("drums"), j])
        lo, hi = TEMPO_RANGES[source]
        accepted = 0
        for facts in _pieces(source, rng, rejected, f"drums:{source}"):
            tempo = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if facts.end_q * 60.0 / tempo < 12.0:
                rejected[f"drums:{source}:short"] += 1
                continue
            accepted += 1
            ensembles = PROGRAMS[source]
            programs = ensembles[int(rng.integers(len(ensembles)))]
            yield _rendered(facts, RenderSpec(
                tempo_bpm=round(tempo, 1), soundfont=fonts[accepted % len(fonts)],
                programs=programs, seed=int(rng.integers(1 << 30)), seconds=seconds,
                drums=patterns[int(rng.integers(len(patterns)))]), "drums")
            if accepted >= n_pieces:
                break


def real_clips(folder: Path, seconds: float) -> Iterator[Clip]:
    from llark.audio import load_audio

    for path in sorted(folder.glob("*.ogg")):
        audio, sr = load_audio(path)
        starts = [0.0] + ([30.0] if audio.size / sr >= 30.0 + seconds else [])
        for start in starts:
            a = audio[int(start * sr):int((start + seconds) * sr)].astype(np.float32)
            yield Clip(id=f"real:{path.stem}:{int(start)}", piece=f"real:{path.stem}",
                       kind="real", audio=a, sr=sr,
                       truth=Truth(meter=REAL_METERS.get(path.stem, 0)))


SPEECH = {
    "en": "The committee will meet again on Thursday morning to review the budget for the "
          "coming year. Please bring the reports from every department, and remember that "
          "the parking lot behind the library is closed for repairs until further notice.",
    "de": "Der Zug nach Hamburg fährt heute von Gleis sieben ab. Wegen Bauarbeiten kann es "
          "zu Verspätungen kommen. Wir bitten alle Reisenden um Verständnis und wünschen "
          "Ihnen trotzdem eine angenehme Fahrt.",
    "fr": "Les prévisions annoncent de la pluie pour tout le week-end sur la côte. Les "
          "randonneurs sont invités à reporter leurs sorties en montagne et à consulter le "
          "bulletin avant de partir.",
    "es": "El museo abre sus puertas a las diez de la mañana y cierra a las ocho de la tarde. "
          "Los martes la entrada es gratuita para estudiantes y jubilados con su documento.",
}


def _espeak(text: str, voice: str, sr: int, seconds: float) -> np.ndarray:
    from llark.audio import load_audio

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is missing (make system-deps)")
    with tempfile.TemporaryDirectory(prefix="llark-speech-") as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(wav), text], check=True,
                       capture_output=True, timeout=60)
        audio, _ = load_audio(wav, sample_rate_hz=sr)
    n = int(seconds * sr)
    reps = int(np.ceil(n / max(audio.size, 1)))
    return np.tile(audio, reps)[:n].astype(np.float32)


def _colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power ∝ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2.0), n)
    return (x / np.max(np.abs(x)) * 0.5).astype(np.float32)


def nonmusic_clips(seconds: float, seed: int, sr: int = 44100) -> Iterator[Clip]:
    rng = np.random.default_rng([seed, 99])
    n = int(seconds * sr)
    made: list[tuple[str, np.ndarray]] = []
    for lang, text in SPEECH.items():
        made.append((f"speech-{lang}", _espeak(text, lang, sr, seconds)))
    made.append(("speech-en-f3", _espeak(SPEECH["en"], "en+f3", sr, seconds)))
    made.append(("speech-de-m3", _espeak(SPEECH["de"], "de+m3", sr, seconds)))
    for name, exp in (("white", 0.0), ("pink", 1.0), ("brown", 2.0)):
        made.append((f"noise-{name}", _colored_noise(n, exp, rng)))
    t = np.arange(n) / sr
    f0, f1 = 50.0, 8000.0
    phase = 2 * np.pi * f0 * seconds / np.log(f1 / f0) * (np.exp(t / seconds * np.log(f1 / f0)) - 1)
    made.append(("sine-sweep", (0.5 * np.sin(phase)).astype(np.float32)))
    made.append(("speech-en+pink", (0.7 * made[0][1] + 0.3 * _colored_noise(n, 1.0, rng))
                 .astype(np.float32)))
    # a siren: a sine gliding along a slow random pitch contour (pitched, but no scale)
    for k in range(2):
        contour = np.interp(t, np.linspace(0, seconds, 9), rng.uniform(200.0, 900.0, 9))
        glide = 0.4 * np.sin(2 * np.pi * np.cumsum(contour) / sr)
        made.append((f"siren-{k}", glide.astype(np.float32)))
    # band-passed noise and a crackle of random clicks
    white = _colored_noise(n, 0.0, rng)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < 300.0) | (freqs > 3000.0)] = 0.0
    band = np.fft.irfft(spec, n)
    made.append(("noise-band", (0.5 * band / np.max(np.abs(band))).astype(np.float32)))
    clicks = np.zeros(n, np.float32)
    pos = rng.integers(0, n - 64, size=int(seconds * 30))
    for i in pos:
        clicks[i:i + 64] += rng.uniform(-0.8, 0.8) * np.hanning(64).astype(np.float32)
    made.append(("crackle", np.clip(clicks, -1.0, 1.0)))
    for name, audio in made:
        yield Clip(id=f"nonmusic:{name}", piece=f"nonmusic:{name}", kind="nonmusic",
                   audio=audio, sr=sr, truth=Truth())


# --------------------------------------------------------------------------- backends

class Backends:
    """madmom + essentia (the production backends) and the alternatives scored by --sweep."""

    def __init__(self) -> None:
        import essentia.standard as es

        from annotate.essentia_backend import EssentiaAnnotator, EssentiaConfig
        from annotate.madmom_backend import MadmomAnnotator

        self.madmom = MadmomAnnotator()
        self.essentia = EssentiaAnnotator()
        self.degara = EssentiaAnnotator(EssentiaConfig(rhythm_method="degara",
                                                       fusion_key_profiles=()))
        self.percival = es.PercivalBpmEstimator(sampleRate=44100)

    def __call__(self, clip: Clip) -> dict[str, Any]:
        from llark.audio import resample

        x = resample(np.ascontiguousarray(clip.audio, dtype=np.float32), clip.sr, 44100)
        x = np.ascontiguousarray(x, dtype=np.float32)
        m = self.madmom(x, 44100)
        e = self.essentia(x, 44100)
        d = self.degara(x, 44100)
        return {"madmom": m.to_dict(), "essentia": e.to_dict(),
                "extra": {"degara_bpm": d.tempo.bpm,
                          "degara_beats": [b.time_s for b in d.beats],
                          "percival_bpm": float(self.percival(x))}}


def backend_version() -> str:
    from annotate.essentia_backend import EssentiaConfig
    from annotate.madmom_backend import MadmomConfig

    return hashlib.sha256(repr((DEVSET_VERSION, MadmomConfig(), EssentiaConfig()))
                          .encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- cache

def _rows(path: Path) -> list[dict[str, Any]]:
    """The cache's rows; a last line cut short by an interrupted build is dropped."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
            print(f"{path}: dropped a truncated last line", file=sys.stderr)
    return rows


def load_devset(cache: Path = DEFAULT_CACHE) -> list[DevClip]:
    """Every cached clip of the current :func:`backend_version` (raises when none)."""
    path = cache / "clips.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build it with python -m benchmarks.devset")
    version = backend_version()
    out = []
    for d in _rows(path):
        if d["version"] != version:
            continue
        out.append(DevClip(d["id"], d["piece"], d["kind"], Truth.from_dict(d["truth"]),
                           d["raw"], d.get("info", {})))
    if not out:
        raise FileNotFoundError(f"{path} holds no clips of backend version {version}: rebuild")
    return out


def build(cache: Path, clips: Iterator[Clip], limit: int | None = None) -> int:
    """Run the backends on every clip not yet cached; return how many were added."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "clips.jsonl"
    version = backend_version()
    done = {d["id"] for d in _rows(path) if d["version"] == version} if path.is_file() else set()
    backends: Backends | None = None
    added = 0
    t0 = time.time()
    with path.open("a") as fh:
        for clip in clips:
            if clip.id in done:
                continue
            if limit is not None and added >= limit:
                break
            backends = backends or Backends()
            raw = backends(clip)
            row = {"version": version, "id": clip.id, "piece": clip.piece, "kind": clip.kind,
                   "truth": asdict(clip.truth), "raw": raw, "info": clip.info}
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            done.add(clip.id)
            added += 1
            print(f"[{added}] {clip.id} ({time.time() - t0:.0f}s)", file=sys.stderr)
    return added


def relabel(cache: Path, seconds: float) -> int:
    """Recompute the score labels of every cached score clip from its score (no audio, no
    model): after a fix to the label rules, the raw answers stay valid. Returns the count."""
    from llark.demo.score import corpus_paths, cut_seconds, load_piece, timed_labels

    path = cache / "clips.jsonl"
    rows = _rows(path)
    facts_of: dict[str, Any] = {}
    changed = 0
    for row in rows:
        if row["kind"] not in TEMPO_RANGES and row["kind"] != "drums":
            continue
        piece = row["piece"]
        if piece not in facts_of:
            source, _, name = piece.partition(":")
            stem, _, number = name.partition("#")
            file = next(p for p in corpus_paths(source) if p.stem == stem)
            facts_of[piece] = load_piece(source, file, int(number) if number else None)
        facts = facts_of[piece]
        tempo = float(row["truth"]["tempo_bpm"])
        beats, chords = timed_labels(facts, tempo, cut_seconds(facts, tempo, seconds))
        truth = asdict(Truth(facts.key, tempo, facts.meter, beats, chords))
        if json.loads(json.dumps(truth)) != row["truth"]:
            row["truth"] = truth
            changed += 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return changed


def refresh(cache: Path, clips: Iterator[Clip], out: Path) -> int:
    """Re-make the cached clips (rendering is deterministic) and write the essentia evidence
    added since they were cached (the fusion profiles' keys, the onsets) to ``out``: id, the
    new fields, and whether the re-made audio gives the cached ``KeyExtractor`` strength (the
    check that it is the same audio). Returns the count."""
    from annotate.essentia_backend import EssentiaAnnotator
    from llark.audio import resample

    cached = {d["id"]: d for d in _rows(cache / "clips.jsonl")}
    ess = EssentiaAnnotator()
    if ess.config.key_profile not in ess.config.fusion_key_profiles:
        raise SystemExit(f"--refresh checks the audio by the {ess.config.key_profile} key, "
                         "which must be one of the fusion profiles")
    n = 0
    with out.open("w") as fh:
        for clip in clips:
            if clip.id not in cached:
                continue
            x = np.ascontiguousarray(resample(np.ascontiguousarray(clip.audio, np.float32),
                                              clip.sr, 44100), dtype=np.float32)
            profiles = ess.profile_keys(x)
            old = cached[clip.id]["raw"]["essentia"]["key"]
            strength = next(s for p, _, s in profiles if p == ess.config.key_profile)
            same = abs(strength - float(old["strength"])) < 2e-3
            fh.write(json.dumps({"id": clip.id, "key_profiles": profiles,
                                 "onsets": list(ess.onsets(x)), "same_audio": same}) + "\n")
            n += 1
    return n


def merge_refreshed(cache: Path, files: list[Path]) -> tuple[int, int, int]:
    """Apply :func:`refresh` outputs to the cache: each refreshed row gets the new fields and
    the current :func:`backend_version`. A row that no generator re-made (an earlier build's
    clips), or whose re-made audio differs from what its cached answers were computed on,
    cannot be refreshed and is dropped (a plain build then re-runs it). Returns (kept, audio
    mismatches, rows of an older version that nothing re-made)."""
    new: dict[str, Any] = {}
    bad = 0
    for f in files:
        for d in _rows(f):
            new[d["id"]] = d
            bad += not d["same_audio"]
    path = cache / "clips.jsonl"
    version = backend_version()
    kept = []
    stale = 0
    for row in _rows(path):
        if row["id"] in new and new[row["id"]]["same_audio"]:
            row["raw"]["essentia"]["key_profiles"] = new[row["id"]]["key_profiles"]
            row["raw"]["essentia"]["onsets"] = new[row["id"]]["onsets"]
            row["raw"]["extra"]["key_profiles_from"] = "KeyExtractor"
            row["version"] = version
            kept.append(row)
        elif row["id"] not in new and row["version"] == version:
            kept.append(row)
        elif row["id"] not in new:
            stale += 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(path)
    return len(kept), bad, stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--bach", type=int, default=40, help="chorales")
    ap.add_argument("--essen", type=int, default=35, help="Essen folk songs")
    ap.add_argument("--ryans", type=int, default=35, help="tunes of Ryan's Mammoth Collection")
    ap.add_argument("--drums", type=int, default=20,
                    help="folk songs and as many fiddle tunes rendered once more with a drum kit")
    ap.add_argument("--renders", type=int, default=2, help="renderings per piece")
    ap.add_argument("--seconds", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", type=Path, default=REAL_AUDIO)
    ap.add_argument("--limit", type=int, default=None, help="add at most this many clips")
    ap.add_argument("--relabel", action="store_true",
                    help="only recompute the cached score clips' labels from their scores")
    ap.add_argument("--refresh", default=None, metavar="KIND",
                    help="re-make the cached clips of one kind (bach, essen, ryans, drums, "
                         "other) and write the essentia evidence added since (profile keys, "
                         "onsets) beside the cache; kinds can run in parallel")
    ap.add_argument("--merge-refreshed", action="store_true",
                    help="apply the --refresh outputs to the cache")
    args = ap.parse_args(argv)
    if args.refresh:
        kind = args.refresh
        rejected_: Counter[str] = Counter()
        if kind == "drums":
            gen: Iterator[Clip] = drum_clips(args.drums, args.seconds, args.seed, rejected_)
        elif kind == "other":
            gen = iter(list(nonmusic_clips(args.seconds, args.seed))
                                       + list(real_clips(args.real, args.seconds)))
        else:
            gen = score_clips(kind, getattr(args, kind), args.renders, args.seconds, args.seed,
                              rejected_)
        n = refresh(args.cache, gen, args.cache / f"refresh-{kind}.jsonl")
        print(f"{kind}: {n} clips")
        return 0
    if args.merge_refreshed:
        files = sorted(args.cache.glob("refresh-*.jsonl"))
        print("kept %d clips; dropped %d whose re-made audio differs and %d of an older "
              "version that nothing re-made (a plain build re-runs both)"
              % merge_refreshed(args.cache, files))
        return 0
    if args.relabel:
        print(f"relabelled {relabel(args.cache, args.seconds)} clips")
        return 0

    rejected: Counter[str] = Counter()

    def clips() -> Iterator[Clip]:
        yield from nonmusic_clips(args.seconds, args.seed)
        if args.real.is_dir():
            yield from real_clips(args.real, args.seconds)
        else:
            print(f"no real recordings at {args.real}: skipped", file=sys.stderr)
        for source in ("bach", "essen", "ryans"):
            yield from score_clips(source, getattr(args, source), args.renders, args.seconds,
                                   args.seed, rejected)
        yield from drum_clips(args.drums, args.seconds, args.seed, rejected)

    added = build(args.cache, clips(), args.limit)
    kinds = Counter(c.kind for c in load_devset(args.cache))
    print(f"added {added} clips; cached: {dict(kinds)}; pieces refused: {dict(rejected)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
