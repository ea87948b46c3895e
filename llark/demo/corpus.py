"""Write a small synthetic demo corpus laid out exactly as the real datasets are on disk.

``python -m llark.demo.corpus --output DIR [--seed N] [--scale small|tiny]``
(also ``llark demo-data``) renders songs with :mod:`llark.demo.synth` and writes:

```
DIR/
  musiccaps/musiccaps-public.csv           the real MusicCaps CSV (9 columns, QUOTE_MINIMAL)
  musiccaps/audio/{ytid}.{wav|mp3|ogg}     some files are the whole "video" (40 s), others
                                           already the 10 s clip
  magnatagatune/annotations_final.csv      TAB-separated, every field double-quoted,
  magnatagatune/clip_info_final.csv        "clip_id" + 188 tags + "mp3_path"
  magnatagatune/{0..9,a..f}/*.mp3          16 kHz mono mp3, 29.1 s
  fma/fma_metadata/tracks.csv              three header lines, as the real file
  fma/fma_metadata/genres.csv
  fma/fma_small/{000..155}/{tid:06d}.mp3   44.1 kHz stereo mp3, 30 s
  musicnet/musicnet_metadata.csv
  musicnet/{train,test}_data/{id}.wav      44.1 kHz mono
  musicnet/{train,test}_labels/{id}.csv    note labels, times in samples at 44.1 kHz
  folder/*.{wav,flac,ogg}, folder/metadata.csv
  ground_truth.json                        exact truth for every audio file + broken entries
```

Deliberately broken entries (listed under ``"broken"`` in ``ground_truth.json``): a MusicCaps
row without audio, a corrupt MagnaTagATune mp3, an FMA track listed but absent, an FMA mp3 of
0 bytes, a MusicNet id without its wav, a folder metadata row naming a missing file.

The corpus is written to a temporary sibling folder and renamed into place at the end; an
existing ``DIR`` is replaced only when it is empty or is itself a demo corpus (holds a
``ground_truth.json``). Everything is deterministic given ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Sequence
from urllib.parse import quote

import numpy as np
import soundfile as sf

from llark import storage
from llark.demo.synth import (
    Part,
    SongAudio,
    SongSpec,
    random_song_spec,
    render_song,
)
from llark.splits import DEFAULT_SPLIT, split_of

GROUND_TRUTH_NAME: Final[str] = "ground_truth.json"
GROUND_TRUTH_VERSION: Final[int] = 1

# Number of good (decodable, listed) items per dataset.
SCALES: Final[dict[str, dict[str, int]]] = {
    "small": {"musiccaps": 6, "magnatagatune": 6, "fma": 6, "musicnet_train": 4,
              "musicnet_test": 2, "folder": 4},
    "tiny": {"musiccaps": 2, "magnatagatune": 3, "fma": 2, "musicnet_train": 1,
             "musicnet_test": 1, "folder": 3},
    "medium": {"musiccaps": 80, "magnatagatune": 80, "fma": 16, "musicnet_train": 24,
               "musicnet_test": 6, "folder": 4},
}

MUSICCAPS_COLUMNS: Final[tuple[str, ...]] = (
    "ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
    "author_id", "is_balanced_subset", "is_audioset_eval",
)

# The 188 tag columns of MagnaTagATune's annotations_final.csv, in the real file's order.
MTAT_TAGS: Final[tuple[str, ...]] = (
    "no voice", "singer", "duet", "plucking", "hard rock", "world", "bongos", "harpsichord",
    "female singing", "clasical", "sitar", "chorus", "female opera", "male vocal", "vocals",
    "clarinet", "heavy", "silence", "beats", "men", "woodwind", "funky", "no strings", "chimes",
    "foreign", "no piano", "horns", "classical", "female", "no voices", "soft rock", "eerie",
    "spacey", "jazz", "guitar", "quiet", "no beat", "banjo", "electric", "solo", "violins",
    "folk", "female voice", "wind", "happy", "ambient", "new age", "synth", "funk", "no singing",
    "middle eastern", "trumpet", "percussion", "drum", "airy", "voice", "repetitive", "birds",
    "space", "strings", "bass", "harpsicord", "medieval", "male voice", "girl", "keyboard",
    "acoustic", "loud", "classic", "string", "drums", "electronic", "not classical", "chanting",
    "no violin", "not rock", "no guitar", "organ", "no vocal", "talking", "choral", "weird",
    "opera", "soprano", "fast", "acoustic guitar", "electric guitar", "male singer",
    "man singing", "classical guitar", "country", "violin", "electro", "reggae", "tribal",
    "dark", "male opera", "no vocals", "irish", "electronica", "horn", "operatic", "arabic",
    "lol", "low", "instrumental", "trance", "chant", "strange", "drone", "synthesizer",
    "heavy metal", "modern", "disco", "bells", "man", "deep", "fast beat", "industrial", "hard",
    "harp", "no flute", "jungle", "pop", "lute", "female vocal", "oboe", "mellow", "orchestral",
    "viola", "light", "echo", "piano", "celtic", "male vocals", "orchestra", "eastern", "old",
    "flutes", "punk", "spanish", "sad", "sax", "slow", "male", "blues", "vocal", "indian",
    "no singer", "scary", "india", "woman", "woman singing", "rock", "dance", "piano solo",
    "guitars", "no drums", "jazzy", "singing", "cello", "calm", "female vocals", "voices",
    "different", "techno", "clapping", "house", "monks", "flute", "not opera", "not english",
    "oriental", "beat", "upbeat", "soft", "noise", "choir", "female singer", "rap", "metal",
    "hip hop", "quick", "water", "baroque", "women", "fiddle", "english",
)
assert len(MTAT_TAGS) == 188 and len(set(MTAT_TAGS)) == 188

MTAT_CLIP_INFO_COLUMNS: Final[tuple[str, ...]] = (
    "clip_id", "track_number", "title", "artist", "album", "url", "segmentStart", "segmentEnd",
    "original_url", "mp3_path",
)

# The real tracks.csv column MultiIndex (52 columns), in order.
FMA_TRACK_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    *(("album", c) for c in (
        "comments", "date_created", "date_released", "engineer", "favorites", "id",
        "information", "listens", "producer", "tags", "title", "tracks", "type")),
    *(("artist", c) for c in (
        "active_year_begin", "active_year_end", "associated_labels", "bio", "comments",
        "date_created", "favorites", "id", "latitude", "location", "longitude", "members", "name",
        "related_projects", "tags", "website", "wikipedia_page")),
    ("set", "split"), ("set", "subset"),
    *(("track", c) for c in (
        "bit_rate", "comments", "composer", "date_created", "date_recorded", "duration",
        "favorites", "genre_top", "genres", "genres_all", "information", "interest",
        "language_code", "license", "listens", "lyricist", "number", "publisher", "tags",
        "title")),
)

# genre_id -> (#tracks, parent, title, top_level), a slice of the real genres.csv.
FMA_GENRES: Final[dict[int, tuple[int, int, str, int]]] = {
    1: (8693, 38, "Avant-Garde", 38),
    2: (5271, 0, "International", 2),
    3: (1752, 0, "Blues", 3),
    4: (4126, 0, "Jazz", 4),
    5: (4106, 0, "Classical", 5),
    9: (1987, 0, "Country", 9),
    10: (13845, 0, "Pop", 10),
    12: (32923, 0, "Rock", 12),
    15: (34413, 0, "Electronic", 15),
    17: (12706, 0, "Folk", 17),
    21: (8389, 0, "Hip-Hop", 21),
    25: (9261, 12, "Punk", 12),
    26: (1952, 12, "Post-Rock", 12),
    27: (6041, 12, "Lo-Fi", 12),
    38: (38154, 0, "Experimental", 38),
    42: (2251, 15, "Ambient Electronic", 15),
    66: (6717, 12, "Indie-Rock", 12),
    76: (1919, 10, "Experimental Pop", 10),
    103: (4080, 17, "Singer-Songwriter", 17),
    107: (1376, 1235, "Ambient", 1235),
    181: (1596, 15, "Techno", 15),
    182: (2044, 15, "House", 15),
    539: (1313, 21, "Rap", 21),
    542: (1302, 21, "Alternative Hip-Hop", 21),
    1235: (14938, 0, "Instrumental", 1235),
}

# style -> (genre_top, [genre ids of the track])
_FMA_STYLE_GENRES: Final[dict[str, tuple[str, list[int]]]] = {
    "pop": ("Pop", [76, 10]),
    "rock": ("Rock", [66]),
    "electronic": ("Electronic", [181]),
    "folk": ("Folk", [103]),
    "hiphop": ("Hip-Hop", [542]),
    "ambient": ("Instrumental", [107]),
    "jazz": ("Jazz", [4]),
    "classical": ("Classical", [5]),
}

MUSICNET_COLUMNS: Final[tuple[str, ...]] = (
    "id", "composer", "composition", "movement", "ensemble", "source", "transcriber",
    "catalog_name", "seconds",
)
MUSICNET_LABEL_COLUMNS: Final[tuple[str, ...]] = (
    "start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value",
)
MUSICNET_SAMPLE_RATE_HZ: Final[int] = 44100

_STYLE_WORDS: Final[dict[str, str]] = {
    "pop": "pop song", "rock": "rock song", "electronic": "electronic dance track",
    "folk": "folk song", "jazz": "jazz tune", "hiphop": "hip hop instrumental",
    "ambient": "ambient piece", "classical": "classical piece",
}
_STYLE_GENRE_ASPECT: Final[dict[str, str]] = {
    "pop": "pop", "rock": "rock", "electronic": "electronic dance music", "folk": "folk",
    "jazz": "jazz", "hiphop": "hip hop", "ambient": "ambient", "classical": "classical music",
}
_ROLE_PHRASES: Final[dict[str, str]] = {
    "bass": "{a} {name} bass line", "chords": "{name} chords", "arpeggio": "{name} arpeggios",
    "melody": "{a} {name} melody", "counter": "{a} {name} inner voice",
}
# Plausible AudioSet ontology ids.
_AUDIOSET_MIDS: Final[dict[str, str]] = {
    "music": "/m/04rlf", "piano": "/m/05r5c", "electric piano": "/m/01s0ps", "organ": "/m/013y1f",
    "synth pad": "/m/0l14jd", "synth lead": "/m/0l14jd", "synth bass": "/m/0l14jd",
    "string ensemble": "/m/0l14_3", "violin": "/m/07y_7", "viola": "/m/07y_7", "cello": "/m/01xqw",
    "contrabass": "/m/02fsn", "flute": "/m/0l14j_", "clarinet": "/m/01wy6", "oboe": "/m/05kms",
    "bassoon": "/m/01c3q1", "french horn": "/m/0319l", "trumpet": "/m/07gql",
    "acoustic guitar": "/m/042v_gx", "electric guitar": "/m/02sgy", "harp": "/m/03m5k",
    "electric bass": "/m/018vs", "drums": "/m/02hnl",
    "pop": "/m/064t9", "rock": "/m/06by7", "electronic": "/m/02lkt", "folk": "/m/02w4v",
    "jazz": "/m/03_d0", "hiphop": "/m/0glt670", "ambient": "/m/0140xf", "classical": "/m/0ggq0m",
}
# Instrument name -> MagnaTagATune tags it justifies.
_MTAT_INSTRUMENT_TAGS: Final[dict[str, tuple[str, ...]]] = {
    "piano": ("piano", "keyboard"), "electric piano": ("keyboard", "electric"),
    "organ": ("organ", "keyboard"), "synth pad": ("synth", "synthesizer"),
    "synth lead": ("synth", "synthesizer"), "synth bass": ("synth", "bass"),
    "string ensemble": ("strings", "violins", "orchestral"), "violin": ("violin", "strings", "fiddle"),
    "viola": ("viola", "strings"), "cello": ("cello", "strings"), "contrabass": ("bass", "strings"),
    "flute": ("flute", "woodwind"), "clarinet": ("clarinet", "woodwind"),
    "oboe": ("oboe", "woodwind"), "bassoon": ("woodwind",), "french horn": ("horn", "horns"),
    "trumpet": ("trumpet", "horns"), "acoustic guitar": ("guitar", "acoustic guitar", "acoustic"),
    "electric guitar": ("guitar", "electric guitar", "electric"), "harp": ("harp", "plucking"),
    "electric bass": ("bass",), "drums": ("drums", "drum", "beat", "percussion"),
}
_MTAT_STYLE_TAGS: Final[dict[str, tuple[str, ...]]] = {
    "pop": ("pop",), "rock": ("rock",), "electronic": ("electronic", "techno", "dance"),
    "folk": ("folk", "acoustic"), "jazz": ("jazz", "jazzy"), "hiphop": ("hip hop", "beats"),
    "ambient": ("ambient", "new age", "calm", "airy"),
    "classical": ("classical", "baroque", "no drums"),
}


class DemoDataError(RuntimeError):
    """The demo corpus cannot be written (no MP3 encoder, refusing to replace a folder)."""


# --------------------------------------------------------------------------------------------
# Audio writing
# --------------------------------------------------------------------------------------------

_SF_FORMATS: Final[dict[str, tuple[str, str]]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def write_audio(path: Path, audio: np.ndarray, sample_rate_hz: int) -> None:
    """Write ``audio`` (float, ``(n,)`` or ``(n, channels)``) in the format of ``path``'s suffix.

    MP3 goes through libsndfile when it was built with LAME/mpg123 (soundfile >= 0.12 wheels
    are), else through ``ffmpeg`` on ``PATH``; with neither a :class:`DemoDataError` explains.
    """
    ext = path.suffix.lower().lstrip(".")
    if ext not in _SF_FORMATS:
        raise ValueError(f"unsupported audio extension {path.suffix!r} for {path}")
    fmt, subtype = _SF_FORMATS[ext]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)
    if fmt == "MP3" and "MP3" not in sf.available_formats():
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise DemoDataError(
                f"cannot write {path}: this libsndfile ({sf.__libsndfile_version__}) has no MP3 "
                "encoder and ffmpeg is not on PATH; install soundfile>=0.12 or ffmpeg")
        tmp_wav = path.with_suffix(".tmp.wav")
        sf.write(tmp_wav, data, sample_rate_hz, format="WAV", subtype="PCM_16")
        try:
            subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(tmp_wav),
                            "-codec:a", "libmp3lame", "-q:a", "4", str(path)], check=True)
        finally:
            tmp_wav.unlink(missing_ok=True)
        return
    sf.write(path, data, sample_rate_hz, format=fmt, subtype=subtype)


# --------------------------------------------------------------------------------------------
# Corpus bookkeeping
# --------------------------------------------------------------------------------------------

@dataclass
class _Corpus:
    root: Path
    rng: np.random.Generator
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    broken: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def song(self, duration_s: float, *, style: str | None = None, meter: int | None = None,
             parts: Sequence[Part] | None = None, mode: str | None = None,
             tempo_range: tuple[float, float] | None = None) -> SongSpec:
        return random_song_spec(self.rng, duration_s, meter, style=style, parts=parts,
                                mode=mode, tempo_range=tempo_range)  # type: ignore[arg-type]

    def add_audio(self, rel: str, song: SongAudio, dataset: str, source_id: str,
                  extra: dict[str, Any] | None = None, audio: np.ndarray | None = None) -> None:
        """Write ``song`` (or ``audio`` derived from it) at ``rel`` and record its truth."""
        data = song.audio if audio is None else audio
        write_audio(self.root / rel, data, song.sample_rate_hz)
        truth = song.truth()
        truth.update({"dataset": dataset, "source_id": source_id, "path": rel,
                      "format": Path(rel).suffix.lstrip(".").lower()})
        if extra:
            truth.update(extra)
        self.files[rel] = truth
        self.counts[dataset] = self.counts.get(dataset, 0) + 1
        self.seconds[dataset] = self.seconds.get(dataset, 0.0) + song.duration_s

    def add_broken(self, dataset: str, item_id: str, path: str, problem: str, detail: str) -> None:
        self.broken.append({"dataset": dataset, "id": item_id, "path": path,
                            "problem": problem, "detail": detail})


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _tempo_word(bpm: float) -> str:
    return "slow" if bpm < 90 else ("medium tempo" if bpm < 120 else "fast")


def _mood(song: SongAudio) -> str:
    if song.spec.mode == "minor":
        return "melancholic" if song.tempo_bpm < 110 else "dark and driving"
    return "calm and warm" if song.tempo_bpm < 100 else "happy and uplifting"


def _instrument_phrases(song: SongAudio) -> list[str]:
    phrases = []
    for part in song.spec.parts:
        if part.role == "drums":
            continue
        template = _ROLE_PHRASES[part.role]
        if part.role == "bass" and "bass" in part.instrument:
            template = "{a} {name} line"
        phrases.append(template.format(a=_a(part.instrument), name=part.instrument))
    return list(dict.fromkeys(phrases))


def _drum_phrase(song: SongAudio) -> str | None:
    for info in song.instruments:
        if info.is_drum:
            pattern = info.patterns[0]
            return {
                "rock": "a steady rock beat with kick, snare and hi-hats",
                "four_on_floor": 'a "four on the floor" kick drum with open hi-hats',
                "hiphop": "a laid-back hip hop groove",
                "waltz": "a waltz groove in 3/4, kick on the downbeat",
                "brushes": "soft brushed drums",
            }.get(pattern, "drums")
    return None


def _caption(song: SongAudio, *, quote_newline: bool = False) -> str:
    """A MusicCaps-style caption grounded in the song's truth."""
    style = _STYLE_WORDS.get(song.spec.style, "piece")
    instr = _instrument_phrases(song)
    listing = ", ".join(instr[:-1]) + (f" and {instr[-1]}" if len(instr) > 1 else instr[0])
    parts = [f"This is {_a(_tempo_word(song.tempo_bpm))} {_tempo_word(song.tempo_bpm)} "
             f"instrumental {style} in {song.meter}/4. It features {listing}."]
    drums = _drum_phrase(song)
    if drums:
        parts.append(f"The drummer plays {drums}.")
    else:
        parts.append("There are no drums.")
    parts.append(f"The mood is {_mood(song)}, and there are no vocals.")
    text = " ".join(parts)
    if quote_newline:
        text += ('\nA listener might call it "perfect background music, for studying or '
                 'driving", since it is easy to follow.')
    return text


def _aspects(song: SongAudio, *, apostrophe: bool) -> list[str]:
    aspects = [_STYLE_GENRE_ASPECT.get(song.spec.style, song.spec.style),
               _tempo_word(song.tempo_bpm), "instrumental", "no voices"]
    aspects += _instrument_phrases(song)
    if _drum_phrase(song):
        aspects.append("drummer's steady groove" if apostrophe else "drums")
    elif apostrophe:
        aspects.append("player's expressive vibrato")
    aspects.append(_mood(song))
    return aspects


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

_YT_ALPHABET: Final[str] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _ytid(rng: np.random.Generator) -> str:
    chars = [_YT_ALPHABET[int(i)] for i in rng.integers(0, 62, 11)]  # no '-'/'_' by default
    if rng.random() < 0.4:
        chars[int(rng.integers(2, 9))] = "_" if rng.random() < 0.5 else "-"
    return "".join(chars)


def _musiccaps(c: _Corpus, n: int) -> None:
    ds = "musiccaps"
    rows: list[dict[str, str]] = []
    exts = ("wav", "mp3", "ogg")
    styles = ("pop", "rock", "electronic", "folk", "jazz", "classical", "hiphop", "ambient")
    ytids = ["-0Gj8-vB1q4"]
    while len(ytids) < n + 1:
        candidate = _ytid(c.rng)
        if candidate not in ytids:
            ytids.append(candidate)
    for i in range(n):
        ytid = ytids[i]
        full_video = i % 2 == 0
        ext = exts[i % 3]
        sr = 48000 if i % 2 == 0 else 44100
        style = styles[i % len(styles)]
        if full_video:
            duration = 40.0
            start_s = (20, 0, 10)[(i // 2) % 3]
        else:
            duration = 10.0
            start_s = 30
        end_s = start_s + 10
        song = render_song(c.song(duration, style=style), sr, stereo=True)
        window = [float(start_s), float(end_s)] if full_video else [0.0, 10.0]
        c.add_audio(f"{ds}/audio/{ytid}.{ext}", song, ds, ytid, {
            "file_is_full_video": full_video,
            "clip_start_s": start_s, "clip_end_s": end_s,
            "clip_window_in_file_s": window,
        })
        labels = ["/m/04rlf", _AUDIOSET_MIDS[song.spec.style]]
        labels += [_AUDIOSET_MIDS[name] for name in song.spec.instrument_names]
        rows.append({
            "ytid": ytid, "start_s": str(start_s), "end_s": str(end_s),
            "audioset_positive_labels": ",".join(dict.fromkeys(labels)),
            "aspect_list": str(_aspects(song, apostrophe=i == 0)),
            "caption": _caption(song, quote_newline=i == 0),
            "author_id": str(int(c.rng.integers(0, 10))),
            "is_balanced_subset": str(bool(i % 3 == 0)),
            "is_audioset_eval": str(bool(i % 2 == 1)),
        })
    # Broken: a row whose audio was never downloaded.
    missing = ytids[n]
    rows.append({
        "ytid": missing, "start_s": "30", "end_s": "40",
        "audioset_positive_labels": "/m/04rlf,/m/05r5c",
        "aspect_list": str(["solo piano", "slow", "soft", "classical"]),
        "caption": "A solo piano plays a slow, soft classical melody.",
        "author_id": "4", "is_balanced_subset": "False", "is_audioset_eval": "True",
    })
    c.add_broken(ds, missing, f"{ds}/audio/{missing}.wav", "missing_audio",
                 "listed in musiccaps-public.csv, no audio file for this ytid")
    path = c.root / ds / "musiccaps-public.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MUSICCAPS_COLUMNS, quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(rows)


_MTAT_NAMES: Final[tuple[tuple[str, str, str], ...]] = (
    # artist, album, title as printed in clip_info_final.csv; the mp3 path uses slugs of them
    ("American Bach Soloists", "J.S. Bach Solo Cantatas", "BWV54 - I Aria"),
    ("Lumen Drift", "Night Transit", "Glass City"),
    ("Oak Hollow Consort", "Songs of the Valley", "The Miller's Daughter"),
    ("Neon Parade", "Afterglow EP", "Run-Around"),
    ("Kai and the Harbor", "Low Tide", "Salt and Rope"),
    ("Mira Solenne", "Quiet Hours", "A Slow Waltz"),
    ("The Brass Orchard", "Field Recordings Vol. 2", "March of the Bees"),
)


def _mtat_slug(text: str) -> str:
    """Magnatune's file-name slug: lower case, every character but [a-z0-9-] becomes '_'
    ("J.S. Bach Solo Cantatas" -> "j_s__bach_solo_cantatas"; " - " stays as in the title)."""
    text = text.replace(" - ", ": ").lower()
    return "".join(ch if (ch.isascii() and (ch.isalnum() or ch == "-")) else "_" for ch in text)
_MTAT_STYLES: Final[tuple[str, ...]] = ("classical", "electronic", "folk", "rock", "pop", "ambient")


def mtat_folders(n: int) -> list[str]:
    """The MagnaTagATune folders of ``n`` good clips, then the broken one's (index ``n``).

    Chosen so that every scale with ``n >= 3`` has a clip in each of train, validation and test
    under the reader's default split (``llark.splits.DEFAULT_SPLIT``: ``c``
    is the only validation folder), and under ``11-2-3`` too.
    """
    plan = ["f", "0", "c", "5", "a", "d", "3", "b", "e"] if n > 3 else ["f", "2", "c"]
    good = [plan[i] if i < len(plan) else format(i % 16, "x") for i in range(n)]
    return good + ["e" if n > 3 else "7"]


def _mtat(c: _Corpus, n: int) -> None:
    ds = "magnatagatune"
    folders = mtat_folders(n)
    clip_ids = sorted(int(x) for x in c.rng.choice(np.arange(2, 58909), n + 1, replace=False))
    ann_rows: list[list[str]] = []
    info_rows: list[list[str]] = []
    segments = ((30, 59), (0, 29), (59, 88), (88, 117))
    for i in range(n + 1):
        broken = i == n
        folder = folders[i]
        artist, album, title = _MTAT_NAMES[i % len(_MTAT_NAMES)]
        track = i + 1
        seg_start, seg_end = segments[i % len(segments)]
        rel_mp3 = (f"{folder}/{_mtat_slug(artist)}-{_mtat_slug(album)}-{track:02d}-"
                   f"{_mtat_slug(title)}-{seg_start}-{seg_end}.mp3")
        tags: set[str] = set()
        if broken:
            item = c.root / ds / rel_mp3
            item.parent.mkdir(parents=True, exist_ok=True)
            # An ID3 header then bytes without any MPEG frame sync (no 0xFF): undecodable.
            junk = c.rng.integers(0, 255, 6000, dtype=np.uint8).tobytes()
            item.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + junk)
            c.add_broken(ds, str(clip_ids[i]), f"{ds}/{rel_mp3}", "corrupt_audio",
                         "an ID3 header followed by random bytes: no decodable MPEG frame")
            tags = {"rock", "guitar"}
        else:
            style = _MTAT_STYLES[i % len(_MTAT_STYLES)]
            song = render_song(c.song(29.1, style=style), 16000)
            c.add_audio(f"{ds}/{rel_mp3}", song, ds, str(clip_ids[i]),
                        {"clip_id": clip_ids[i], "split": split_of(rel_mp3, DEFAULT_SPLIT)})
            tags.update(_MTAT_STYLE_TAGS[style])
            for name in song.spec.instrument_names:
                tags.update(_MTAT_INSTRUMENT_TAGS[name])
            tags.update({"instrumental", "no vocals", "no voice", "no singing"})
            tags.add("fast" if song.tempo_bpm >= 120 else ("slow" if song.tempo_bpm < 90 else "beat"))
            if "drums" not in song.spec.instrument_names:
                tags.add("no drums")
            if "piano" not in song.spec.instrument_names:
                tags.add("no piano")
            tags.add("sad" if song.spec.mode == "minor" else "happy")
        unknown = tags - set(MTAT_TAGS)
        if unknown:
            raise AssertionError(f"tags not in the MagnaTagATune vocabulary: {sorted(unknown)}")
        ann_rows.append([str(clip_ids[i])] + ["1" if t in tags else "0" for t in MTAT_TAGS]
                        + [rel_mp3])
        initials = "".join(w[0] for w in artist.split()).upper()
        info_rows.append([
            str(clip_ids[i]), str(track), title, artist, album,
            f"http://www.magnatune.com/artists/albums/{_mtat_slug(album).replace('_', '-')}/",
            str(seg_start), str(seg_end),
            "http://he3.magnatune.com/all/" + quote(f"{track:02d}--{title}--{initials}.mp3"),
            rel_mp3,
        ])
    for name, header, rows in (
        ("annotations_final.csv", ["clip_id", *MTAT_TAGS, "mp3_path"], ann_rows),
        ("clip_info_final.csv", list(MTAT_CLIP_INFO_COLUMNS), info_rows),
    ):
        path = c.root / ds / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


_FMA_ARTISTS: Final[tuple[tuple[str, str], ...]] = (
    ("AWOL", "A Way Of Life"),
    ("Kurt Vile", "Constant Hitmaker"),
    ("Nicky Cook", "Night Drive Sessions"),
    ("The Lucky Lanterns", "Porch Songs"),
    ("Blue Static", "Signal / Noise"),
    ("Heron Ensemble", "Tidal"),
    ("Chad Crouch", "Field Notes"),
    ("Mondo Vibes", "Basement Tapes"),
    ("Ana Luz", "Mar Aberto"),
)
_FMA_TITLES: Final[tuple[str, ...]] = (
    'Night Drive, "Part 2"', "Food", "Electric Ave", "Ballad of the Lamplighter", "Warehouse 9",
    "Low Tide", "Paper Planes", "Sunday, Slowly", "Cassette Dreams",
)


def _fma_cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def _fma(c: _Corpus, n: int) -> None:
    ds = "fma"
    styles = ("pop", "rock", "electronic", "folk", "hiphop", "ambient")
    pool = np.array([2, 5, 10, 140, 141, 148, 182, 1039, 3263, 10250, 11683, 26583, 43589,
                     99134, 113025, 127180, 154413, 155066])
    track_ids = sorted(int(t) for t in c.rng.choice(pool, n + 2, replace=False))
    # The last two (shuffled into place) are broken: one absent, one empty.
    broken_ids = [track_ids[1], track_ids[-1]]
    split_plan = ["training", "test"] if n <= 2 else ["training", "validation", "test"]
    rows: list[list[str]] = []
    good_index = 0
    for k, tid in enumerate(track_ids):
        rel = f"{ds}/fma_small/{tid // 1000:03d}/{tid:06d}.mp3"
        artist, album = _FMA_ARTISTS[k % len(_FMA_ARTISTS)]
        title = _FMA_TITLES[k % len(_FMA_TITLES)]
        if tid in broken_ids:
            style = "rock" if tid == broken_ids[0] else "pop"
            split = "validation" if tid == broken_ids[0] else "training"
            if tid == broken_ids[0]:
                c.add_broken(ds, str(tid), rel, "missing_audio",
                             "listed in tracks.csv (subset small), no mp3 under fma_small/")
            else:
                (c.root / rel).parent.mkdir(parents=True, exist_ok=True)
                (c.root / rel).write_bytes(b"")
                c.add_broken(ds, str(tid), rel, "empty_audio", "the mp3 file is 0 bytes")
            instruments = "electric guitar, drums and bass"
        else:
            style = styles[good_index % len(styles)]
            split = split_plan[good_index] if good_index < len(split_plan) else "training"
            good_index += 1
            song = render_song(c.song(30.0, style=style), 44100, stereo=True)
            c.add_audio(rel, song, ds, str(tid), {"track_id": tid, "split": split,
                                                  "subset": "small"})
            instruments = ", ".join(song.spec.instrument_names)
        genre_top, genres = _FMA_STYLE_GENRES[style]
        genres_all = sorted({g for gid in genres for g in (gid, FMA_GENRES[gid][3])})
        full_duration = int(c.rng.integers(95, 360))
        values: dict[tuple[str, str], Any] = {
            ("album", "comments"): 0,
            ("album", "date_created"): "2009-01-05 12:00:00",
            ("album", "date_released"): "2009-01-05 00:00:00",
            ("album", "engineer"): None,
            ("album", "favorites"): int(c.rng.integers(0, 9)),
            ("album", "id"): 100 + k,
            ("album", "information"): "<p></p>",
            ("album", "listens"): int(c.rng.integers(100, 20000)),
            ("album", "producer"): None,
            ("album", "tags"): "[]",
            ("album", "title"): album,
            ("album", "tracks"): int(c.rng.integers(4, 14)),
            ("album", "type"): "Album",
            ("artist", "active_year_begin"): "2006-01-01 00:00:00",
            ("artist", "active_year_end"): None,
            ("artist", "associated_labels"): None,
            ("artist", "bio"): f"<p>{artist} makes {genre_top.lower()} music.</p>",
            ("artist", "comments"): 0,
            ("artist", "date_created"): "2008-11-26 01:42:32",
            ("artist", "favorites"): int(c.rng.integers(0, 20)),
            ("artist", "id"): 1 + k,
            ("artist", "latitude"): None,
            ("artist", "location"): "New Jersey",
            ("artist", "longitude"): None,
            ("artist", "members"): None,
            ("artist", "name"): artist,
            ("artist", "related_projects"): None,
            ("artist", "tags"): str([artist.lower()]),
            ("artist", "website"): None,
            ("artist", "wikipedia_page"): None,
            ("set", "split"): split,
            ("set", "subset"): "small",
            ("track", "bit_rate"): 256000,
            ("track", "comments"): 0,
            ("track", "composer"): None,
            ("track", "date_created"): "2008-11-26 01:48:12",
            ("track", "date_recorded"): None,
            ("track", "duration"): full_duration,
            ("track", "favorites"): int(c.rng.integers(0, 5)),
            ("track", "genre_top"): genre_top,
            ("track", "genres"): str(genres),
            ("track", "genres_all"): str(genres_all),
            ("track", "information"): f"<p>Instruments: {instruments}.</p>",
            ("track", "interest"): int(c.rng.integers(100, 5000)),
            ("track", "language_code"): "en",
            ("track", "license"): "Attribution-NonCommercial-ShareAlike 3.0 International",
            ("track", "listens"): int(c.rng.integers(50, 3000)),
            ("track", "lyricist"): None,
            ("track", "number"): k + 1,
            ("track", "publisher"): None,
            ("track", "tags"): "[]",
            ("track", "title"): title,
        }
        rows.append([str(tid)] + [_fma_cell(values[col]) for col in FMA_TRACK_COLUMNS])
    meta = c.root / ds / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    with (meta / "tracks.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([""] + [top for top, _ in FMA_TRACK_COLUMNS])
        writer.writerow([""] + [name for _, name in FMA_TRACK_COLUMNS])
        writer.writerow(["track_id"] + [""] * len(FMA_TRACK_COLUMNS))
        writer.writerows(rows)
    with (meta / "genres.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["genre_id", "#tracks", "parent", "title", "top_level"])
        for gid, (count, parent, title, top) in sorted(FMA_GENRES.items()):
            writer.writerow([gid, count, parent, title, top])


# ensemble -> (composer, composition, movement, catalog, parts)
_MUSICNET_PIECES: Final[tuple[tuple[str, str, str, str, str, tuple[Part, ...]], ...]] = (
    ("Piano Trio", "Haydn", "Piano Trio in G major (synthetic)", "1. Allegro", "Hob.XV:25",
     (Part("cello", "bass"), Part("piano", "arpeggio", "alberti"), Part("violin", "melody"))),
    ("Solo Piano", "Beethoven", "Piano Sonata No 8 (synthetic)", "2. Adagio cantabile", "OP13",
     (Part("piano", "bass", "root_fifth"), Part("piano", "arpeggio", "alberti"),
      Part("piano", "melody"))),
    ("String Quartet", "Mozart", "String Quartet No 19 (synthetic)", "3. Menuetto", "K465",
     (Part("cello", "bass"), Part("viola", "counter"), Part("violin", "counter"),
      Part("violin", "melody"))),
    ("Wind Quintet", "Reicha", "Wind Quintet in E-flat (synthetic)", "1. Lento - Allegro",
     "OP88NO2",
     (Part("bassoon", "bass"), Part("french horn", "counter"), Part("clarinet", "counter"),
      Part("oboe", "counter"), Part("flute", "melody"))),
    ("Accompanied Violin", "Bach", "Violin Sonata No 4 (synthetic)", "1. Siciliano",
     "BWV1017",
     (Part("piano", "bass", "root_bar"), Part("piano", "arpeggio", "arpeggio"),
      Part("violin", "melody"))),
    ("Accompanied Cello", "Faure", "Elegie (synthetic)", "Molto adagio", "OP24",
     (Part("piano", "bass", "root_bar"), Part("piano", "chords", "pulse"),
      Part("cello", "melody"))),
)
_NOTE_VALUES: Final[tuple[tuple[float, str], ...]] = (
    (0.25, "Sixteenth"), (0.5, "Eighth"), (0.75, "Dotted Eighth"), (1.0, "Quarter"),
    (1.5, "Dotted Quarter"), (2.0, "Half"), (3.0, "Dotted Half"), (4.0, "Whole"),
)


def _note_value(beats: float) -> tuple[float, str]:
    """Written value (in beats) of a note played for ``beats``: the shortest value at least
    as long (the synthesizer plays notes a little detached, never longer than written), or
    ``"Unknown"`` when the note was cut short (e.g. by the end of the piece)."""
    for value, name in _NOTE_VALUES:
        if value >= beats - 1e-6:
            if beats >= 0.75 * value:
                return value, name
            break
    return round(beats, 4), "Unknown"


def _musicnet_labels(song: SongAudio) -> list[list[str]]:
    sr = MUSICNET_SAMPLE_RATE_HZ
    spb = song.spec.seconds_per_beat
    rows: list[tuple[int, int, int, int, float, float, str]] = []
    for note in song.notes:
        if note.is_drum or note.program is None:
            continue
        start = int(round(note.onset_s * sr))
        end = int(round(note.offset_s * sr))
        start_beat = round((note.onset_s - song.spec.first_beat_s) / spb, 4)
        end_beat, value = _note_value((note.offset_s - note.onset_s) / spb)
        rows.append((start, end, note.program + 1, note.pitch, start_beat, end_beat, value))
    rows.sort()
    return [[str(v) for v in row] for row in rows]


def _musicnet(c: _Corpus, n_train: int, n_test: int) -> None:
    ds = "musicnet"
    train_ids = [1788, 2242, 2575, 1733, 2186, 2359][:n_train]
    test_ids = [1759, 2382, 2556, 2416][:n_test]
    broken_id = 2201
    meta_rows: list[list[str]] = []
    pieces = list(_MUSICNET_PIECES)
    for k, (split, mid) in enumerate([("train", i) for i in train_ids]
                                     + [("test", i) for i in test_ids]):
        ensemble, composer, composition, movement, catalog, parts = pieces[k % len(pieces)]
        duration = float(48 + 2 * (k % 5))
        spec = c.song(duration, style="classical", parts=parts, tempo_range=(66.0, 112.0))
        song = render_song(spec, MUSICNET_SAMPLE_RATE_HZ)
        labels = _musicnet_labels(song)
        c.add_audio(f"{ds}/{split}_data/{mid}.wav", song, ds, str(mid),
                    {"split": split, "ensemble": ensemble, "n_labels": len(labels),
                     "labels_path": f"{ds}/{split}_labels/{mid}.csv"})
        label_path = c.root / ds / f"{split}_labels" / f"{mid}.csv"
        label_path.parent.mkdir(parents=True, exist_ok=True)
        with label_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(MUSICNET_LABEL_COLUMNS)
            writer.writerows(labels)
        meta_rows.append([str(mid), composer, composition, movement, ensemble,
                          "European Archive", "http://tirolmusic.blogspot.com/", catalog,
                          str(int(round(song.duration_s)))])
    # Broken: metadata (and labels) for an id whose wav is missing.
    meta_rows.append([str(broken_id), "Schubert", "Piano Quintet in A major (synthetic)",
                      "4. Andantino", "Piano Quintet", "European Archive",
                      "http://tirolmusic.blogspot.com/", "D667", "52"])
    broken_labels = c.root / ds / "train_labels" / f"{broken_id}.csv"
    broken_labels.parent.mkdir(parents=True, exist_ok=True)
    with broken_labels.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MUSICNET_LABEL_COLUMNS)
        writer.writerow(["9182", "90078", "1", "60", "0.0", "2.0", "Half"])
    c.add_broken(ds, str(broken_id), f"{ds}/train_data/{broken_id}.wav", "missing_audio",
                 "listed in musicnet_metadata.csv with labels, train_data wav missing")
    meta_rows.sort(key=lambda r: int(r[0]))
    path = c.root / ds / "musicnet_metadata.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MUSICNET_COLUMNS)
        writer.writerows(meta_rows)


_FOLDER_FILES: Final[tuple[tuple[str, str, str, int, bool], ...]] = (
    # file name, title, style, sample rate, stereo
    ("morning_walk.wav", "Morning Walk", "folk", 44100, False),
    ("sunset-drive demo.flac", "Sunset Drive (demo)", "electronic", 48000, True),
    ("night_bus.ogg", "Night Bus", "jazz", 44100, True),
    ("extra/waltz_for_ana.wav", "Waltz for Ana", "classical", 22050, False),
)


def _folder(c: _Corpus, n: int) -> None:
    ds = "folder"
    rows: list[dict[str, str]] = []
    for i, (name, title, style, sr, stereo) in enumerate(_FOLDER_FILES[:n]):
        meter = 3 if "waltz" in name else None
        song = render_song(c.song(20.0 + 2 * i, style=style, meter=meter), sr, stereo=stereo)
        c.add_audio(f"{ds}/{name}", song, ds, name, {"file_name": name})
        rows.append({
            "file_name": name, "title": title, "artist": "Demo Band",
            "genres": ";".join(dict.fromkeys([_STYLE_GENRE_ASPECT[style],
                                              "instrumental"])),
            "caption": _caption(song),
        })
    rows.append({"file_name": "lost_track.wav", "title": "Lost Track", "artist": "Demo Band",
                 "genres": "pop", "caption": "A pop song with piano and drums."})
    c.add_broken(ds, "lost_track.wav", f"{ds}/lost_track.wav", "missing_audio",
                 "named in folder/metadata.csv, file does not exist")
    with (c.root / ds / "metadata.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file_name", "title", "artist", "genres",
                                                "caption"])
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def build_corpus(root: Path, seed: int = 0, scale: str = "small") -> dict[str, Any]:
    """Write the corpus into ``root`` (which should be empty) and return the ground truth."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    counts = SCALES[scale]
    c = _Corpus(root=root, rng=np.random.default_rng(seed))
    _musiccaps(c, counts["musiccaps"])
    _mtat(c, counts["magnatagatune"])
    _fma(c, counts["fma"])
    _musicnet(c, counts["musicnet_train"], counts["musicnet_test"])
    _folder(c, counts["folder"])
    truth = {
        "version": GROUND_TRUTH_VERSION,
        "generator": "llark.demo.synth",
        "seed": seed,
        "scale": scale,
        "conventions": {
            "times": "seconds from the start of the audio file",
            "key": "'<tonic> <major|minor>' spelled as musicians write them (llark.music: "
                   "'Bb major', 'F# minor')",
            "chords": "Harte labels (maj/min triads, 'N' = silence before the first beat), "
                      "roots spelled in the song's key ('Bb:maj' in F major)",
            "gm_program": "0-based General MIDI program; null for the drum kit",
            "musicnet_labels": "start_time/end_time in samples at 44.1 kHz, instrument = "
                               "gm_program + 1, note = MIDI pitch, start_beat = onset in beats "
                               "from the first downbeat, end_beat = written length in beats",
        },
        "files": dict(sorted(c.files.items())),
        "broken": c.broken,
        "summary": {
            "files_per_dataset": dict(sorted(c.counts.items())),
            "audio_seconds_per_dataset": {k: round(v, 3) for k, v in sorted(c.seconds.items())},
        },
    }
    with (root / GROUND_TRUTH_NAME).open("w", encoding="utf-8") as fh:
        json.dump(truth, fh, indent=1)
        fh.write("\n")
    return truth


def _replace_dir(tmp: Path, output: Path) -> None:
    """Move the finished corpus into place, replacing an old demo corpus if there is one."""
    if output.exists():
        if not output.is_dir():
            raise DemoDataError(f"{output} exists and is not a directory")
        if any(output.iterdir()):
            if not (output / GROUND_TRUTH_NAME).is_file():
                raise DemoDataError(
                    f"{output} is not empty and is not a demo corpus (no {GROUND_TRUTH_NAME}); "
                    "refusing to replace it")
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old)
            return
        output.rmdir()
    tmp.rename(output)


def run(argv: list[str] | None = None) -> int:
    """CLI entry point: ``--output DIR [--seed N] [--scale small|tiny]``. Returns 0 on success."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="llark demo-data",
        description="Write a synthetic demo corpus laid out as MusicCaps, MagnaTagATune, FMA, "
                    "MusicNet and a folder dataset, with exact ground truth.")
    parser.add_argument("--output", required=True,
                        help="folder to create (or a gs:// / s3:// prefix: the corpus is built "
                             "in a local temporary folder and uploaded, ground truth last)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="small",
                        help="small: about 6 items per dataset; tiny: 2-3 (default small)")
    args = parser.parse_args(argv)
    if storage.is_remote(args.output):
        return _run_remote(args.output.rstrip("/"), args.seed, args.scale)
    output: Path = Path(args.output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists() and (not output.is_dir() or (
            any(output.iterdir()) and not (output / GROUND_TRUTH_NAME).is_file())):
        print(f"error: {output} exists and is not an empty folder or a demo corpus",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        truth = build_corpus(tmp, seed=args.seed, scale=args.scale)
        _replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _print_summary(truth, str(output), time.perf_counter() - started, args.seed, args.scale)
    return 0


def _run_remote(output: str, seed: int, scale: str) -> int:
    """The corpus at a ``gs://``/``s3://`` prefix: built locally, then uploaded with the ground
    truth last (a prefix without it is an incomplete upload and is replaced on a rerun)."""
    existing = storage.list_files(output)
    truth_url = storage.join(output, GROUND_TRUTH_NAME)
    if existing and truth_url not in existing:
        print(f"error: {output} holds other files and is not a demo corpus (no "
              f"{GROUND_TRUTH_NAME})", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llark-demo-") as tmp:
        truth = build_corpus(Path(tmp), seed=seed, scale=scale)
        if existing:
            # the marker goes first: an upload killed from here on leaves no complete corpus
            storage.delete([truth_url])
            storage.delete([u for u in existing if u != truth_url])
        storage.upload_tree(tmp, output, last=(GROUND_TRUTH_NAME,))
    _print_summary(truth, output, time.perf_counter() - started, seed, scale)
    return 0


def _print_summary(truth: dict, output: str, elapsed: float, seed: int, scale: str) -> None:
    summary = truth["summary"]
    total_s = sum(summary["audio_seconds_per_dataset"].values())
    print(f"demo corpus written to {output} in {elapsed:.1f} s (seed {seed}, scale {scale})")
    for name, count in summary["files_per_dataset"].items():
        seconds = summary["audio_seconds_per_dataset"][name]
        print(f"  {name:<14} {count:>3} audio files  {seconds:8.1f} s")
    print(f"  total          {sum(summary['files_per_dataset'].values()):>3} audio files  "
          f"{total_s:8.1f} s of audio; {len(truth['broken'])} deliberately broken entries")
    print(f"ground truth: {storage.join(output, GROUND_TRUTH_NAME)}")


if __name__ == "__main__":
    raise SystemExit(run())
