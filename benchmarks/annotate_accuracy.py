"""Accuracy of the annotators (madmom, essentia, consensus) against exact ground truth.

    python -m benchmarks.annotate_accuracy [--synth N] [--seconds S] [--seed K]
        [--demo DIR] [--cache FILE] [--sweep] [--json OUT]

Items: ``--synth N`` songs rendered by :mod:`llark.demo.synth` (varied styles, 3/4 and 4/4,
all keys, 70-160 BPM) and, with ``--demo DIR``, every clip window of the demo corpus
(``llark demo-data``; ground truth from its ``ground_truth.json``, cut to the windows
ingest makes). Each backend runs once per item; its raw answer is cached in ``--cache`` so
the consensus rules can be re-scored without re-running the models.

Metrics (mir_eval): key MIREX weighted score; tempo Acc1 (within 4 %) and Acc2 (within 4 %
of the truth or its ×2, ×½, ×3, ×⅓); beat F-measure (70 ms); downbeat F-measure (70 ms, on
the downbeats); chord major/minor weighted overlap (``mir_eval.chord`` majmin, duration
weighted per item); and meter accuracy. ``--sweep`` also scores the choices the backends
make by measurement: madmom's tempo input (downbeat vs beat network), essentia's key profile,
rhythm method and chord method.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from annotate.consensus import ConsensusConfig, combine, from_single  # noqa: E402
from annotate.essentia_backend import KEY_PROFILES, EssentiaAnnotator, EssentiaConfig  # noqa: E402
from llark.music import spell_key  # noqa: E402
from annotate.madmom_backend import MadmomAnnotator, MadmomConfig  # noqa: E402
from annotate.types import BackendAnalysis, ClipAnalysis, TempoEstimate  # noqa: E402

#: Cache key suffix: the backend configs whose raw answers are cached.
BACKEND_VERSION = hashlib.sha256(
    repr((MadmomConfig(), EssentiaConfig())).encode()).hexdigest()[:10]
METRICS = ("key", "tempo_acc1", "tempo_acc2", "beat_f", "downbeat_f", "chord_majmin", "meter")


@dataclass(frozen=True)
class Truth:
    key: str
    tempo_bpm: float
    meter: int
    beats: tuple[tuple[float, int], ...]
    chords: tuple[tuple[float, float, str], ...]


@dataclass(frozen=True)
class Item:
    id: str
    audio: np.ndarray       # (n,) float32 mono
    sr: int
    truth: Truth


# --------------------------------------------------------------------------- corpora

def synth_items(n: int, seconds: float, seed: int, sr: int = 44100) -> list[Item]:
    from llark.demo.synth import random_song_spec, render_song

    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        spec = random_song_spec(rng, seconds)
        song = render_song(spec, sr)
        truth = Truth(song.key_label, song.tempo_bpm, song.meter,
                      tuple((b.time_s, b.beat_number) for b in song.beats),
                      tuple((c.start_s, c.end_s, c.label) for c in song.chords))
        items.append(Item(f"synth:{seed}:{i}", song.audio, sr, truth))
    return items


def window_truth(t: dict[str, Any], start: float, end: float) -> Truth:
    """The truth of file ``t`` (ground_truth.json entry) inside ``[start, end)``, shifted."""
    beats = tuple((b["time"] - start, int(b["beat_number"])) for b in t["beats"]
                  if start <= b["time"] < end)
    chords = []
    for c in t["chords"]:
        s, e = max(c["start"], start), min(c["end"], end)
        if e > s:
            chords.append((s - start, e - start, c["label"]))
    return Truth(t["key"], float(t["tempo_bpm"]), int(t["meter"]), beats, tuple(chords))


def demo_items(root: Path, clip_seconds: float | None = None) -> list[Item]:
    """Every clip window ingest would cut from every good file of a demo corpus."""
    from llark.audio import load_audio
    from llark.windows import DEFAULT_CLIP_SECONDS, clip_windows

    gt = json.loads((root / "ground_truth.json").read_text())
    items = []
    for rel, t in sorted(gt["files"].items()):
        audio, sr = load_audio(root / rel)
        duration = audio.size / sr
        window = t.get("clip_window_in_file_s")
        if window:   # MusicCaps: the labelled 10 s window of the file
            windows = [(float(window[0]), float(window[1]))]
        else:
            windows, _ = clip_windows(duration, clip_seconds or DEFAULT_CLIP_SECONDS)
        for start, end in windows:
            a = audio[int(round(start * sr)):int(round(end * sr))]
            items.append(Item(f"demo:{rel}:{int(start * 1000)}-{int(end * 1000)}", a, sr,
                              window_truth(t, start, end)))
    return items


# --------------------------------------------------------------------------- scoring

def tempo_scores(est: float, ref: float, tol: float = 0.04) -> tuple[float, float]:
    if est <= 0 or ref <= 0:
        return 0.0, 0.0
    acc1 = float(abs(est - ref) / ref <= tol)
    acc2 = float(any(abs(est - ref * f) / (ref * f) <= tol for f in (1, 2, 0.5, 3, 1 / 3)))
    return acc1, acc2


def score(est: ClipAnalysis, truth: Truth) -> dict[str, float]:
    import mir_eval

    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["key"] = (float(mir_eval.key.weighted_score(truth.key, spell_key(est.key)))
                      if est.key else 0.0)
        out["tempo_acc1"], out["tempo_acc2"] = tempo_scores(est.tempo_bpm, truth.tempo_bpm)
        ref_b = np.array([b[0] for b in truth.beats])
        ref_d = np.array([b[0] for b in truth.beats if b[1] == 1])
        est_b = np.array([b.time_s for b in est.beats])
        est_d = np.array(est.downbeats_s)
        out["beat_f"] = float(mir_eval.beat.f_measure(ref_b, est_b)) if ref_b.size else 0.0
        out["downbeat_f"] = float(mir_eval.beat.f_measure(ref_d, est_d)) if ref_d.size else 0.0
        ref_i = np.array([[s, e] for s, e, _ in truth.chords])
        ref_l = [lab for _, _, lab in truth.chords]
        if est.chords:
            est_i = np.array([[c.start_s, c.end_s] for c in est.chords])
            est_l = [c.label for c in est.chords]
            est_i, est_l = mir_eval.util.adjust_intervals(est_i, est_l, ref_i.min(), ref_i.max(),
                                                          "N", "N")
            merged = mir_eval.util.merge_labeled_intervals(ref_i, ref_l, est_i, est_l)
            intervals, r_lab, e_lab = merged
            durations = mir_eval.util.intervals_to_durations(intervals)
            comp = mir_eval.chord.majmin(r_lab, e_lab)
            out["chord_majmin"] = float(mir_eval.chord.weighted_accuracy(comp, durations))
        else:
            out["chord_majmin"] = 0.0
    out["meter"] = float(est.meter == truth.meter)
    return out


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) if rows else 0.0 for m in METRICS}


# --------------------------------------------------------------------------- running

class Runner:
    """Runs the backends (and the sweep variants) once per item, with a JSON cache."""

    def __init__(self, cache: Path | None, sweep: bool) -> None:
        self.cache_path = cache
        self.cache: dict[str, Any] = {}
        if cache and cache.exists():
            self.cache = json.loads(cache.read_text())
        self.sweep = sweep
        self._m: MadmomAnnotator | None = None
        self._e: EssentiaAnnotator | None = None
        self._variants: dict[str, EssentiaAnnotator] = {}
        self._beat_rnn = None
        self.cpu_s = 0.0

    def _models(self) -> None:
        if self._m is None:
            self._m = MadmomAnnotator()
            self._e = EssentiaAnnotator()

    def raw(self, item: Item) -> dict[str, Any]:
        key = f"{item.id}|{BACKEND_VERSION}"
        entry = self.cache.get(key, {})
        if "madmom" not in entry:
            self._models()
            assert self._m is not None and self._e is not None
            c = time.process_time()
            entry["madmom"] = self._m(item.audio, item.sr).to_dict()
            entry["essentia"] = self._e(item.audio, item.sr).to_dict()
            self.cpu_s += time.process_time() - c
        if self.sweep and "sweep" not in entry:
            entry["sweep"] = self.sweep_raw(item)
        self.cache[key] = entry
        return entry

    def sweep_raw(self, item: Item) -> dict[str, Any]:
        import essentia.standard as es
        from madmom.audio.signal import Signal
        from madmom.features.beats import RNNBeatProcessor

        from llark.audio import resample

        self._models()
        assert self._m is not None
        x = resample(item.audio.astype(np.float32), item.sr, 44100)
        out: dict[str, Any] = {}
        if self._beat_rnn is None:
            self._beat_rnn = RNNBeatProcessor(intra_op_num_threads=1)
        act = np.asarray(self._beat_rnn(Signal(x, sample_rate=44100, num_channels=1)))
        t: TempoEstimate = self._m.tempo(act)
        out["madmom_beat_tempo"] = [t.bpm, t.confidence, [list(c) for c in t.candidates]]
        out["key_profiles"] = {}
        for prof in KEY_PROFILES:
            try:
                k, s, strength = es.KeyExtractor(profileType=prof)(x)
            except RuntimeError:   # e.g. 'weichai' refuses minor scales
                out["key_profiles"][prof] = ["", 0.0]
                continue
            out["key_profiles"][prof] = [spell_key(f"{k} {s}"), float(strength)]
        variants = {"degara": EssentiaConfig(rhythm_method="degara"),
                    "chords_beats": EssentiaConfig(chord_method="beats"),
                    "chords_win2": EssentiaConfig(chord_window_s=2.0),
                    "chords_win0.5": EssentiaConfig(chord_window_s=0.5)}
        for name, cfg in variants.items():
            if name not in self._variants:
                self._variants[name] = EssentiaAnnotator(cfg)
            out[name] = self._variants[name](item.audio, item.sr).to_dict()
        return out

    def save(self) -> None:
        if self.cache_path:
            self.cache_path.write_text(json.dumps(self.cache))


def evaluate(items: list[Item], runner: Runner, cfg: ConsensusConfig
             ) -> dict[str, dict[str, float]]:
    rows: dict[str, list[dict[str, float]]] = {"madmom": [], "essentia": [], "consensus": []}
    for item in items:
        raw = runner.raw(item)
        m = BackendAnalysis.from_dict(raw["madmom"])
        e = BackendAnalysis.from_dict(raw["essentia"])
        rows["madmom"].append(score(from_single(m, 0.0), item.truth))
        rows["essentia"].append(score(from_single(e, 0.0), item.truth))
        rows["consensus"].append(score(combine(m, e, 0.0, cfg), item.truth))
    return {k: mean_scores(v) for k, v in rows.items()}


def sweep_report(items: list[Item], runner: Runner) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # madmom tempo input
    acc = {"downbeat": [], "beat": []}
    for item in items:
        sw = runner.raw(item)["sweep"]
        m = BackendAnalysis.from_dict(runner.raw(item)["madmom"])
        acc["downbeat"].append(tempo_scores(m.tempo.bpm, item.truth.tempo_bpm))
        acc["beat"].append(tempo_scores(sw["madmom_beat_tempo"][0], item.truth.tempo_bpm))
    out["madmom_tempo_input"] = {k: {"acc1": float(np.mean([a for a, _ in v])),
                                     "acc2": float(np.mean([b for _, b in v]))}
                                 for k, v in acc.items()}
    # key profiles
    import mir_eval
    prof_scores = {}
    for prof in KEY_PROFILES:
        prof_scores[prof] = float(np.mean([
            mir_eval.key.weighted_score(item.truth.key, label) if label else 0.0
            for item in items
            for label in [runner.raw(item)["sweep"]["key_profiles"][prof][0]]]))
    out["essentia_key_profiles"] = dict(sorted(prof_scores.items(), key=lambda kv: -kv[1]))
    # essentia variants
    variants: dict[str, list[dict[str, float]]] = {"default": []}
    for item in items:
        raw = runner.raw(item)
        variants["default"].append(score(from_single(BackendAnalysis.from_dict(raw["essentia"]),
                                                     0.0), item.truth))
        for name in ("degara", "chords_beats", "chords_win2", "chords_win0.5"):
            variants.setdefault(name, []).append(
                score(from_single(BackendAnalysis.from_dict(raw["sweep"][name]), 0.0), item.truth))
    out["essentia_variants"] = {k: mean_scores(v) for k, v in variants.items()}
    return out


def print_table(title: str, results: dict[str, dict[str, float]], n: int) -> None:
    print(f"\n{title} ({n} items)")
    print(f"{'':<10}" + "".join(f"{m:>14}" for m in METRICS))
    for name, res in results.items():
        print(f"{name:<10}" + "".join(f"{res[m]:>14.3f}" for m in METRICS))


def goal_check(results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The issue's goals: consensus >= the better backend on every metric, and strictly
    better than both on key and tempo Acc1."""
    c, m, e = results["consensus"], results["madmom"], results["essentia"]
    below = [k for k in METRICS if c[k] < max(m[k], e[k]) - 1e-9]
    not_better = [k for k in ("key", "tempo_acc1") if not c[k] > max(m[k], e[k])]
    return {"at_least_best_everywhere": not below, "below_best_on": below,
            "better_than_both_on_key_and_acc1": not not_better, "not_better_on": not_better}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth", type=int, default=32, help="number of synthesized songs (0: none)")
    ap.add_argument("--seconds", type=float, default=24.0, help="length of each song")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthesized songs")
    ap.add_argument("--demo", type=Path, default=None, help="demo corpus folder (llark demo-data)")
    ap.add_argument("--cache", type=Path, default=None, help="JSON cache of raw backend answers")
    ap.add_argument("--sweep", action="store_true", help="also score backend variants")
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    runner = Runner(args.cache, args.sweep)
    cfg = ConsensusConfig()
    report: dict[str, Any] = {"consensus_config": cfg.__dict__}
    sets: list[tuple[str, list[Item]]] = []
    if args.synth:
        sets.append((f"synth seed={args.seed} n={args.synth} {args.seconds:g}s",
                     synth_items(args.synth, args.seconds, args.seed)))
    if args.demo:
        sets.append((f"demo corpus {args.demo}", demo_items(args.demo)))
    for title, items in sets:
        for item in tqdm(items, desc=title, file=sys.stderr):
            runner.raw(item)
        runner.save()
        results = evaluate(items, runner, cfg)
        print_table(title, results, len(items))
        goals = goal_check(results)
        print(f"goals: consensus >= better backend on every metric: "
              f"{'yes' if goals['at_least_best_everywhere'] else 'NO ' + str(goals['below_best_on'])}"
              f"; better than both on key and tempo Acc1: "
              f"{'yes' if goals['better_than_both_on_key_and_acc1'] else 'NO ' + str(goals['not_better_on'])}")
        report[title] = {"n": len(items), "results": results, "goals": goals}
        if args.sweep:
            sw = sweep_report(items, runner)
            report[title]["sweep"] = sw
            print("  madmom tempo input:", json.dumps(sw["madmom_tempo_input"]))
            print("  essentia key profiles:",
                  ", ".join(f"{k} {v:.3f}" for k, v in sw["essentia_key_profiles"].items()))
            print_table("  essentia variants", sw["essentia_variants"], len(items))
    if runner.cpu_s:
        print(f"\nbackend CPU time this run: {runner.cpu_s:.1f}s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
