"""The paper's four evaluation benchmarks in miniature, laid out as they are published, from
synthesized songs of known key, tempo, style and instruments.

``python -m llark.demo.benchmarks --output DIR [--tracks 4] [--seconds 24] [--seed 0]`` writes::

    DIR/giantsteps-key/annotations/key/<n>.LOFI.key         one key per file ("F# minor")
    DIR/giantsteps-key/audio/<n>.LOFI.mp3
    DIR/giantsteps-tempo/annotations_v2/tempo/<n>.LOFI.bpm  one tempo per file
    DIR/giantsteps-tempo/audio/<n>.LOFI.mp3
    DIR/gtzan/genres/<genre>/<genre>.000NN.wav              22.05 kHz mono, as GTZAN
    DIR/medleydb/Audio/<track>/<track>_MIX.wav              + <track>_METADATA.yaml (stems with
                                                            their instrument)
    DIR/medleydb/Annotations/Instrument_Activations/ACTIVATION_CONF/<track>_ACTIVATION_CONF.lab
                                                            (every stem plays throughout: 1.0)

The references are the songs' exact truth: the key and tempo the synthesizer played, the GTZAN
genre of the song's style (pop, rock, jazz, hip hop, classical: the five styles GTZAN shares
with the synthesizer) and the MedleyDB names of its parts. These are NOT the benchmarks: they
exist so that ``llark benchmark`` can be run and checked end to end without the real data
(which is not redistributable and cannot be downloaded here).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import numpy as np
import soundfile as sf

from llark.demo.synth import random_song_spec, render_song

SAMPLE_RATE_HZ: Final[int] = 22050
#: synthesizer style -> GTZAN genre folder (the styles both have)
GTZAN_OF_STYLE: Final[dict[str, str]] = {"pop": "pop", "rock": "rock", "jazz": "jazz",
                                         "hiphop": "hiphop", "classical": "classical"}
#: synthesizer instrument -> MedleyDB's instrument label (others keep their name)
MEDLEYDB_NAMES: Final[dict[str, str]] = {
    "drums": "drum set", "electric guitar": "clean electric guitar", "contrabass": "double bass",
    "synth lead": "synthesizer", "synth pad": "synthesizer", "synth bass": "synthesizer",
    "string ensemble": "string section"}
#: MedleyDB's activation confidence hop: 2048 samples at 44.1 kHz (medleydb's activation_conf)
ACTIVATION_HOP_S: Final[float] = 2048 / 44100


def _song(rng: np.random.Generator, seconds: float, style: str | None = None) -> tuple:
    spec = random_song_spec(rng, seconds, style=style)
    return spec, render_song(spec, SAMPLE_RATE_HZ).audio


def write_giantsteps_key(root: Path, tracks: int, seconds: float, seed: int) -> None:
    rng = np.random.default_rng([seed, 1])
    (root / "annotations" / "key").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    for n in range(tracks):
        spec, audio = _song(rng, seconds)
        stem = f"{1000 + n}.LOFI"
        sf.write(root / "audio" / f"{stem}.mp3", audio, SAMPLE_RATE_HZ)
        (root / "annotations" / "key" / f"{stem}.key").write_text(spec.key_label)


def write_giantsteps_tempo(root: Path, tracks: int, seconds: float, seed: int) -> None:
    rng = np.random.default_rng([seed, 2])
    (root / "annotations_v2" / "tempo").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    for n in range(tracks):
        spec, audio = _song(rng, seconds)
        stem = f"{2000 + n}.LOFI"
        sf.write(root / "audio" / f"{stem}.mp3", audio, SAMPLE_RATE_HZ)
        (root / "annotations_v2" / "tempo" / f"{stem}.bpm").write_text(f"{spec.tempo_bpm:g}\n")


def write_gtzan(root: Path, tracks: int, seconds: float, seed: int) -> None:
    rng = np.random.default_rng([seed, 3])
    styles = list(GTZAN_OF_STYLE)
    for n in range(tracks):
        style = styles[n % len(styles)]
        _, audio = _song(rng, seconds, style)
        genre = GTZAN_OF_STYLE[style]
        folder = root / "genres" / genre
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{genre}.{n:05d}.wav", audio, SAMPLE_RATE_HZ, subtype="PCM_16")


def write_medleydb(root: Path, tracks: int, seconds: float, seed: int) -> None:
    import yaml

    rng = np.random.default_rng([seed, 4])
    for n in range(tracks):
        spec, audio = _song(rng, seconds)
        track = f"Synth_Song{n:02d}"
        folder = root / "Audio" / track
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{track}_MIX.wav", audio, SAMPLE_RATE_HZ, subtype="PCM_16")
        stems = {f"S{k + 1:02d}": {"instrument": MEDLEYDB_NAMES.get(p.instrument, p.instrument),
                                   "component": "melody" if p.role == "melody" else ""}
                 for k, p in enumerate(spec.parts)}
        meta = {"artist": "Synth", "title": f"Song {n}", "genre": spec.style,
                "mix_filename": f"{track}_MIX.wav", "stems": stems, "version": "synthetic"}
        (folder / f"{track}_METADATA.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        # the synthesizer's parts all play from start to end: confidence 1.0 for every stem
        conf = root / "Annotations" / "Instrument_Activations" / "ACTIVATION_CONF"
        conf.mkdir(parents=True, exist_ok=True)
        times = np.arange(0.0, len(audio) / SAMPLE_RATE_HZ, ACTIVATION_HOP_S)
        rows = [f"{t:.4f}," + ",".join("1.0000" for _ in stems) for t in times]
        (conf / f"{track}_ACTIVATION_CONF.lab").write_text(
            "time," + ",".join(stems) + "\n" + "\n".join(rows) + "\n")


WRITERS: Final = {"giantsteps-key": write_giantsteps_key,
                  "giantsteps-tempo": write_giantsteps_tempo,
                  "gtzan": write_gtzan, "medleydb": write_medleydb}


def write_benchmarks(output: str | Path, tracks: int = 4, seconds: float = 24.0,
                     seed: int = 0) -> dict[str, Path]:
    """Write the four miniature layouts under ``output``; returns their folders by name."""
    if tracks < 1 or seconds < 1.0:
        raise ValueError(f"need tracks >= 1 and seconds >= 1, got {tracks}, {seconds}")
    out = Path(output)
    folders = {}
    for name, write in WRITERS.items():
        folders[name] = out / name
        write(folders[name], tracks, seconds, seed)
    return folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m llark.demo.benchmarks",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True)
    p.add_argument("--tracks", type=int, default=4, help="tracks per benchmark")
    p.add_argument("--seconds", type=float, default=24.0, help="length of each track")
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    for name, folder in write_benchmarks(ns.output, ns.tracks, ns.seconds, ns.seed).items():
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
