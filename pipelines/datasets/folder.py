"""``folder``: any directory of audio files, with optional metadata keyed by file name.

Layout::

    <data-dir>/**/<name>.<ext>       # any depth; ext one of common.AUDIO_EXTENSIONS
    <data-dir>/metadata.csv          # optional (or metadata.jsonl, or --metadata FILE)

Every file under the folder is accounted for: a file with a listed audio extension is an input;
one with a certainly-not-audio extension (``.txt``, ``.jpg``, ``.cue``, ``.part`` ...) is
counted as skipped ``not_audio:.<ext>``; any other is probed (soundfile, then ffprobe) and is
an input when it holds audio, else skipped ``no_audio_stream:.<ext>``. The metadata file itself
is not counted.

The metadata (CSV with a header, or JSON lines) has a ``file_name`` column: the audio file's
path relative to the data directory (``--audio-dir`` when given). Other recognised columns:
``title, artist, album, caption, composer, composition, movement, ensemble`` (text),
``tags, genres, aspects, instruments`` (lists: a JSON/Python list literal, or text separated by
``;`` — or by ``,`` when there is no ``;``; JSON lines may hold real lists) and ``split``
(train/validation/test/eval; default train). Unknown columns are ignored with a warning.

Every metadata row is an input; a row naming a file that does not exist becomes a dead letter
(``AudioNotFoundError``); audio files without a row are ingested with empty metadata. The source
ID is the file's relative path (``%`` and ``:`` percent-encoded, since IDs are parsed on ``:``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Iterator

from llark.errors import ConfigError, LlarkError, MetadataError
from pipelines.datasets.common import (
    AUDIO_EXTENSIONS,
    BadRow,
    ReaderOptions,
    SkippedFile,
    TrackTask,
    bad_row,
    basename,
    csv_rows,
    dedupe,
    exists,
    is_uri,
    join,
    is_audio_name,
    list_files,
    non_audio_reason,
    parse_str_list,
    path_key,
    read_text,
    safe_relative,
    skipped_file,
)
from pipelines.schema import SPLITS, track_id

log = logging.getLogger("llark.datasets")

DATASET = "folder"
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
KEY = "file_name"
TEXT_FIELDS = ("title", "artist", "album", "caption", "composer", "composition", "movement",
               "ensemble")
LIST_FIELDS = ("tags", "genres", "aspects", "instruments")


@dataclass(frozen=True)
class _Row:
    """One metadata record as read (values not yet checked), with where it came from."""

    line: str
    key: object
    raw: tuple[tuple[str, object], ...]


def source_id_of(relative: str) -> str:
    """Relative path → source ID (``%``, ``:``, CR and LF percent-encoded)."""
    return (relative.replace("%", "%25").replace(":", "%3A").replace("\n", "%0A")
            .replace("\r", "%0D"))


def _relative(root: str, path: str) -> str:
    if is_uri(root):
        prefix = root.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else basename(path)
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")


def list_audio(root: str, exclude: tuple[str, ...] = ()
               ) -> tuple[dict[str, str], list[SkippedFile]]:
    """``{relative posix path: uri}`` of every audio file under ``root`` (any depth), and a
    :class:`SkippedFile` for every other file (see the module doc); ``exclude``: metadata
    files, not counted."""
    out: dict[str, str] = {}
    skipped: list[SkippedFile] = []
    excluded = {path_key(e) for e in exclude}
    for path in list_files(join(root, "**")):
        if path_key(path) in excluded:
            continue
        rel = _relative(root, path)
        if not is_audio_name(path):
            reason = non_audio_reason(path)
            if reason is not None:
                skipped.append(skipped_file(DATASET, root, path, reason))
                continue
        out[rel] = path
    return out, skipped


def read_tasks(data_dir: str, opts: ReaderOptions
               ) -> Iterator[TrackTask | BadRow | SkippedFile]:
    """Metadata rows first (file order), then audio files without a row (sorted by path), then
    the files that are not audio."""
    root = opts.audio_dir or data_dir
    meta = opts.metadata
    present = [join(data_dir, m) for m in METADATA_FILES if exists(join(data_dir, m))]
    if not meta:
        if len(present) > 1:
            raise ConfigError(f"both {METADATA_FILES[0]} and {METADATA_FILES[1]} are in "
                              f"{data_dir}; choose one with --metadata")
        meta = present[0] if present else ""
    audio, skipped = list_audio(root, tuple(present) + ((meta,) if meta else ()))
    if not meta and not audio:
        raise MetadataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}"
                            + (f"; {len(skipped)} other file(s)" if skipped else ""))
    rows: list[_Row | BadRow] = []
    if meta:
        text = read_text(meta, "folder metadata")
        name = basename(meta)
        rows = list(_jsonl_rows(text, name) if meta.lower().endswith((".jsonl", ".json"))
                    else _csv_rows(text, name))
    return dedupe(list(_tasks(rows, audio, root)) + skipped)


def _tasks(rows: list[_Row | BadRow], audio: dict[str, str], root: str
           ) -> Iterator[TrackTask | BadRow]:
    named: set[str] = set()
    for row in rows:
        if isinstance(row, BadRow):
            yield row
            continue
        try:
            if not isinstance(row.key, str) or not row.key:
                raise MetadataError(f"no {KEY!r} value")
            rel = safe_relative(row.key, root)
        except LlarkError as exc:
            yield bad_row(DATASET, exc, row.line, row_key=_row_key(row.line))
            continue
        named.add(rel)
        sid = source_id_of(rel)
        try:
            values = dict(_values(dict(row.raw)))
            split = str(values.pop("split", "") or "train")
            if split not in SPLITS:
                raise MetadataError(f"split {split!r} is not one of {SPLITS}")
            yield TrackTask(id=track_id(DATASET, sid), dataset=DATASET, source_id=sid,
                            split=split, audio_uri=audio.get(rel) or join(root, *rel.split("/")),
                            row=row.line, **values)
        except LlarkError as exc:
            yield bad_row(DATASET, exc, row.line, source_id=sid, row_key=_row_key(row.line))
    for rel in sorted(set(audio) - named):
        sid = source_id_of(rel)
        yield TrackTask(id=track_id(DATASET, sid), dataset=DATASET, source_id=sid, split="train",
                        audio_uri=audio[rel], row="audio file without a metadata row")


def _row_key(line: str) -> str:
    """``"metadata.csv line 3"`` → ``"metadata.csv#L3"``."""
    return line.replace(" line ", "#L")


def _list_value(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise MetadataError(f"{what}: expected a list of strings, got {value!r}")
        return tuple(v.strip() for v in value if v.strip())
    if not isinstance(value, str):
        raise MetadataError(f"{what}: expected text or a list of strings, got {value!r}")
    text = value.strip()
    if text.startswith("["):
        return parse_str_list(text, what)
    sep = ";" if ";" in text else ","
    return tuple(v.strip() for v in text.split(sep) if v.strip())


def _values(raw: dict[str, object]) -> list[tuple[str, str | tuple[str, ...]]]:
    """Typed values of the recognised fields of one record (unknown keys are reported once per
    file by the caller)."""
    values: list[tuple[str, str | tuple[str, ...]]] = []
    for name in TEXT_FIELDS + ("split",):
        value = raw.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MetadataError(f"{name}: expected text, got {value!r}")
        values.append((name, str(value).strip()))
    for name in LIST_FIELDS:
        value = raw.get(name)
        if value is None or value == "":
            continue
        values.append((name, _list_value(value, name)))
    return values


def _record(raw: dict[str, object], line: str) -> _Row:
    return _Row(line, raw.get(KEY), tuple(raw.items()))


def _warn_unknown(columns: list[str], name: str) -> None:
    unknown = sorted(set(columns) - {KEY, "split", *TEXT_FIELDS, *LIST_FIELDS})
    if unknown:
        log.warning("%s: ignoring unknown column(s) %s (known: %s, split, %s, %s)", name, unknown,
                    KEY, ", ".join(TEXT_FIELDS), ", ".join(LIST_FIELDS))


def _csv_rows(text: str, name: str) -> Iterator[_Row | BadRow]:
    rows = iter(csv_rows(text, ",", name))
    header = next(rows, None)
    columns = [c.strip() for c in header.values] if header else []
    if KEY not in columns:
        raise MetadataError(f"{name}: needs a {KEY!r} column; found {columns}")
    _warn_unknown(columns, name)
    for row in rows:
        where = f"{name} line {row.line}"
        try:
            if len(row.values) != len(columns):
                raise MetadataError(f"row has {len(row.values)} fields, the header has "
                                    f"{len(columns)}")
            yield _record(dict(zip(columns, row.values)), where)
        except LlarkError as exc:
            yield bad_row(DATASET, exc, where, row_key=f"{name}#L{row.line}")


def _jsonl_rows(text: str, name: str) -> Iterator[_Row | BadRow]:
    seen_columns: set[str] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {n}"
        try:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MetadataError(f"not valid JSON: {exc}") from exc
            if not isinstance(raw, dict):
                raise MetadataError(f"expected a JSON object, got {type(raw).__name__}")
            seen_columns |= set(raw)
            yield _record(raw, where)
        except LlarkError as exc:
            yield bad_row(DATASET, exc, where, row_key=f"{name}#L{n}")
    _warn_unknown(sorted(seen_columns), name)
