"""``llark benchmark``: a checkpoint, or the project's annotators, on the paper's benchmarks.

    llark benchmark --name giantsteps-key|giantsteps-tempo|gtzan|medleydb --data-dir DIR
                    --checkpoint RUN_OR_CKPT|annotator [--output DIR] [--limit N] [--start-s S]

Each benchmark is read from its own published files (layouts below); every track is asked the
paper's question for its task (:data:`model.evaluate.TASK_QUESTIONS`) about one clip window
(23.777 s, the window the model was trained on, from the item's own start where it has one,
MedleyDB's paper crop, else from ``--start-s``), and the answers are scored
by :func:`model.evaluate.evaluate`, the scorer of ``llark eval``:

=================  ===========================================  ==================================
name               files read                                   task and metric
=================  ===========================================  ==================================
giantsteps-key     ``annotations/key/<id>.key`` + ``audio/<id>.  key: MIREX weighted score
                   {mp3,wav,flac,ogg}``; or mirdata's            (mir_eval)
                   ``keys_gs+/<id> Artist - Title.txt``
giantsteps-tempo   ``annotations_v2/tempo/<id>.bpm`` (else       tempo: Acc1, Acc2 (4 %)
                   ``annotations/tempo/``), also under mirdata's
                   ``giantsteps-tempo-dataset-<sha>/``, +
                   ``audio/<id>.*``
gtzan              ``genres/<genre>/<genre>.000NN.{wav,au}``     genre: accuracy (10 genres,
                                                                 all tracks, as the paper)
medleydb           ``Audio/<track>/<track>_MIX.wav`` + metadata  instruments: mean per-track F1
                   ``<track>_METADATA.yaml`` (in the track       (the paper's) and micro F1 over
                   folder or in ``Metadata/``) + activations     the paper's coarse classes of
                   ``<track>_ACTIVATION_CONF.lab``               the stems active in its crop
=================  ===========================================  ==================================

``--checkpoint annotator`` answers key and tempo with the consensus annotator (madmom + essentia,
``annotate/``), the source of the training labels, on the same window: its score is the ceiling
those labels set. The annotators estimate no genre and no instruments, so ``gtzan`` and
``medleydb`` have no annotator run (the command says so and exits with status 2).

Every track is accounted for: scored, or skipped with a counted reason (``no audio``,
``no annotation``, ``unreadable annotation``, ``no reference tempo``, ``unreadable audio``,
``analysis failed``, ``no activations``, ``no instruments``) listed in ``skipped.jsonl``.
Outputs in ``--output``: ``predictions.jsonl`` (the format of ``llark infer``, so ``llark eval``
rescores it), ``metrics.json``, ``report.md`` and ``skipped.jsonl``.

mirdata's loaders are not used: mirdata 1.0 fetches the full index of each of these data sets
from the network on first use (only sample indexes ship in the wheel), which cannot run offline;
the folders it downloads are read (above). The paper's protocol and its sources:
docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from llark.errors import AnalysisError, AudioError, AudioTooShortError, ConfigError, LlarkError
from model.evaluate import (TASK_QUESTIONS, Labels, Vocabulary, evaluate, markdown_report,
                            reference_summary)

ANNOTATOR = "annotator"
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".au", ".aiff")
#: GTZAN's ten genre folders, and the name an answer is searched for (hiphop -> "hip hop";
#: the search also finds "hiphop" and "hip-hop").
GTZAN_GENRES = {"blues": "blues", "classical": "classical", "country": "country",
                "disco": "disco", "hiphop": "hip hop", "jazz": "jazz", "metal": "metal",
                "pop": "pop", "reggae": "reggae", "rock": "rock"}

# Skip reasons (counted in metrics.json, one line each in skipped.jsonl).
NO_AUDIO = "no audio"
NO_ANNOTATION = "no annotation"
BAD_ANNOTATION = "unreadable annotation"
BAD_AUDIO = "unreadable audio"
ANALYSIS_FAILED = "analysis failed"
NO_INSTRUMENTS = "no instruments"
NO_TEMPO = "no reference tempo"
NO_ACTIVATIONS = "no activations"

#: The paper's crop (LLark, ``scripts/preprocessing/crop_audio.py``, whose docstring runs it
#: with ``--p 0.0`` for medleydb and giantsteps-key): 30 s from 30 s into a track of at least
#: 60 s, else its first 30 s.
PAPER_CROP_S = 30.0
#: MedleyDB: a stem is active in the crop when its activation confidence exceeds this at some
#: time of the crop (LLark, ``notebooks/eval_instrument_id_medleydb.ipynb``).
ACTIVE_CONFIDENCE = 0.5
#: Where MedleyDB's activation confidence files ``<track>_ACTIVATION_CONF.lab`` are: the data
#: set's release (``Annotations/Instrument_Activations/ACTIVATION_CONF/``), the medleydb
#: package's data folder (``Annotations/Activation_Confidence/``), or beside the mix.
ACTIVATION_DIRS = ("Annotations/Instrument_Activations/ACTIVATION_CONF",
                   "Annotations/Activation_Confidence")
#: MedleyDB's instrument labels -> the paper's coarse instrument classes (LLark,
#: ``notebooks/eval_instrument_id_medleydb.ipynb``, ``medleydb_instruments_mapping``; keys
#: lower-cased). ``None``: not scored (non-instrument labels such as "main system" and
#: "fx/processed sound", sections such as "string section", and instruments without a class).
MEDLEYDB_COARSE: Mapping[str, str | None] = {
    "main system": None, "acoustic guitar": "guitar", "alto saxophone": "saxophone",
    "auxiliary percussion": "drum", "bamboo flute": "flute", "baritone saxophone": "saxophone",
    "bass clarinet": "clarinet", "bass drum": "drum", "bassoon": "bassoon", "brass section": None,
    "cello": "cello", "cello section": "cello", "chimes": None, "claps": None,
    "clarinet": "clarinet", "clarinet section": "clarinet", "clean electric guitar": "guitar",
    "cymbal": "drum", "darbuka": None, "distorted electric guitar": "guitar", "dizi": "flute",
    "double bass": "bass", "drum machine": "drum", "drum set": "drum", "electric bass": "bass",
    "electric piano": "piano", "erhu": None, "female singer": "vocals", "flute": "flute",
    "flute section": "flute", "french horn": "horn", "fx/processed sound": None, "gu": None,
    "guzheng": None, "harp": "harp", "horn section": "horn", "kick drum": "drum",
    "lap steel guitar": "guitar", "liuqin": None, "male singer": "vocals", "mandolin": "guitar",
    "oboe": "oboe", "oud": None, "piano": "piano", "piccolo": "flute", "sampler": None,
    "shaker": None, "snare drum": "drum", "soprano saxophone": "saxophone",
    "string section": None, "synthesizer": "synthesizer", "tabla": None, "tack piano": "piano",
    "tambourine": None, "tenor saxophone": "saxophone", "timpani": None, "trumpet": "trumpet",
    "trumpet section": "trumpet", "tuba": "tuba", "vibraphone": None, "viola": "viola",
    "viola section": "viola", "violin": "violin", "violin section": "violin",
    "vocalists": "vocals", "yangqin": None, "zhongruan": None}
#: The paper's coarse classes: the terms a MedleyDB answer is searched for.
MEDLEYDB_CLASSES = tuple(sorted({c for c in MEDLEYDB_COARSE.values() if c is not None}))


@dataclass(frozen=True)
class Item:
    """One benchmark track: its id, its audio file and the labels its answer is scored on."""

    item_id: str
    audio: Path
    labels: Labels
    #: where this item's window starts (s); None: the command's ``--start-s``
    start_s: float | None = None


@dataclass(frozen=True)
class Skip:
    """A track that is not scored: the counted reason and a message saying what to fix."""

    item_id: str
    reason: str
    message: str


@dataclass(frozen=True)
class BenchmarkData:
    """What a reader found in ``--data-dir``."""

    items: tuple[Item, ...]
    skipped: tuple[Skip, ...]
    vocabulary: Vocabulary
    source: str            # which annotation files the references come from
    #: counted facts about the labels read that change no item's presence (e.g. MedleyDB
    #: labels the paper does not score), reported in metrics.json -> "label_notes"
    notes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark of the paper: its dataset name in the records, task and reader."""

    name: str
    task: str              # a key of TASK_QUESTIONS
    read: Callable[[Path], BenchmarkData]
    annotator_has_it: bool  # do the annotators estimate this task?


# --------------------------------------------------------------------------- readers

def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder: {what}")
    return path


def _audio_by_stem(folder: Path) -> dict[str, Path]:
    """Audio files of ``folder`` by name without the audio suffix (``10089.LOFI``)."""
    if not folder.is_dir():
        return {}
    return {p.name[: -len(p.suffix)]: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES}


class _Unscored(Exception):
    """An annotation that gives no reference: its skip reason and what it says."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Layout:
    """One way a GiantSteps data set is laid out: annotation folders (globs under
    ``--data-dir``, the first that exists is read), their file suffix and the audio folders."""

    name: str
    annotations: tuple[str, ...]
    suffix: str
    audio: tuple[str, ...]


def _track_audio(audio: Mapping[str, Path], stem: str) -> Path | None:
    """The audio of an annotation named ``stem``: the same name (``10089.LOFI``, or mirdata's
    ``10089 Artist - Title``), else the GiantSteps id (``10089``) as ``<id>.LOFI`` or ``<id>``."""
    track_id = stem.split(" ", 1)[0].split(".", 1)[0]
    for name in (stem, f"{track_id}.LOFI", track_id):
        if name in audio:
            return audio[name]
    return None


def _giantsteps(data_dir: Path, name: str, layouts: Sequence[_Layout],
                parse: Callable[[str], Labels]) -> BenchmarkData:
    found = [(layout, d) for layout in layouts for pattern in layout.annotations
             for d in sorted(data_dir.glob(pattern)) if d.is_dir()]
    if not found:
        raise ConfigError(f"{data_dir}: no {name} annotation folder; the layouts read: "
                          + "; ".join(f"{' or '.join(a + '/' for a in lay.annotations)} "
                                      f"(*{lay.suffix}, {lay.name})" for lay in layouts)
                          + ", with the tracks in audio/")
    layout, ann_dir = found[0]
    audio: dict[str, Path] = {}
    for pattern in layout.audio:
        for folder in sorted(data_dir.glob(pattern)):
            audio = {**_audio_by_stem(folder), **audio}
    items: list[Item] = []
    skipped: list[Skip] = []
    used: set[Path] = set()
    for path in sorted(ann_dir.glob(f"*{layout.suffix}")):
        stem = path.name[: -len(layout.suffix)]
        track_audio = _track_audio(audio, stem)
        if track_audio is not None:
            used.add(track_audio)
        item_id = f"{name}:{stem}"
        text = path.read_text(errors="replace").strip()
        try:
            labels = parse(text)
        except _Unscored as exc:
            skipped.append(Skip(item_id, exc.reason, f"{path}: {exc}"))
            continue
        except (LlarkError, ValueError) as exc:
            skipped.append(Skip(item_id, BAD_ANNOTATION, f"{path}: {text[:60]!r} is not read "
                                f"as a {name} reference ({exc})"))
            continue
        if track_audio is None:
            skipped.append(Skip(item_id, NO_AUDIO, f"{path} has no audio ({stem} or its id, "
                                ".mp3/.wav/.flac/.ogg, in " + " or ".join(
                                    a + "/" for a in layout.audio) + "): fetch the audio next "
                                "to the annotations"))
            continue
        items.append(Item(item_id, track_audio, labels))
    for stem, path in audio.items():
        if path not in used:
            skipped.append(Skip(f"{name}:{stem}", NO_ANNOTATION,
                                f"{path} has no annotation in {ann_dir}"))
    return BenchmarkData(tuple(items), tuple(skipped), Vocabulary(),
                         str(ann_dir.relative_to(data_dir)))


def _key_labels(text: str) -> Labels:
    from llark.music import spell_key

    first = text.splitlines()[0].strip() if text else ""
    if not first:
        raise ConfigError("the file is empty")
    return Labels(dataset="giantsteps-key", key=spell_key(first[:1].upper() + first[1:]))


def _tempo_labels(text: str) -> Labels:
    bpm = float(text.split()[0]) if text else float("nan")
    if bpm == 0:
        raise _Unscored(NO_TEMPO, "the tempo is 0.0: GiantSteps gives no tempo for this track")
    if not np.isfinite(bpm) or bpm < 0:
        raise ConfigError(f"tempo must be a positive number of BPM, got {text!r}")
    return Labels(dataset="giantsteps-tempo", tempo_bpm=bpm)


#: GiantSteps Key: the data set's repository, and mirdata's ``giantsteps_key`` (GiantSteps+:
#: ``keys_gs+/<id> Artist - Title.txt`` beside ``audio/<id> Artist - Title.mp3``).
GIANTSTEPS_KEY_LAYOUTS = (
    _Layout("published", ("annotations/key",), ".key", ("audio",)),
    _Layout("mirdata giantsteps_key", ("keys_gs+",), ".txt", ("audio",)))
#: GiantSteps Tempo: the data set's repository (``annotations_v2/`` are the revised tempi, else
#: ``annotations/``), and mirdata's ``giantsteps_tempo`` (the repository unpacked as
#: ``giantsteps-tempo-dataset-<commit>/`` beside ``audio/``).
GIANTSTEPS_TEMPO_LAYOUTS = (
    _Layout("published", ("annotations_v2/tempo", "annotations/tempo"), ".bpm", ("audio",)),
    _Layout("mirdata giantsteps_tempo", ("giantsteps-tempo-dataset-*/annotations_v2/tempo",
                                         "giantsteps-tempo-dataset-*/annotations/tempo"),
            ".bpm", ("audio", "giantsteps-tempo-dataset-*/audio")))


def read_giantsteps_key(data_dir: Path) -> BenchmarkData:
    """GiantSteps Key: ``annotations/key/<id>.key`` (one key, e.g. ``"F minor"``) + ``audio/``,
    or mirdata's ``keys_gs+/<id> Artist - Title.txt`` (the key on the first line)."""
    return _giantsteps(_require_dir(data_dir, "--data-dir must be the GiantSteps key data set"),
                       "giantsteps-key", GIANTSTEPS_KEY_LAYOUTS, _key_labels)


def read_giantsteps_tempo(data_dir: Path) -> BenchmarkData:
    """GiantSteps Tempo: ``annotations_v2/tempo/<id>.bpm`` (the revised tempi; else
    ``annotations/tempo/``), one number each, + ``audio/``; or the same folders under mirdata's
    ``giantsteps-tempo-dataset-<commit>/``. A tempo of 0 (no tempo given) is skipped."""
    return _giantsteps(_require_dir(data_dir, "--data-dir must be the GiantSteps tempo data set"),
                       "giantsteps-tempo", GIANTSTEPS_TEMPO_LAYOUTS, _tempo_labels)


def read_gtzan(data_dir: Path) -> BenchmarkData:
    """GTZAN: ``genres/<genre>/<genre>.000NN.wav`` (or ``.au``); the folder is the label."""
    _require_dir(data_dir, "--data-dir must be the GTZAN data set")
    root = next((data_dir / d for d in ("genres", "genres_original") if (data_dir / d).is_dir()),
                None)
    if root is None:
        raise ConfigError(f"{data_dir}: no genres/ folder (GTZAN's layout: "
                          "genres/<genre>/<genre>.000NN.wav)")
    items: list[Item] = []
    skipped: list[Skip] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            stem = path.name[: -len(path.suffix)]
            item_id = f"gtzan:{stem}"
            if folder.name not in GTZAN_GENRES:
                skipped.append(Skip(item_id, BAD_ANNOTATION, f"{path}: {folder.name!r} is not "
                                    f"one of GTZAN's genres ({', '.join(GTZAN_GENRES)})"))
            elif not stem.startswith(folder.name + "."):
                skipped.append(Skip(item_id, BAD_ANNOTATION, f"{path}: the file name does not "
                                    f"start with its folder's genre {folder.name!r}"))
            else:
                items.append(Item(item_id, path, Labels(dataset="gtzan",
                                                        genres=(GTZAN_GENRES[folder.name],))))
    return BenchmarkData(tuple(items), tuple(skipped),
                         Vocabulary(genres={"gtzan": tuple(GTZAN_GENRES.values())}),
                         str(root.relative_to(data_dir)))


def paper_crop(duration_s: float) -> tuple[float, float]:
    """The paper's crop of a track (``PAPER_CROP_S``): (start, end) in seconds."""
    start = PAPER_CROP_S if duration_s >= 2 * PAPER_CROP_S else 0.0
    return start, min(start + PAPER_CROP_S, duration_s)


def read_activations(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A MedleyDB ``_ACTIVATION_CONF.lab``: CSV with the header ``time,S01,S02,...`` and one
    row per hop (time in s, then each stem's activation confidence in [0, 1]). Returns the
    times and each stem's confidences; raises :class:`ConfigError` when it is not that."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
             if line.strip()]
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    if len(header) < 2 or header[0].lower() != "time":
        found = repr(lines[0][:60]) if lines else "an empty file"
        raise ConfigError(f"expected the header 'time,S01,...', found {found}")
    try:
        table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], float)
    except ValueError as exc:
        raise ConfigError(f"a row is not numbers ({exc})") from exc
    if table.ndim != 2 or table.shape[1] != len(header):
        raise ConfigError(f"rows do not have the header's {len(header)} columns")
    return table[:, 0], {h: table[:, k + 1] for k, h in enumerate(header[1:])}


def _stem_labels(meta: Any) -> dict[str, tuple[str, ...]]:
    """Each stem's instrument labels (lower case) from a ``_METADATA.yaml``."""
    stems = meta.get("stems") if isinstance(meta, dict) else None
    if not isinstance(stems, dict):
        raise ConfigError("no 'stems' mapping")
    out: dict[str, tuple[str, ...]] = {}
    for stem_id, stem in stems.items():
        inst = stem.get("instrument") if isinstance(stem, dict) else None
        names = [inst] if isinstance(inst, str) else inst if isinstance(inst, list) else []
        out[str(stem_id)] = tuple(n.strip().lower() for n in names
                                  if isinstance(n, str) and n.strip())
    return out


def _activation_file(data_dir: Path, folder: Path, track: str) -> Path | None:
    name = f"{track}_ACTIVATION_CONF.lab"
    return next((p for p in [data_dir / d / name for d in ACTIVATION_DIRS] + [folder / name]
                 if p.is_file()), None)


def read_medleydb(data_dir: Path) -> BenchmarkData:
    """MedleyDB as the paper scores it: ``Audio/<track>/<track>_MIX.wav`` heard from the start
    of :func:`paper_crop`; the references are the coarse classes (:data:`MEDLEYDB_COARSE`) of
    the stems (``<track>_METADATA.yaml``, beside the mix or in ``Metadata/``) whose activation
    confidence (``<track>_ACTIVATION_CONF.lab``, :data:`ACTIVATION_DIRS`) exceeds
    :data:`ACTIVE_CONFIDENCE` at some time of the crop."""
    import yaml

    from llark.audio import probe_audio

    audio_root = _require_dir(data_dir, "--data-dir must be the MedleyDB data set") / "Audio"
    if not audio_root.is_dir():
        raise ConfigError(f"{data_dir}: no Audio/ folder (MedleyDB's layout: "
                          "Audio/<track>/<track>_MIX.wav + <track>_METADATA.yaml)")
    items: list[Item] = []
    skipped: list[Skip] = []
    notes: Counter[str] = Counter()
    for folder in sorted(p for p in audio_root.iterdir() if p.is_dir()):
        track = folder.name
        item_id = f"medleydb:{track}"
        mix = folder / f"{track}_MIX.wav"
        meta_path = next((p for p in (folder / f"{track}_METADATA.yaml",
                                      data_dir / "Metadata" / f"{track}_METADATA.yaml")
                          if p.is_file()), None)
        if meta_path is None:
            skipped.append(Skip(item_id, NO_ANNOTATION, f"no {track}_METADATA.yaml in {folder} "
                                f"or {data_dir / 'Metadata'}"))
            continue
        try:
            stems = _stem_labels(yaml.safe_load(meta_path.read_text()))
        except (yaml.YAMLError, ConfigError) as exc:
            skipped.append(Skip(item_id, BAD_ANNOTATION, f"{meta_path}: {exc}"))
            continue
        if not any(stems.values()):
            skipped.append(Skip(item_id, NO_INSTRUMENTS, f"{meta_path} names no stem instrument"))
            continue
        if not mix.is_file():
            skipped.append(Skip(item_id, NO_AUDIO, f"{mix} is missing"))
            continue
        conf_path = _activation_file(data_dir, folder, track)
        if conf_path is None:
            skipped.append(Skip(item_id, NO_ACTIVATIONS, f"no {track}_ACTIVATION_CONF.lab in "
                                + ", ".join(str(data_dir / d) for d in ACTIVATION_DIRS)
                                + f" or {folder}: the paper counts only the stems active in "
                                "the crop"))
            continue
        try:
            duration = probe_audio(str(mix)).duration_s
        except AudioError as exc:
            skipped.append(Skip(item_id, BAD_AUDIO, f"{type(exc).__name__}: {exc}"))
            continue
        try:
            times, confidence = read_activations(conf_path)
        except ConfigError as exc:
            skipped.append(Skip(item_id, BAD_ANNOTATION, f"{conf_path}: {exc}"))
            continue
        start, end = paper_crop(duration)
        in_crop = (times >= start) & (times <= end)
        classes: set[str] = set()
        for stem_id, labels in stems.items():
            if stem_id not in confidence:
                notes["stem without an activation column (not counted)"] += 1
                continue
            if not (confidence[stem_id][in_crop] > ACTIVE_CONFIDENCE).any():
                notes["stem inactive in the crop"] += 1
                continue
            for label in labels:
                if label not in MEDLEYDB_COARSE:
                    notes[f"label outside the paper's mapping: {label}"] += 1
                elif (coarse := MEDLEYDB_COARSE[label]) is None:
                    notes[f"label the paper does not score: {label}"] += 1
                else:
                    classes.add(coarse)
        if not classes:
            skipped.append(Skip(item_id, NO_INSTRUMENTS, f"no stem with a scored instrument is "
                                f"active in {start:g}-{end:g} s ({conf_path})"))
            continue
        items.append(Item(item_id, mix, Labels(dataset="medleydb",
                                               instruments=tuple(sorted(classes))), start_s=start))
    return BenchmarkData(tuple(items), tuple(skipped),
                         Vocabulary(instruments={"medleydb": MEDLEYDB_CLASSES}),
                         "Audio/*/*_METADATA.yaml + *_ACTIVATION_CONF.lab (paper's coarse "
                         "classes, stems active in the crop)", dict(sorted(notes.items())))


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for b in (
        Benchmark("giantsteps-key", "key", read_giantsteps_key, annotator_has_it=True),
        Benchmark("giantsteps-tempo", "tempo", read_giantsteps_tempo, annotator_has_it=True),
        Benchmark("gtzan", "genre", read_gtzan, annotator_has_it=False),
        Benchmark("medleydb", "instruments", read_medleydb, annotator_has_it=False),
    )}


# --------------------------------------------------------------------------- answerers

class Answerer(Protocol):
    """Answers the benchmark's question about items: ``prepare`` reads one item (raising a
    typed :class:`LlarkError` for audio it cannot use), ``answer`` answers prepared items."""

    label: str

    def prepare(self, item: Item, task: str) -> Any: ...

    def answer(self, prepared: Sequence[Any], task: str) -> list[str]: ...


def _check_window(audio: Path, start_s: float) -> float:
    """The track's duration; a track that ends before ``start_s`` is skipped, not fatal."""
    from llark.audio import probe_audio

    duration = probe_audio(str(audio)).duration_s
    if start_s >= duration:
        raise AudioTooShortError(f"{audio} is {duration:.2f} s long: the window at --start-s "
                                 f"{start_s} is past its end")
    return duration


def _item_start(item: Item, start_s: float) -> float:
    """Where ``item``'s window starts: its own start (MedleyDB's paper crop), else ``start_s``."""
    return start_s if item.start_s is None else item.start_s


class ModelAnswerer:
    """A checkpoint: its encoder makes the window's frames, the model answers the question."""

    def __init__(self, checkpoint: str, start_s: float, device: str, dtype: str,
                 encoder_name: str, max_new_tokens: int) -> None:
        import torch

        from embed.registry import build_encoder, encoder_info
        from model.checkpoint import CheckpointError
        from model.infer import (GenerationConfig, _system_prompt, checkpoint_encoder,
                                 load_for_inference)
        from model.storage import fetch_checkpoint

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" \
            else device
        try:
            # a bucket's checkpoint is downloaded (cached), as llark infer does
            self.model, self.tokenizer, self.spec = load_for_inference(
                fetch_checkpoint(checkpoint), self.device, getattr(torch, dtype))
        except CheckpointError as exc:
            raise ConfigError(f"--checkpoint {checkpoint}: {exc} (or pass --checkpoint "
                              f"{ANNOTATOR} to score the annotators)") from exc
        name = checkpoint_encoder(self.spec, encoder_name)
        self.encoder = build_encoder(name, device=device)
        self.sample_rate_hz = encoder_info(name).sample_rate_hz
        self.start_s = start_s
        self.gen = GenerationConfig(max_new_tokens=max_new_tokens,
                                    system_prompt=_system_prompt(checkpoint),
                                    audio_pool=self.spec.audio_pool)
        self.label = f"checkpoint {checkpoint} ({self.spec.lm}, {name} frames, greedy)"

    def prepare(self, item: Item, task: str) -> Any:
        from model.infer import Request, encode_window

        start = _item_start(item, self.start_s)
        _check_window(item.audio, start)
        frames = encode_window(item.audio, self.encoder, self.sample_rate_hz, start)
        return Request(item.item_id, task, TASK_QUESTIONS[task], frames, labels=item.labels)

    def answer(self, prepared: Sequence[Any], task: str) -> list[str]:
        from model.infer import generate

        return generate(self.model, self.tokenizer, prepared, self.gen, self.device)


class AnnotatorAnswerer:
    """The consensus annotator (``annotate/``) on the same window: key as ``"F# minor"``, tempo
    as ``"121.3 BPM"`` (``""`` when it finds none, which scores 0)."""

    def __init__(self, start_s: float, backend: str = "consensus") -> None:
        from annotate.annotator import ANALYSIS_RATE_HZ, build_annotator

        self.annotate = build_annotator(backend)
        self.sample_rate_hz = ANALYSIS_RATE_HZ
        self.start_s = start_s
        self.label = f"the {backend} annotator (annotate/, the training labels' source)"

    def prepare(self, item: Item, task: str) -> Any:
        from llark.audio import load_audio
        from llark.windows import DEFAULT_CLIP_SECONDS

        start = _item_start(item, self.start_s)
        duration = _check_window(item.audio, start)
        wave, sr = load_audio(str(item.audio), self.sample_rate_hz, start,
                              min(start + DEFAULT_CLIP_SECONDS, duration))
        result = self.annotate(wave, sr)
        if task == "key":
            return result.key
        return f"{result.tempo_bpm:.2f} BPM" if result.tempo_bpm > 0 else ""

    def answer(self, prepared: Sequence[Any], task: str) -> list[str]:
        return [str(p) for p in prepared]


# --------------------------------------------------------------------------- running

@dataclass(frozen=True)
class BenchmarkResult:
    """Records (``llark infer``'s format), skips and the metrics of one benchmark run."""

    records: tuple[dict[str, Any], ...]
    skipped: tuple[Skip, ...]
    metrics: dict[str, Any]


def _prediction_record(item: Item, task: str, answer: str) -> dict[str, Any]:
    return {"clip_id": item.item_id, "task": task, "question": TASK_QUESTIONS[task],
            "prediction": answer, "reference": "", "conversation_id": "", "family": "",
            "labels": asdict(item.labels), "audio": str(item.audio)}


def run_benchmark(bench: Benchmark, data: BenchmarkData, answerer: Answerer, limit: int = 0,
                  batch_size: int = 8, progress: Callable[[int], None] | None = None,
                  ablations: Sequence[str] = (), annotator: Answerer | None = None,
                  seed: int = 0) -> BenchmarkResult:
    """Ask ``answerer`` about (the first ``limit`` of) ``data``'s items and score the answers.

    ``ablations`` (``zero``, ``shuffle``) ask the same model again without the audio
    (:func:`model.infer.ablate`); ``annotator`` answers the same items as the labels' ceiling.
    Both land in ``metrics["references"]`` beside the best constant answers."""
    items = data.items[:limit] if limit else data.items
    records, skipped, asked = _ask(bench, items, answerer, batch_size, progress)
    skipped = list(data.skipped) + skipped
    if ablations:
        from model.infer import ablate

        for how in dict.fromkeys(ablations):
            ablated = ablate([p for _, p in asked], how, seed)
            for start in range(0, len(ablated), batch_size):
                chunk = ablated[start:start + batch_size]
                answers = answerer.answer(chunk, bench.task)
                records += [{**_prediction_record(item, bench.task, a),
                             "condition": r.condition}
                            for (item, _), r, a in zip(asked[start:], chunk, answers)]
    metrics, _ = evaluate(records, vocabulary=data.vocabulary, meteor=False)
    if annotator is not None:
        done = {item.item_id for item, _ in asked}
        ann_records, _, _ = _ask(bench, [i for i in items if i.item_id in done], annotator,
                                 batch_size, None)
        metrics.setdefault("references", {})["annotator"] = evaluate(
            ann_records, vocabulary=data.vocabulary, meteor=False)[0]
    metrics.update({
        "benchmark": bench.name, "task": bench.task, "answerer": answerer.label,
        "reference_source": data.source, "n_tracks": len(data.items) + len(data.skipped),
        "n_asked": len(items), "n_not_asked_limit": len(data.items) - len(items),
        "skipped": dict(sorted(Counter(s.reason for s in skipped).items())),
        "label_notes": dict(data.notes)})
    return BenchmarkResult(tuple(records), tuple(skipped), metrics)


def _ask(bench: Benchmark, items: Sequence[Item], answerer: Answerer, batch_size: int,
         progress: Callable[[int], None] | None
         ) -> tuple[list[dict[str, Any]], list[Skip], list[tuple[Item, Any]]]:
    """(records, skips, the (item, prepared) pairs answered) of one pass over ``items``."""
    records: list[dict[str, Any]] = []
    skipped: list[Skip] = []
    asked: list[tuple[Item, Any]] = []
    for start in range(0, len(items), batch_size):
        chunk: list[tuple[Item, Any]] = []
        for item in items[start:start + batch_size]:
            try:
                chunk.append((item, answerer.prepare(item, bench.task)))
            except AudioError as exc:
                skipped.append(Skip(item.item_id, BAD_AUDIO, f"{type(exc).__name__}: {exc}"))
            except AnalysisError as exc:
                skipped.append(Skip(item.item_id, ANALYSIS_FAILED, str(exc)))
        answers = answerer.answer([p for _, p in chunk], bench.task) if chunk else []
        records += [_prediction_record(item, bench.task, a) for (item, _), a in zip(chunk, answers)]
        asked += chunk
        if progress is not None:
            progress(len(items[start:start + batch_size]))
    return records, skipped, asked


def _report(result: BenchmarkResult, data_dir: Path) -> str:
    m = result.metrics
    head = markdown_report(m, f"{m['benchmark']} ({data_dir})",
                           note=f"Answers by {m['answerer']}; references from the benchmark's "
                                f"own files (`{m['reference_source']}`); genres and instruments are "
                                "searched among the benchmark's whole label set.")
    lines = [head.rstrip(), "",
             f"{m['n_tracks']} tracks found, {m['n_asked']} asked"
             + (f" (--limit left {m['n_not_asked_limit']} out)" if m["n_not_asked_limit"] else "")
             + "; skipped: " + (", ".join(f"{r} {n}" for r, n in m["skipped"].items()) or "none")
             + " (skipped.jsonl says which and why).", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llark benchmark", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--name", required=True, choices=tuple(BENCHMARKS))
    p.add_argument("--data-dir", required=True, help="the benchmark's files, as published")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint folder or training --output, or 'annotator' for the "
                        "project's consensus annotator (key and tempo only)")
    p.add_argument("--output", default="", help="folder for predictions.jsonl, metrics.json, "
                   "report.md, skipped.jsonl (default: benchmark-<name>)")
    p.add_argument("--limit", type=int, default=0, help="ask at most this many tracks (0 = all)")
    p.add_argument("--start-s", type=float, default=0.0,
                   help="where the clip window starts in each track (seconds)")
    p.add_argument("--encoder", default="",
                   help="registry name of the encoder (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--ablate-audio", action="append", default=[], choices=("shuffle", "zero"),
                   help="also ask the checkpoint with the audio taken away: 'zero' = all frames "
                        "0, 'shuffle' = another track's frames (repeatable)")
    p.add_argument("--annotator-reference", action="store_true",
                   help="also score the consensus annotator on the same tracks (key and tempo "
                        "benchmarks): the ceiling the training labels allow")
    return p


def _answerer(ns: argparse.Namespace) -> Answerer:
    if ns.checkpoint == ANNOTATOR:
        return AnnotatorAnswerer(ns.start_s)
    return ModelAnswerer(ns.checkpoint, ns.start_s, ns.device, ns.dtype, ns.encoder,
                         ns.max_new_tokens)


def run(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    ns = build_parser().parse_args(argv)
    bench = BENCHMARKS[ns.name]
    if ns.limit < 0 or ns.batch_size < 1 or ns.max_new_tokens < 1 or ns.start_s < 0:
        print("llark benchmark: error: --limit and --start-s must be >= 0, --batch-size and "
              "--max-new-tokens >= 1", file=sys.stderr)
        return 2
    if ns.checkpoint == ANNOTATOR and not bench.annotator_has_it:
        print(f"llark benchmark: error: the annotators estimate key and tempo only; {bench.name}"
              f" ({bench.task}) has no annotator to score: the training data's {bench.task} "
              "labels come from the datasets' metadata, not from annotate/", file=sys.stderr)
        return 2
    try:
        data = bench.read(Path(ns.data_dir))
        if not data.items:
            raise ConfigError(f"{ns.data_dir}: no {bench.name} track to ask about "
                              f"({len(data.skipped)} skipped: "
                              + ", ".join(f"{r} {n}" for r, n in
                                          Counter(s.reason for s in data.skipped).items())
                              + ")")
        answerer = _answerer(ns)
        if ns.ablate_audio and ns.checkpoint == ANNOTATOR:
            raise ConfigError("--ablate-audio needs a model checkpoint, not the annotator")
        if ns.annotator_reference and not bench.annotator_has_it:
            raise ConfigError(f"--annotator-reference: the annotators estimate key and tempo "
                              f"only, not {bench.task}")
        annotator = AnnotatorAnswerer(ns.start_s) if ns.annotator_reference else None
    except (LlarkError, FileNotFoundError) as exc:
        print(f"llark benchmark: error: {exc}", file=sys.stderr)
        return 2
    n = min(ns.limit, len(data.items)) if ns.limit else len(data.items)
    bar = tqdm(total=n, desc=bench.name, file=sys.stderr)
    result = run_benchmark(bench, data, answerer, ns.limit, ns.batch_size, bar.update,
                           ablations=ns.ablate_audio, annotator=annotator)
    bar.close()
    out = Path(ns.output or f"benchmark-{bench.name}")
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "predictions.jsonl", result.records)
    _write_jsonl(out / "skipped.jsonl", (asdict(s) for s in result.skipped))
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2, sort_keys=True))
    (out / "report.md").write_text(_report(result, Path(ns.data_dir)))
    m = result.metrics
    score = {"key": ("weighted_score", "MIREX weighted score"), "tempo": ("acc1", "Acc1"),
             "genre": ("accuracy", "accuracy"), "instruments": ("micro_f1", "micro F1")}
    key, name = score[bench.task]
    extra = (f", Acc2 {m['tempo']['acc2']:.3f}{reference_summary(m, 'tempo', 'acc2')}"
             if bench.task == "tempo" and "tempo" in m else "")
    value = (f"{m[bench.task][key]:.3f}{reference_summary(m, bench.task, key)}"
             if bench.task in m else "n/a (nothing scored)")
    print(f"llark benchmark: {bench.name}: {m['n_scored']} of {m['n_tracks']} tracks scored by "
          f"{answerer.label}: {name} {value}{extra}; skipped {sum(m['skipped'].values())} "
          f"-> {out / 'report.md'}")
    return 0


def _write_jsonl(path: Path, rows: Iterator[dict[str, Any]] | Sequence[dict[str, Any]]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(run())
