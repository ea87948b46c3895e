"""MagnaTagATune: ``annotations_final.csv`` + ``clip_info_final.csv`` and 16 folders of mp3s.

Layout (``--audio-dir`` moves the mp3 folders, ``--metadata`` the annotations file)::

    <data-dir>/annotations_final.csv     # "clip_id" <188 tag columns of "0"/"1"> "mp3_path"
    <data-dir>/clip_info_final.csv       # "clip_id" "track_number" "title" "artist" "album"
                                         # "url" "segmentStart" "segmentEnd" "original_url"
                                         # "mp3_path"
    <data-dir>/{0..9,a..f}/<name>.mp3    # 16 kHz mono, ~29 s

Both CSVs are tab-separated with every field in double quotes. The two files are joined on
``clip_id``; a clip listed in only one of them is still ingested (with what that file knows).
Tag columns are every column except ``clip_id`` and ``mp3_path`` (188 in the release); a ``1``
puts the column name in the clip's ``tags``. An mp3 in the 16 folders that neither file lists
is counted as skipped (``audio_without_metadata``), as is any other file there.

Split by folder (``--mtt-split``, see :data:`SPLIT_SCHEMES`):

- ``12-1-3`` (default): ``0``–``b`` → train, ``c`` → validation, ``d``–``f`` → test. The split
  most published tagging results use (Dieleman & Schrauwen 2014, "End-to-end learning for
  music audio"); the 15,244 / 1,529 / 4,332 clip lists of the sample-level CNN and musicnn
  papers are this split filtered to clips with at least one of the 50 most frequent tags.
- ``11-2-3``: ``0``–``a`` → train, ``b``, ``c`` → validation, ``d``–``f`` → test, as some
  codebases have it (llark's default before this flag existed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from llark.errors import LlarkError, MetadataError
from llark.splits import DEFAULT_SPLIT, SPLIT_SCHEMES, check_split_scheme, split_of
from pipelines.datasets.common import (
    BadRow,
    CsvRow,
    ReaderOptions,
    SkippedFile,
    TrackTask,
    bad_row,
    basename,
    check_source_id,
    csv_rows,
    dedupe,
    join,
    list_files,
    orphans,
    read_text,
    safe_join,
)
from pipelines.schema import track_id

log = logging.getLogger("llark.datasets")

DATASET = "magnatagatune"
ANNOTATIONS_FILE = "annotations_final.csv"
CLIP_INFO_FILE = "clip_info_final.csv"
CLIP_INFO_COLUMNS = ("clip_id", "track_number", "title", "artist", "album", "url",
                     "segmentStart", "segmentEnd", "original_url", "mp3_path")
N_TAGS = 188
#: ``--mtt-split`` names and their folder maps live in :mod:`llark.splits` (one definition).
FOLDER_SPLITS: dict[str, str] = SPLIT_SCHEMES[DEFAULT_SPLIT]


@dataclass(frozen=True)
class _Annotated:
    line: str
    tags: tuple[str, ...]
    mp3_path: str


@dataclass(frozen=True)
class _Bad:
    """A row whose clip_id is known but whose other fields are malformed."""

    line: str
    message: str


@dataclass(frozen=True)
class _Info:
    line: str
    title: str
    artist: str
    album: str
    mp3_path: str


def read_tasks(data_dir: str, opts: ReaderOptions
               ) -> Iterator[TrackTask | BadRow | SkippedFile]:
    """One task per clip_id of the union of both files; malformed rows → :class:`BadRow`;
    mp3s in the 16 folders that neither file lists → :class:`SkippedFile`."""
    ann_uri = opts.metadata or join(data_dir, ANNOTATIONS_FILE)
    info_uri = join(data_dir, CLIP_INFO_FILE)
    audio_dir = opts.audio_dir or data_dir
    ann_name, info_name = basename(ann_uri), basename(info_uri)
    annotations, bad = _read_annotations(read_text(ann_uri, f"MagnaTagATune {ANNOTATIONS_FILE}"),
                                         ann_name)
    infos, bad_info = _read_clip_info(read_text(info_uri, f"MagnaTagATune {CLIP_INFO_FILE}"),
                                      info_name)
    folders = check_split_scheme(opts.mtt_split)
    items = list(_join(annotations, infos, bad + bad_info, audio_dir, opts.mtt_split))
    found = [p for folder in sorted(folders) for p in list_files(join(audio_dir, folder, "*"))]
    listed = [t.audio_uri for t in items if isinstance(t, TrackTask)]
    return dedupe(items + list(orphans(DATASET, audio_dir, listed, found)))


def _join(annotations: dict[str, _Annotated | _Bad], infos: dict[str, _Info | _Bad],
          bad: list[BadRow], audio_dir: str, scheme: str) -> Iterator[TrackTask | BadRow]:
    yield from bad
    for cid in sorted(set(annotations) | set(infos), key=_clip_order):
        ann, info = annotations.get(cid), infos.get(cid)
        where = " and ".join(x.line for x in (ann, info) if x is not None)
        try:
            errors = [x.message for x in (ann, info) if isinstance(x, _Bad)]
            if errors:
                raise MetadataError("; ".join(errors))
            paths = {x.mp3_path for x in (ann, info) if x is not None and x.mp3_path}
            if len(paths) != 1:
                raise MetadataError(f"clip {cid}: " + (
                    f"the two files disagree on mp3_path {sorted(paths)}" if paths
                    else "no mp3_path"))
            (mp3_path,) = paths
            audio_uri = safe_join(audio_dir, mp3_path)
            split = split_of(mp3_path, scheme)
            yield TrackTask(id=track_id(DATASET, cid), dataset=DATASET, source_id=cid,
                            split=split, audio_uri=audio_uri, row=where,
                            title=info.title if info else "", artist=info.artist if info else "",
                            album=info.album if info else "", tags=ann.tags if ann else ())
        except LlarkError as exc:
            yield bad_row(DATASET, exc, where, source_id=cid)


def _clip_order(cid: str) -> tuple[int, str]:
    return (int(cid), cid) if cid.isdigit() else (1 << 62, cid)


def _header(rows: Iterator, name: str) -> list[str]:
    header = next(rows, None)
    if header is None:
        raise MetadataError(f"{name} is empty")
    return [c.strip() for c in header.values]


def _read_annotations(text: str, name: str
                      ) -> tuple[dict[str, _Annotated | _Bad], list[BadRow]]:
    rows = iter(csv_rows(text, "\t", name))
    columns = _header(rows, name)
    if not columns or columns[0] != "clip_id" or "mp3_path" not in columns:
        raise MetadataError(f"{name}: expected tab-separated columns \"clip_id\" <tags> "
                            f"\"mp3_path\"; got {columns[:3]}…{columns[-2:]}")
    path_pos = columns.index("mp3_path")
    tag_pos = [i for i, c in enumerate(columns) if c not in ("clip_id", "mp3_path")]
    if len(tag_pos) != N_TAGS:
        log.warning("%s has %d tag columns (the release has %d)", name, len(tag_pos), N_TAGS)

    def parse(values: list[str]) -> _Annotated:
        if len(values) != len(columns):
            raise MetadataError(f"row has {len(values)} fields, the header has {len(columns)}")
        tags = []
        for i in tag_pos:
            value = values[i].strip()
            if value not in ("0", "1"):
                raise MetadataError(f"tag {columns[i]!r} is {value!r}, expected 0 or 1")
            if value == "1":
                tags.append(columns[i])
        return _Annotated("", tuple(tags), values[path_pos].strip())

    return _rows_by_clip(rows, name, 0, parse)


def _read_clip_info(text: str, name: str) -> tuple[dict[str, _Info | _Bad], list[BadRow]]:
    rows = iter(csv_rows(text, "\t", name))
    columns = _header(rows, name)
    missing = [c for c in ("clip_id", "title", "artist", "album", "mp3_path") if c not in columns]
    if missing:
        raise MetadataError(f"{name}: missing column(s) {missing}; found {columns}")
    pos = {c: i for i, c in enumerate(columns)}

    def parse(values: list[str]) -> _Info:
        if len(values) != len(columns):
            raise MetadataError(f"row has {len(values)} fields, the header has {len(columns)}")
        return _Info("", values[pos["title"]].strip(), values[pos["artist"]].strip(),
                     values[pos["album"]].strip(), values[pos["mp3_path"]].strip())

    return _rows_by_clip(rows, name, pos["clip_id"], parse)


def _rows_by_clip(rows: Iterator[CsvRow], name: str, id_pos: int,
                  parse: Callable[[list[str]], _Annotated | _Info]
                  ) -> tuple[dict, list[BadRow]]:
    """``clip_id → parsed row`` (or :class:`_Bad`); rows without a usable clip_id, and repeated
    clip_ids, become :class:`BadRow` named by file and line."""
    out: dict[str, _Annotated | _Info | _Bad] = {}
    bad: list[BadRow] = []
    for row in rows:
        where = f"{name} line {row.line}"
        try:
            cid = check_source_id(row.values[id_pos].strip() if len(row.values) > id_pos
                                  else "", "clip_id")
            if cid in out:
                raise MetadataError(f"clip_id {cid} is listed twice (first at {out[cid].line}); "
                                    "the first row is used")
        except LlarkError as exc:
            bad.append(bad_row(DATASET, exc, where, row_key=f"{name}#L{row.line}"))
            continue
        try:
            out[cid] = replace(parse(row.values), line=where)
        except LlarkError as exc:
            out[cid] = _Bad(where, str(exc))
    return out, bad
