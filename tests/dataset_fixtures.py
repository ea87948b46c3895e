"""Tiny on-disk datasets for the reader and ingest tests, written the way the real files are.

Every writer takes a folder and writes the dataset's own metadata files byte-for-byte in the
real layout (MusicCaps: comma CSV with standard quoting; MagnaTagATune: tab-separated, every
field quoted; FMA: pandas' three header lines; MusicNet: plain CSV + sample-index labels), plus
short tones as audio, so the tests do not depend on the demo-corpus generator.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import soundfile as sf

_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
            "mp3": ("MP3", "MPEG_LAYER_III")}


def write_tone(path: Path, seconds: float, sr: int = 16000, channels: int = 1,
               freq_hz: float = 440.0, amplitude: float = 0.5) -> Path:
    """A sine tone (``channels`` identical channels) in the format of ``path``'s extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * sr))) / sr
    mono = (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)   # (n,)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono      # (n, ch) | (n,)
    fmt, subtype = _FORMATS[path.suffix[1:].lower()]
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


def csv_text(rows: list[list[str]], delimiter: str = ",", quote_all: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n",
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- MusicCaps

MUSICCAPS_HEADER = ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list",
                    "caption", "author_id", "is_balanced_subset", "is_audioset_eval"]


def musiccaps_row(ytid: str, start: int, end: int, aspects: str, caption: str,
                  is_eval: bool) -> list[str]:
    return [ytid, str(start), str(end), "/m/0140xf,/m/02cjck", aspects, caption, "4",
            "False", str(is_eval)]


def write_musiccaps(root: Path, rows: list[list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "musiccaps-public.csv").write_text(csv_text([MUSICCAPS_HEADER] + rows))
    return root


# --------------------------------------------------------------------------- MagnaTagATune

MTAT_TAGS = ["no voice", "singer", "guitar", "classical", "slow"]
CLIP_INFO_HEADER = ["clip_id", "track_number", "title", "artist", "album", "url",
                    "segmentStart", "segmentEnd", "original_url", "mp3_path"]


def write_mtat(root: Path, annotations: list[list[str]], clip_info: list[list[str]],
               tags: list[str] = MTAT_TAGS) -> Path:
    """``annotations``: [clip_id, *0/1 per tag, mp3_path]; ``clip_info``: CLIP_INFO_HEADER rows."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations_final.csv").write_text(
        csv_text([["clip_id", *tags, "mp3_path"]] + annotations, "\t", quote_all=True))
    (root / "clip_info_final.csv").write_text(
        csv_text([CLIP_INFO_HEADER] + clip_info, "\t", quote_all=True))
    return root


def mtat_info(cid: str, title: str, artist: str, mp3_path: str) -> list[str]:
    return [cid, "1", title, artist, "An Album", "http://example.org/x", "30", "59",
            "http://example.org/x.mp3", mp3_path]


# --------------------------------------------------------------------------- FMA

FMA_COLUMNS = [("album", "title"), ("album", "tracks"), ("artist", "name"), ("set", "split"),
               ("set", "subset"), ("track", "duration"), ("track", "genre_top"),
               ("track", "genres"), ("track", "genres_all"), ("track", "tags"),
               ("track", "title")]
FMA_GENRES = [["genre_id", "#tracks", "parent", "title", "top_level"],
              ["12", "100", "0", "Rock", "12"], ["21", "50", "0", "Hip-Hop", "21"],
              ["76", "10", "12", "Experimental Pop", "12"], ["15", "40", "0", "Electronic", "15"]]


def fma_row(tid: int, split: str, subset: str, genres: str, title: str = "A Song",
            artist: str = "An Artist", tags: str = "[]", genre_top: str = "Rock",
            duration: str = "") -> list[str]:
    """One tracks.csv row; ``duration`` (``track/duration``, whole seconds of the full track)
    is left empty unless given, so short test tones are not taken for truncated files."""
    values = {("album", "title"): "An Album", ("album", "tracks"): "7",
              ("artist", "name"): artist, ("set", "split"): split, ("set", "subset"): subset,
              ("track", "duration"): duration,
              ("track", "genre_top"): genre_top, ("track", "genres"): genres,
              ("track", "genres_all"): genres, ("track", "tags"): tags, ("track", "title"): title}
    return [str(tid)] + [values[c] for c in FMA_COLUMNS]


def write_fma(root: Path, rows: list[list[str]]) -> Path:
    """tracks.csv exactly as pandas writes a two-level column index (three header lines)."""
    meta = root / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    header = [[""] + [g for g, _ in FMA_COLUMNS], [""] + [c for _, c in FMA_COLUMNS],
              ["track_id"] + [""] * len(FMA_COLUMNS)]
    (meta / "tracks.csv").write_text(csv_text(header + rows))
    (meta / "genres.csv").write_text(csv_text(FMA_GENRES))
    return root


# --------------------------------------------------------------------------- MusicNet

MUSICNET_HEADER = ["id", "composer", "composition", "movement", "ensemble", "source",
                   "transcriber", "catalog_name", "seconds"]
LABEL_HEADER = ["start_time", "end_time", "instrument", "note", "start_beat", "end_beat",
                "note_value"]


def write_musicnet(root: Path, meta_rows: list[list[str]],
                   labels: dict[tuple[str, str], list[list[str]]]) -> Path:
    """``labels``: ``{(split, id): rows}`` written to ``{split}_labels/{id}.csv``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "musicnet_metadata.csv").write_text(csv_text([MUSICNET_HEADER] + meta_rows))
    for (split, rid), rows in labels.items():
        path = root / f"{split}_labels" / f"{rid}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(csv_text([LABEL_HEADER] + rows))
    return root


def musicnet_meta(rid: str, composer: str = "Bach", seconds: int = 10) -> list[str]:
    return [rid, composer, "Cello Suite No 1 in G major", "1. Prelude", "Solo Cello",
            "European Archive", "http://tirolmusic.blogspot.com/", "BWV1007", str(seconds)]
