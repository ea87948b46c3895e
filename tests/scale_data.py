"""FMA-shaped metadata at any size, for the job-size tests and ``benchmarks/scale.py``.

``tracks.csv`` has FMA's real header (its 52 columns under the four groups album / artist /
set / track, three header lines as pandas writes them) and rows with varied text (titles,
artist names, bios, tags drawn at random from a word list), so the per-row payload looks like
the real file's (about 600 bytes a row). Audio is either absent (every task dead-letters as
``AudioNotFoundError`` at the worker: the cheapest way to push N records through the job) or
one tiny mp3 hard-linked under every track's path (each task decodes a real file).
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path

import numpy as np
import soundfile as sf

FMA_HEADER: tuple[tuple[str, str], ...] = tuple(
    [("album", c) for c in ("comments", "date_created", "date_released", "engineer",
                            "favorites", "id", "information", "listens", "producer", "tags",
                            "title", "tracks", "type")]
    + [("artist", c) for c in ("active_year_begin", "active_year_end", "associated_labels",
                               "bio", "comments", "date_created", "favorites", "id",
                               "latitude", "location", "longitude", "members", "name",
                               "related_projects", "tags", "website", "wikipedia_page")]
    + [("set", "split"), ("set", "subset")]
    + [("track", c) for c in ("bit_rate", "comments", "composer", "date_created",
                              "date_recorded", "duration", "favorites", "genre_top", "genres",
                              "genres_all", "information", "interest", "language_code",
                              "license", "listens", "lyricist", "number", "publisher", "tags",
                              "title")])

GENRES = [("1", "Avant-Garde"), ("2", "International"), ("3", "Blues"), ("4", "Jazz"),
          ("5", "Classical"), ("8", "Old-Time / Historic"), ("9", "Country"), ("10", "Pop"),
          ("12", "Rock"), ("13", "Easy Listening"), ("14", "Soul-RnB"), ("15", "Electronic"),
          ("17", "Folk"), ("20", "Spoken"), ("21", "Hip-Hop"), ("38", "Experimental")]
WORDS = ("night light river echo static velvet paper engine garden signal orbit hollow "
         "amber winter drift neon silver crown ghost harbor lantern mirror ocean pulse "
         "quiet radio shadow thunder violet wire atlas bloom cinder dusk ember fable "
         "glass halo iris jade kite lumen mosaic nectar opal prism quartz").split()
SPLIT_WEIGHTS = (("training", 8), ("validation", 1), ("test", 1))


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def fma_row(tid: int, rng: random.Random, duration_s: float) -> list[str]:
    """One data row of ``tracks.csv`` (values in FMA_HEADER order, track_id first)."""
    genre_ids = rng.sample([g for g, _ in GENRES], rng.randint(1, 3))
    names = dict(GENRES)
    split = rng.choices([s for s, _ in SPLIT_WEIGHTS], [w for _, w in SPLIT_WEIGHTS])[0]
    v = {
        ("album", "title"): _words(rng, 1, 4).title(), ("album", "tracks"): str(rng.randint(1, 20)),
        ("album", "id"): str(tid // 7), ("album", "type"): "Album",
        ("album", "information"): f"<p>{_words(rng, 5, 30)}</p>",
        ("album", "date_created"): "2008-11-26 01:44:45", ("album", "listens"): str(rng.randint(0, 9999)),
        ("album", "tags"): repr([_words(rng, 1, 1) for _ in range(rng.randint(0, 3))]),
        ("artist", "name"): _words(rng, 1, 3).title(), ("artist", "id"): str(tid // 11),
        ("artist", "bio"): f"<p>{_words(rng, 10, 60)}</p>", ("artist", "location"): _words(rng, 1, 2),
        ("artist", "website"): f"http://{rng.choice(WORDS)}.example.org",
        ("artist", "tags"): repr([_words(rng, 1, 1) for _ in range(rng.randint(0, 4))]),
        ("set", "split"): split, ("set", "subset"): rng.choice(("small", "medium", "large")),
        ("track", "bit_rate"): "320000", ("track", "duration"): f"{duration_s:g}",
        ("track", "genre_top"): names[genre_ids[0]], ("track", "genres"): "[" + ", ".join(genre_ids) + "]",
        ("track", "genres_all"): "[" + ", ".join(genre_ids) + "]",
        ("track", "information"): _words(rng, 0, 12), ("track", "interest"): str(rng.randint(0, 99999)),
        ("track", "language_code"): "en", ("track", "license"): "Attribution-NonCommercial-ShareAlike",
        ("track", "listens"): str(rng.randint(0, 99999)), ("track", "number"): str(rng.randint(1, 20)),
        ("track", "tags"): repr([_words(rng, 1, 1) for _ in range(rng.randint(0, 5))]),
        ("track", "title"): _words(rng, 1, 5).title(),
    }
    return [str(tid)] + [v.get(col, "") for col in FMA_HEADER]


def audio_rel(tid: int) -> str:
    return f"{tid:06d}"[:3] + f"/{tid:06d}.mp3"


def write_fma_shaped(root: Path, n: int, seed: int = 0, tiny_audio_s: float = 0.0) -> Path:
    """``root/fma_metadata/{tracks,genres}.csv`` with ``n`` tracks and ``root/fma_full/``.

    ``tiny_audio_s`` > 0: one mp3 of that length, hard-linked as every track's file; 0: no
    audio files at all.
    """
    rng = random.Random(seed)
    meta = root / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    audio = root / "fma_full"
    audio.mkdir(exist_ok=True)
    duration = tiny_audio_s if tiny_audio_s > 0 else 30.0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([""] + [g for g, _ in FMA_HEADER])
    w.writerow([""] + [c for _, c in FMA_HEADER])
    w.writerow(["track_id"] + [""] * len(FMA_HEADER))
    tids = [2 + 3 * k for k in range(n)]
    for tid in tids:
        w.writerow(fma_row(tid, rng, duration))
    (meta / "tracks.csv").write_text(buf.getvalue())
    g = io.StringIO()
    gw = csv.writer(g, lineterminator="\n")
    gw.writerow(["genre_id", "#tracks", "parent", "title", "top_level"])
    for gid, name in GENRES:
        gw.writerow([gid, "100", "0", name, gid])
    (meta / "genres.csv").write_text(g.getvalue())
    if tiny_audio_s > 0:
        sr = 22050
        t = np.arange(int(tiny_audio_s * sr)) / sr
        tone = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        master = root / "tiny.mp3"
        sf.write(master, tone, sr, format="MP3")
        for tid in tids:
            dest = audio / audio_rel(tid)
            dest.parent.mkdir(exist_ok=True)
            os.link(master, dest)
    return root
