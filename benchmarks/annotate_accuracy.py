"""Accuracy and calibration of the annotators (madmom, essentia, consensus).

    python -m benchmarks.annotate_accuracy --real [--cache .cache/devset] [--folds 5]
        [--synth N] [--seconds S] [--seed K] [--synth-cache FILE] [--demo DIR] [--sweep]
        [--json OUT]

``--real``: the real-music development set (``benchmarks/devset.py``: rendered Bach
chorales, Essen folk songs and Ryan's Mammoth tunes; the six real recordings; non-music). The
consensus is scored **under cross-validation over pieces** (its fusion is refitted on the
other folds for every fold; every fold is printed), madmom and essentia as they are. Then the
synthesized set (``--synth N`` songs of :mod:`llark.demo.synth`, seed ``--seed``) with the
committed fusion (fitted on the whole development set, never on synthesized songs), and with
``--demo DIR`` every clip window of the demo corpus.

Metrics (mir_eval): key MIREX weighted score; tempo Acc1 (within 4 %) and Acc2 (within 4 %
of the truth or its ×2, ×½, ×3, ×⅓); beat F-measure (70 ms); downbeat F-measure; chord
major/minor weighted overlap (``mir_eval.chord`` majmin, duration weighted per clip); meter
accuracy. A clip counts for a metric only where its label is known (the real recordings have
only the waltz's meter; non-music has no label). ECE per field (10 equal-width bins) of each
backend's own confidence against: the key exactly right, tempo Acc1, the meter right, the
clip's chord overlap. Non-music's key confidence is compared to the 10th percentile of the
music's.

``--sweep`` scores the alternatives on the development set: each essentia key profile
alone, essentia's degara beat tracker and the Percival tempo estimator.
"""

from __future__ import annotations

import argparse
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
from annotate.essentia_backend import EssentiaAnnotator  # noqa: E402
from annotate.fusion import ece, reliability  # noqa: E402
from annotate.madmom_backend import MadmomAnnotator  # noqa: E402
from annotate.types import BackendAnalysis, ClipAnalysis  # noqa: E402
from benchmarks.devset import DEFAULT_CACHE, Truth, backend_version  # noqa: E402
from llark.music import spell_key, tempo_accuracy  # noqa: E402

#: Cache key suffix of the synthesized set's raw answers (the development set's version).
BACKEND_VERSION = backend_version()
METRICS = ("key", "tempo_acc1", "tempo_acc2", "beat_f", "downbeat_f", "chord_majmin", "meter")
CONF_FIELDS = ("key", "tempo", "meter", "chords")
BACKEND_NAMES = ("madmom", "essentia", "consensus")


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

def tempo_scores(est: float, ref: float) -> tuple[float, float]:
    """(Acc1, Acc2) as floats, from the project's one definition (llark.music)."""
    acc1, acc2 = tempo_accuracy(ref, est)
    return float(acc1), float(acc2)


def chord_overlap(est: ClipAnalysis, truth: Truth) -> float | None:
    """Duration-weighted majmin agreement of ``est``'s chords with the truth; ``None`` when
    the truth has no scorable (major/minor/N) chord."""
    import mir_eval

    if not truth.chords:
        return None
    ref_i = np.array([[s, e] for s, e, _ in truth.chords])
    ref_l = [lab for _, _, lab in truth.chords]
    if not est.chords:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est_i = np.array([[c.start_s, c.end_s] for c in est.chords])
        est_l = [c.label for c in est.chords]
        est_i, est_l = mir_eval.util.adjust_intervals(est_i, est_l, ref_i.min(), ref_i.max(),
                                                      "N", "N")
        intervals, r_lab, e_lab = mir_eval.util.merge_labeled_intervals(ref_i, ref_l, est_i,
                                                                         est_l)
        durations = mir_eval.util.intervals_to_durations(intervals)
        comp = mir_eval.chord.majmin(r_lab, e_lab)
        if not np.any(comp >= 0):
            return None
        return float(mir_eval.chord.weighted_accuracy(comp, durations))


def score(est: ClipAnalysis, truth: Truth) -> dict[str, float]:
    """The metrics of one clip for which its truth is known."""
    import mir_eval

    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if truth.key:
            out["key"] = (float(mir_eval.key.weighted_score(spell_key(truth.key),
                                                            spell_key(est.key)))
                          if est.key else 0.0)
        if truth.tempo_bpm > 0:
            out["tempo_acc1"], out["tempo_acc2"] = tempo_scores(est.tempo_bpm, truth.tempo_bpm)
        if truth.beats:
            ref_b = np.array([b[0] for b in truth.beats])
            ref_d = np.array([b[0] for b in truth.beats if b[1] == 1])
            est_b = np.array([b.time_s for b in est.beats])
            est_d = np.array(est.downbeats_s)
            out["beat_f"] = float(mir_eval.beat.f_measure(ref_b, est_b))
            if ref_d.size:
                out["downbeat_f"] = float(mir_eval.beat.f_measure(ref_d, est_d))
    overlap = chord_overlap(est, truth)
    if overlap is not None:
        out["chord_majmin"] = overlap
    if truth.meter:
        out["meter"] = float(est.meter == truth.meter)
    return out


def confidences(est: ClipAnalysis, truth: Truth, is_music: bool
                ) -> dict[str, tuple[float, float]]:
    """``field -> (confidence, correct)`` where correctness is known (non-music: any key is
    wrong)."""
    out: dict[str, tuple[float, float]] = {}
    if truth.key or not is_music:
        right = bool(truth.key) and bool(est.key) and spell_key(est.key) == spell_key(truth.key)
        out["key"] = (est.key_confidence, float(right))
    if truth.tempo_bpm > 0:
        out["tempo"] = (est.tempo_confidence, tempo_scores(est.tempo_bpm, truth.tempo_bpm)[0])
    if truth.meter and est.meter:
        out["meter"] = (est.meter_confidence, float(est.meter == truth.meter))
    overlap = chord_overlap(est, truth)
    if overlap is not None:
        out["chords"] = (est.chords_confidence, overlap)
    return out


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the clips that have it (NaN when none has)."""
    return {m: float(np.mean([r[m] for r in rows if m in r])) if any(m in r for r in rows)
            else float("nan") for m in METRICS}


def counts(rows: list[dict[str, float]]) -> dict[str, int]:
    return {m: sum(m in r for r in rows) for m in METRICS}


def ece_table(conf_rows: list[dict[str, tuple[float, float]]]) -> dict[str, float]:
    out = {}
    for f in CONF_FIELDS:
        pairs = [r[f] for r in conf_rows if f in r]
        out[f] = ece([c for c, _ in pairs], [y for _, y in pairs]) if pairs else float("nan")
    return out


def print_table(title: str, results: dict[str, dict[str, float]], n: dict[str, int]) -> None:
    print(f"\n{title}")
    print(f"{'':<11}" + "".join(f"{m:>13}" for m in METRICS))
    print(f"{'(clips)':<11}" + "".join(f"{n[m]:>13}" for m in METRICS))
    for name, res in results.items():
        print(f"{name:<11}" + "".join(f"{res[m]:>13.3f}" for m in METRICS))


def print_ece(eces: dict[str, dict[str, float]], n: dict[str, int]) -> None:
    print(f"{'ECE':<11}" + "".join(f"{f:>10}" for f in CONF_FIELDS))
    print(f"{'(clips)':<11}" + "".join(f"{n[f]:>10}" for f in CONF_FIELDS))
    for name, e in eces.items():
        print(f"{name:<11}" + "".join(f"{e[f]:>10.3f}" for f in CONF_FIELDS))


def goal_check(results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The issue's goals: consensus >= the better backend on every metric, and strictly
    better than both on key and tempo Acc1."""
    c, m, e = results["consensus"], results["madmom"], results["essentia"]
    best = {k: np.nanmax([m[k], e[k]]) for k in METRICS}
    below = [k for k in METRICS if not np.isnan(c[k]) and c[k] < best[k] - 1e-9]
    not_better = [k for k in ("key", "tempo_acc1") if not c[k] > best[k]]
    return {"at_least_best_everywhere": not below, "below_best_on": below,
            "better_than_both_on_key_and_acc1": not not_better, "not_better_on": not_better}


def print_goals(goals: dict[str, Any]) -> None:
    print(f"goals: consensus >= better backend on every metric: "
          f"{'yes' if goals['at_least_best_everywhere'] else 'NO ' + str(goals['below_best_on'])}"
          f"; better than both on key and tempo Acc1: "
          f"{'yes' if goals['better_than_both_on_key_and_acc1'] else 'NO ' + str(goals['not_better_on'])}")


# --------------------------------------------------------------------------- the dev set

def report_devset(items: list[Any], k: int = 5, sweep: bool = False,
                  cv_result: tuple[list[ClipAnalysis], list[int], list[Any]] | None = None
                  ) -> dict[str, Any]:
    """Cross-validated scores of the consensus and the backends' own on the development
    set (``items``: :class:`benchmarks.fit_fusion.Parsed`); prints and returns them.
    ``cv_result``: :func:`benchmarks.fit_fusion.cross_validate`'s answer when the caller
    already has it (otherwise it is run with the default fit choices)."""
    from benchmarks.fit_fusion import cross_validate

    t0 = time.process_time()
    cv, folds, fitted = cv_result or cross_validate(items, k)
    fit_s = time.process_time() - t0
    rows: dict[str, list[dict[str, float]]] = {b: [] for b in BACKEND_NAMES}
    conf_rows: dict[str, list[dict[str, tuple[float, float]]]] = {b: [] for b in BACKEND_NAMES}
    per_fold: dict[int, dict[str, list[dict[str, float]]]] = {
        f: {b: [] for b in BACKEND_NAMES} for f in range(k)}
    key_conf_music, key_conf_non = [], []
    for p, est, f in zip(items, cv, folds):
        answers = {"madmom": from_single(p.madmom, 0.0), "essentia": from_single(p.essentia, 0.0),
                   "consensus": est}
        for b, a in answers.items():
            if p.clip.is_music:
                s = score(a, p.clip.truth)
                rows[b].append(s)
                per_fold[f][b].append(s)
            conf_rows[b].append(confidences(a, p.clip.truth, p.clip.is_music))
        (key_conf_music if p.clip.is_music else key_conf_non).append(est.key_confidence)
    results = {b: mean_scores(r) for b, r in rows.items()}
    n = counts(rows["consensus"])
    kinds: dict[str, int] = {}
    for p in items:
        kinds[p.clip.kind] = kinds.get(p.clip.kind, 0) + 1
    title = (f"development set ({len(items)} clips: "
             + ", ".join(f"{kk} {v}" for kk, v in sorted(kinds.items()))
             + f"; {len({p.clip.piece for p in items})} pieces), consensus under "
             f"{k}-fold cross-validation over pieces")
    print_table(title, results, n)
    goals = goal_check(results)
    print_goals(goals)
    eces = {b: ece_table(r) for b, r in conf_rows.items()}
    n_conf = {f: sum(f in r for r in conf_rows["consensus"]) for f in CONF_FIELDS}
    print_ece(eces, n_conf)
    p10 = float(np.percentile(key_conf_music, 10)) if key_conf_music else float("nan")
    worst_non = max(key_conf_non) if key_conf_non else float("nan")
    print(f"key confidence: music 10th percentile {p10:.3f}, median "
          f"{np.median(key_conf_music):.3f}; non-music max {worst_non:.3f} "
          f"({'below' if worst_non < p10 else 'NOT below'} the music's 10th percentile); "
          f"non-music: " + ", ".join(f"{p.clip.id.split(':', 1)[1]} {est.key_confidence:.3f}"
                                     for p, est in zip(items, cv) if not p.clip.is_music))
    print("\nper fold (consensus / madmom / essentia):")
    print(f"{'fold':<6}" + "".join(f"{m:>22}" for m in METRICS))
    fold_out = {}
    for f in range(k):
        res = {b: mean_scores(r) for b, r in per_fold[f].items()}
        fold_out[f] = res
        print(f"{f:<6}" + "".join(
            f"{res['consensus'][m]:>8.3f}/{res['madmom'][m]:.3f}/{res['essentia'][m]:.3f}"
            .rjust(22) for m in METRICS))
    print("\nreliability of the consensus (bin: n, mean confidence -> accuracy):")
    rel_out = {}
    for field in CONF_FIELDS:
        pairs = [r[field] for r in conf_rows["consensus"] if field in r]
        table = reliability([c for c, _ in pairs], [y for _, y in pairs])
        rel_out[field] = table
        print(f"  {field:<7}" + "  ".join(f"[{lo:.1f},{hi:.1f}): {cnt} {mc:.2f}->{acc:.2f}"
                                          for lo, hi, cnt, mc, acc in table))
    # agreement on the unlabelled real recordings
    real = [(p, est) for p, est in zip(items, cv) if p.clip.kind == "real"]
    if real:
        print("\nreal recordings (only the waltz has a label: 3/4):")
        for p, est in real:
            print(f"  {p.clip.id:<72} key {est.key or '-':<9} ({est.key_confidence:.2f}; "
                  f"madmom {p.madmom.key.label}, essentia {p.essentia.key.label})  tempo "
                  f"{est.tempo_bpm:6.1f} ({est.tempo_confidence:.2f}; madmom "
                  f"{p.madmom.tempo.bpm:.1f}, essentia {p.essentia.tempo.bpm:.1f})  meter "
                  f"{est.meter} ({est.meter_confidence:.2f})")
    if cv_result is None:
        print(f"\n(fitting {k} folds took {fit_s:.1f} CPU s)")
    out: dict[str, Any] = {"n_clips": len(items), "kinds": kinds, "results": results,
                           "counts": n, "goals": goals, "ece": eces, "ece_counts": n_conf,
                           "key_conf_music_p10": p10, "key_conf_nonmusic_max": worst_non,
                           "folds": fold_out, "reliability": rel_out,
                           "fold_params": [fp.to_dict() for fp in fitted]}
    if sweep:
        out["sweep"] = sweep_devset(items)
    return out


def sweep_devset(items: list[Any]) -> dict[str, Any]:
    """The alternatives on the development set's labelled music clips."""
    import mir_eval

    from annotate.fusion import KEY_PROFILE_FEATURES, grid_tempo

    music = [p for p in items if p.clip.is_music]
    keyed = [p for p in music if p.clip.truth.key]
    prof = {}
    for name in KEY_PROFILE_FEATURES:
        vals = []
        for p in keyed:
            found = {pp: k for pp, k, _ in p.essentia.key_profiles}
            label = found.get(name, "")
            vals.append(float(mir_eval.key.weighted_score(spell_key(p.clip.truth.key),
                                                          spell_key(label))) if label else 0.0)
        prof[name] = float(np.mean(vals))
    prof["KeyExtractor(shaath, default)"] = float(np.mean([
        mir_eval.key.weighted_score(spell_key(p.clip.truth.key), spell_key(p.essentia.key.label))
        if p.essentia.key.label else 0.0 for p in keyed]))
    prof["madmom CNN"] = float(np.mean([
        mir_eval.key.weighted_score(spell_key(p.clip.truth.key), spell_key(p.madmom.key.label))
        for p in keyed]))
    timed = [p for p in music if p.clip.truth.tempo_bpm > 0]
    tempo = {}
    for name, get in (("madmom", lambda p: p.madmom.tempo.bpm),
                      ("madmom beat grid", lambda p: grid_tempo(p.madmom.beats)),
                      ("essentia multifeature", lambda p: p.essentia.tempo.bpm),
                      ("essentia degara", lambda p: float(p.clip.raw["extra"]["degara_bpm"])),
                      ("essentia PercivalBpmEstimator",
                       lambda p: float(p.clip.raw["extra"]["percival_bpm"]))):
        acc = [tempo_scores(get(p), p.clip.truth.tempo_bpm) for p in timed]
        tempo[name] = {"acc1": float(np.mean([a for a, _ in acc])),
                       "acc2": float(np.mean([b for _, b in acc]))}
    beats = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, get in (("madmom DBN", lambda p: [b.time_s for b in p.madmom.beats]),
                          ("essentia multifeature", lambda p: [b.time_s for b in p.essentia.beats]),
                          ("essentia degara", lambda p: p.clip.raw["extra"]["degara_beats"])):
            beats[name] = float(np.mean([
                mir_eval.beat.f_measure(np.array([b[0] for b in p.clip.truth.beats]),
                                        np.array(get(p), dtype=float))
                for p in music if p.clip.truth.beats]))
    print("\nalternatives on the development set:")
    print("  key (MIREX weighted), each alone: "
          + ", ".join(f"{k_} {v:.3f}" for k_, v in sorted(prof.items(), key=lambda kv: -kv[1])))
    print("  tempo Acc1/Acc2: " + ", ".join(f"{k_} {v['acc1']:.3f}/{v['acc2']:.3f}"
                                           for k_, v in tempo.items()))
    print("  beat F: " + ", ".join(f"{k_} {v:.3f}" for k_, v in beats.items()))
    return {"key_profiles": prof, "tempo": tempo, "beat_f": beats}


# --------------------------------------------------------------------------- synthesized set

class Runner:
    """Runs both backends once per synthesized item, with a JSON cache."""

    def __init__(self, cache: Path | None) -> None:
        self.cache_path = cache
        self.cache: dict[str, Any] = {}
        if cache and cache.exists():
            self.cache = json.loads(cache.read_text())
        self._m: MadmomAnnotator | None = None
        self._e: EssentiaAnnotator | None = None
        self.cpu_s = 0.0

    def raw(self, item: Item) -> dict[str, Any]:
        key = f"{item.id}|{BACKEND_VERSION}"
        entry = self.cache.get(key, {})
        if "madmom" not in entry:
            if self._m is None:
                self._m, self._e = MadmomAnnotator(), EssentiaAnnotator()
            assert self._e is not None
            c = time.process_time()
            entry["madmom"] = self._m(item.audio, item.sr).to_dict()
            entry["essentia"] = self._e(item.audio, item.sr).to_dict()
            self.cpu_s += time.process_time() - c
        self.cache[key] = entry
        return entry

    def save(self) -> None:
        if self.cache_path:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_path.write_text(json.dumps(self.cache))


def evaluate(items: list[Item], runner: Runner, cfg: ConsensusConfig
             ) -> tuple[dict[str, dict[str, float]], dict[str, int], dict[str, dict[str, float]]]:
    rows: dict[str, list[dict[str, float]]] = {b: [] for b in BACKEND_NAMES}
    conf_rows: dict[str, list[dict[str, tuple[float, float]]]] = {b: [] for b in BACKEND_NAMES}
    for item in items:
        raw = runner.raw(item)
        m = BackendAnalysis.from_dict(raw["madmom"])
        e = BackendAnalysis.from_dict(raw["essentia"])
        for b, a in (("madmom", from_single(m, 0.0)), ("essentia", from_single(e, 0.0)),
                     ("consensus", combine(m, e, 0.0, cfg))):
            rows[b].append(score(a, item.truth))
            conf_rows[b].append(confidences(a, item.truth, True))
    return ({b: mean_scores(r) for b, r in rows.items()}, counts(rows["consensus"]),
            {b: ece_table(r) for b, r in conf_rows.items()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", action="store_true",
                    help="score the real-music development set under cross-validation")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="development set cache (python -m benchmarks.devset)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--synth", type=int, default=40, help="number of synthesized songs (0: none)")
    ap.add_argument("--seconds", type=float, default=24.0, help="length of each song")
    ap.add_argument("--seed", type=int, default=4, help="seed of the synthesized songs")
    ap.add_argument("--synth-cache", type=Path, default=DEFAULT_CACHE / "synth.json",
                    help="JSON cache of the synthesized songs' raw backend answers")
    ap.add_argument("--demo", type=Path, default=None, help="demo corpus folder (llark demo-data)")
    ap.add_argument("--sweep", action="store_true", help="also score the alternatives")
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = ap.parse_args(argv)

    report: dict[str, Any] = {}
    if args.real:
        from benchmarks.devset import load_devset
        from benchmarks.fit_fusion import parse

        report["devset"] = report_devset(parse(load_devset(args.cache)), args.folds, args.sweep)
    runner = Runner(args.synth_cache)
    cfg = ConsensusConfig()
    sets: list[tuple[str, list[Item]]] = []
    if args.synth:
        sets.append((f"synthesized (llark.demo.synth seed={args.seed}, {args.synth} songs of "
                     f"{args.seconds:g} s), committed fusion", synth_items(args.synth,
                                                                         args.seconds, args.seed)))
    if args.demo:
        sets.append((f"demo corpus {args.demo}, committed fusion", demo_items(args.demo)))
    for title, items in sets:
        for item in items:
            runner.raw(item)
        runner.save()
        results, n, eces = evaluate(items, runner, cfg)
        print_table(title, results, n)
        goals = goal_check(results)
        print_goals(goals)
        print_ece(eces, {f: len(items) for f in CONF_FIELDS})
        report[title] = {"n": len(items), "results": results, "goals": goals, "ece": eces}
    if runner.cpu_s:
        print(f"\nbackend CPU time this run: {runner.cpu_s:.1f}s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
