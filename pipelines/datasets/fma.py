"""FMA (Free Music Archive): ``fma_metadata/tracks.csv`` + ``genres.csv`` and ``fma_<subset>/``.

Layout (``--audio-dir`` moves the mp3 folder, ``--metadata`` the tracks file)::

    <data-dir>/fma_metadata/tracks.csv
    <data-dir>/fma_metadata/genres.csv
    <data-dir>/fma_<subset>/<tid[:3]>/<tid>.mp3    # tid = 6-digit zero-padded track id

``tracks.csv`` as pandas wrote it: a first header row of column groups (``album``, ``artist``,
``set``, ``track``), a second of column names, then a ``track_id`` row, then one row per track
(``pandas.read_csv(path, header=[0, 1], index_col=0)`` reads it; so does this module, with the
``csv`` module only). Used columns: ``set/split``, ``set/subset``, ``track/genres`` (a Python
list literal of genre IDs, mapped to names with ``genres.csv``: ``genre_id,#tracks,parent,title,
top_level``), and, when present, ``track/title``, ``artist/name``, ``album/title``,
``track/tags``, ``track/genre_top``.

``--subset`` small / medium / large / full: a track belongs to the requested subset when its
``set/subset`` is that one or a smaller one (small ⊂ medium ⊂ large); ``full`` takes every
track. Tracks outside the requested subset are not inputs of the run (their count is logged).
Without ``--subset`` the one ``fma_<subset>`` folder in the data directory decides. Split:
``training`` → train, ``validation`` → validation, ``test`` → test.

Length: ``fma_full`` holds whole tracks, the other subsets 30 s clips of them, so a track's
expected length is ``track/duration`` (``--subset full``) or ``min(30, track/duration)``; ingest
compares it with what decodes. FMA's durations come from its web API and are sometimes wrong
(mdeff/fma issues #4 and #8: track 133297 is listed at 600 s, its audio is 114 s), so such files
are dead letters unless ingest keeps them (``--keep-shorter-than-metadata``). An mp3 under
``fma_<subset>/`` that ``tracks.csv`` does not list is counted as skipped
(``audio_without_metadata``), one listed outside the requested subset as ``outside_subset``,
any other file in its folders under its own reason (``not_audio:.<ext>``).
"""

from __future__ import annotations

import logging
from typing import Iterator

from llark.errors import ConfigError, LlarkError, MetadataError
from pipelines.datasets.common import (
    BadRow,
    CsvRow,
    ReaderOptions,
    SkippedFile,
    TrackTask,
    bad_row,
    basename,
    csv_rows,
    dedupe,
    exists,
    join,
    list_files,
    orphans,
    parse_float,
    parse_int_list,
    parse_str_list,
    path_key,
    read_text,
    safe_join,
    skipped_file,
)
from pipelines.schema import track_id

log = logging.getLogger("llark.datasets")

DATASET = "fma"
SUBSETS = ("small", "medium", "large", "full")
_RANK = {"small": 0, "medium": 1, "large": 2}
SPLITS = {"training": "train", "train": "train", "validation": "validation", "test": "test"}
REQUIRED = (("set", "split"), ("set", "subset"), ("track", "genres"))
OPTIONAL = (("track", "title"), ("artist", "name"), ("album", "title"), ("track", "tags"),
            ("track", "genre_top"), ("track", "duration"))
#: Length of the clips in fma_small / fma_medium / fma_large (fma_full holds whole tracks).
CLIP_SECONDS = 30.0
#: Skip reason of an mp3 whose track tracks.csv lists outside the requested subset.
OUTSIDE_SUBSET_REASON = "outside_subset"


def audio_path(tid: int) -> str:
    """``2`` → ``"000/000002.mp3"`` (relative to ``fma_<subset>/``)."""
    name = f"{tid:06d}"
    return f"{name[:3]}/{name}.mp3"


def in_subset(track_subset: str, requested: str) -> bool:
    """Whether a track whose ``set/subset`` is ``track_subset`` belongs to ``requested``."""
    if requested == "full":
        return True
    if track_subset not in _RANK:
        raise MetadataError(f"set/subset is {track_subset!r}, expected one of {sorted(_RANK)}")
    return _RANK[track_subset] <= _RANK[requested]


def resolve_subset(data_dir: str, opts: ReaderOptions) -> str:
    """The requested subset, or the only ``fma_<subset>`` folder present in ``data_dir``."""
    if opts.subset:
        if opts.subset not in SUBSETS:
            raise ConfigError(f"--subset {opts.subset!r}: expected one of {SUBSETS}")
        return opts.subset
    if opts.audio_dir:
        raise ConfigError("FMA: with --audio-dir, also give --subset (small/medium/large/full)")
    found = [s for s in SUBSETS if exists(join(data_dir, f"fma_{s}"))]
    if len(found) != 1:
        raise ConfigError(f"FMA: found {['fma_' + s for s in found] or 'no fma_<subset> folder'} "
                          f"in {data_dir}; give --subset (small/medium/large/full)")
    return found[0]


def read_genres(text: str, name: str) -> dict[int, str]:
    """``genres.csv`` → ``{genre_id: title}``."""
    rows = iter(csv_rows(text, ",", name))
    header = next(rows, None)
    columns = [c.strip() for c in header.values] if header else []
    if "genre_id" not in columns or "title" not in columns:
        raise MetadataError(f"{name}: expected columns genre_id,#tracks,parent,title,top_level; "
                            f"found {columns}")
    gid, title = columns.index("genre_id"), columns.index("title")
    out: dict[int, str] = {}
    for row in rows:
        try:
            out[int(row.values[gid])] = row.values[title].strip()
        except (ValueError, IndexError) as exc:
            raise MetadataError(f"{name} line {row.line}: bad genre row {row.values}") from exc
    return out


def read_tasks(data_dir: str, opts: ReaderOptions
               ) -> Iterator[TrackTask | BadRow | SkippedFile]:
    """One task per track of the requested subset; malformed rows → :class:`BadRow`; mp3s
    under the audio folder that are not inputs → :class:`SkippedFile`."""
    subset = resolve_subset(data_dir, opts)
    meta_dir = join(data_dir, "fma_metadata")
    tracks_uri = opts.metadata or join(meta_dir, "tracks.csv")
    genres_uri = join(meta_dir, "genres.csv")
    genres = read_genres(read_text(genres_uri, "FMA genres.csv"), basename(genres_uri))
    text = read_text(tracks_uri, "FMA tracks.csv")
    audio_dir = opts.audio_dir or join(data_dir, f"fma_{subset}")
    outside: set[str] = set()
    items = list(_read(text, basename(tracks_uri), genres, subset, audio_dir, outside))
    found = list_files(join(audio_dir, "*", "*"))
    listed = {path_key(t.audio_uri) for t in items if isinstance(t, TrackTask)}
    listed |= {path_key(t.audio_uri) for t in items if isinstance(t, BadRow) and t.audio_uri}
    skips = [skipped_file(DATASET, audio_dir, p, OUTSIDE_SUBSET_REASON) for p in found
             if path_key(p) not in listed and p.endswith(".mp3")
             and basename(p)[:-len(".mp3")] in outside]
    listed |= {path_key(s.uri) for s in skips}
    return dedupe(items + skips + list(orphans(DATASET, audio_dir, listed, found)))


def _columns(rows: Iterator[CsvRow], name: str) -> tuple[dict[tuple[str, str], int], CsvRow | None]:
    """Column positions from the two header rows; returns the first data row if the
    ``track_id`` row is missing (a re-saved file)."""
    top, sub = next(rows, None), next(rows, None)
    if top is None or sub is None:
        raise MetadataError(f"{name}: expected two header rows (column groups, column names)")
    third = next(rows, None)
    first_data = None
    if third is not None and third.values[0].strip() != "track_id":
        first_data = third
    pos: dict[tuple[str, str], int] = {}
    group = ""
    for i, (t, s) in enumerate(zip(top.values, sub.values)):
        group = t.strip() or group
        pos.setdefault((group, s.strip()), i)
    missing = [f"{g}/{c}" for g, c in REQUIRED if (g, c) not in pos]
    if missing:
        raise MetadataError(f"{name}: missing column(s) {missing} (is this FMA's tracks.csv with "
                            "its two header rows?)")
    return pos, first_data


def _read(text: str, name: str, genres: dict[int, str], subset: str, audio_dir: str,
          outside_ids: set[str]) -> Iterator[TrackTask | BadRow]:
    """Tasks and bad rows; the six-digit IDs of tracks outside ``subset`` go to
    ``outside_ids``."""
    rows = iter(csv_rows(text, ",", name))
    pos, first = _columns(rows, name)
    outside = 0

    def rows_all() -> Iterator[CsvRow]:
        if first is not None:
            yield first
        yield from rows

    for row in rows_all():
        where = f"{name} line {row.line}"
        raw_id = row.values[0].strip()
        try:
            task = _task(row.values, pos, genres, subset, audio_dir, where)
        except LlarkError as exc:
            sid = f"{int(raw_id):06d}" if raw_id.isdigit() else ""
            audio = safe_join(audio_dir, audio_path(int(raw_id))) if raw_id.isdigit() else ""
            yield bad_row(DATASET, exc, where, source_id=sid, row_key=f"{name}#L{row.line}",
                          audio_uri=audio)
            continue
        if task is None:
            outside += 1
            outside_ids.add(f"{int(raw_id):06d}")
            continue
        yield task
    if outside:
        log.info("FMA: %d track(s) of %s are outside the %r subset and were not read",
                 outside, name, subset)


def _task(values: list[str], pos: dict[tuple[str, str], int], genres: dict[int, str],
          subset: str, audio_dir: str, where: str) -> TrackTask | None:
    def get(group: str, column: str) -> str:
        i = pos.get((group, column))
        return "" if i is None else values[i].strip()

    if len(values) < max(pos.values()) + 1:
        raise MetadataError(f"row has {len(values)} fields, the header has {max(pos.values()) + 1}")
    raw_id = values[0].strip()
    if not raw_id.isdigit():
        raise MetadataError(f"track_id {raw_id!r} is not a non-negative integer")
    tid = int(raw_id)
    if not in_subset(get("set", "subset"), subset):
        return None
    split_value = get("set", "split")
    if split_value not in SPLITS:
        raise MetadataError(f"set/split is {split_value!r}, expected training, validation or test")
    names = []
    for gid in parse_int_list(get("track", "genres"), "track/genres"):
        if gid not in genres:
            raise MetadataError(f"track/genres names genre {gid}, which genres.csv lacks")
        names.append(genres[gid])
    if not names and get("track", "genre_top"):
        names.append(get("track", "genre_top"))
    tags = parse_str_list(get("track", "tags"), "track/tags") if ("track", "tags") in pos else ()
    expected = None
    if get("track", "duration"):
        duration = parse_float(get("track", "duration"), "track/duration")
        if duration > 0:
            expected = duration if subset == "full" else min(CLIP_SECONDS, duration)
    source_id = f"{tid:06d}"
    return TrackTask(id=track_id(DATASET, source_id), dataset=DATASET, source_id=source_id,
                     split=SPLITS[split_value], audio_uri=safe_join(audio_dir, audio_path(tid)),
                     row=where, title=get("track", "title"), artist=get("artist", "name"),
                     album=get("album", "title"), genres=tuple(names), tags=tags,
                     expected_duration_s=expected)
