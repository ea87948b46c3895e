"""MusicCaps: ``musiccaps-public.csv`` plus the audio the user downloaded from YouTube.

Layout (defaults; ``--metadata``, ``--audio-dir`` and ``--filename-template`` change them)::

    <data-dir>/musiccaps-public.csv
    <data-dir>/audio/<ytid>.<ext>        # ext: wav, flac, mp3, ogg, m4a, opus or webm

The CSV is comma-separated with standard double-quote quoting; columns
``ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,
is_audioset_eval``. ``aspect_list`` is a Python list literal; captions hold commas, quotes and
newlines; ytids may start with ``-``. Each row becomes one task whose fixed window is
``start_s..end_s``: a full-length download is cut there, a file that is already the 10 s clip is
used whole (decided from the file's duration at ingest). Split: ``is_audioset_eval`` true →
``eval``, else ``train``. ``audioset_positive_labels`` (AudioSet machine IDs), ``author_id`` and
``is_balanced_subset`` are not carried.

Files under the audio folder that no row names are counted as skipped: audio as
``audio_without_metadata``, anything else (yt-dlp's ``.part`` leftovers, ``.json`` info files)
as ``not_audio:.<ext>`` (see :func:`pipelines.datasets.common.non_audio_reason`).
"""

from __future__ import annotations

import re
from typing import Iterator

from llark.errors import ConfigError, LlarkError, MetadataError
from pipelines.datasets.common import (
    TEMPLATE_EXTENSIONS,
    BadRow,
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
    parse_bool,
    parse_float,
    parse_str_list,
    read_text,
    safe_join,
)
from pipelines.schema import track_id

DATASET = "musiccaps"
METADATA_FILE = "musiccaps-public.csv"
COLUMNS = ("ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
           "author_id", "is_balanced_subset", "is_audioset_eval")
REQUIRED = ("ytid", "start_s", "end_s", "aspect_list", "caption", "is_audioset_eval")
TEMPLATE_FIELDS = ("ytid", "start_s", "end_s", "ext")


def check_template(template: str) -> None:
    """Raise :class:`ConfigError` unless ``template`` formats with ytid/start_s/end_s/ext only."""
    try:
        template.format(ytid="x", start_s=0, end_s=10, ext="wav")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"--filename-template {template!r}: {exc!r}; placeholders allowed: "
                          + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)) from exc
    if "{ytid}" not in template:
        raise ConfigError(f"--filename-template {template!r} must contain {{ytid}}")


def _seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def audio_names(template: str, ytid: str, start_s: float, end_s: float) -> list[str]:
    """File names to try for one row: one per extension when the template has ``{ext}``."""
    exts = TEMPLATE_EXTENSIONS if "{ext}" in template else ("",)
    return [template.format(ytid=ytid, start_s=_seconds_text(start_s),
                            end_s=_seconds_text(end_s), ext=ext) for ext in exts]


def read_tasks(data_dir: str, opts: ReaderOptions
               ) -> Iterator[TrackTask | BadRow | SkippedFile]:
    """One :class:`TrackTask` or :class:`BadRow` per data row of ``musiccaps-public.csv``,
    then a :class:`SkippedFile` per file under the audio folder that no row names."""
    check_template(opts.filename_template)
    meta = opts.metadata or join(data_dir, METADATA_FILE)
    audio_dir = opts.audio_dir or join(data_dir, "audio")
    text = read_text(meta, f"MusicCaps metadata ({METADATA_FILE})")
    items = list(_read(text, basename(meta), audio_dir, opts.filename_template))
    return dedupe(items + _unnamed_files(items, audio_dir))


def _unnamed_files(items: list[TrackTask | BadRow], audio_dir: str) -> list[SkippedFile]:
    """Files under ``audio_dir`` that no row names (a file whose name holds the ytid of a
    malformed row counts as named: that row is already a dead letter)."""
    named = [u for t in items if isinstance(t, TrackTask) for u in t.audio_candidates]
    bad_ids = [t.id.split(":", 1)[1] for t in items if isinstance(t, BadRow) and "#L" not in t.id]
    bad = re.compile("|".join(rf"(?<![\w-]){re.escape(y)}(?![\w-])" for y in bad_ids)) \
        if bad_ids else None
    found = [p for p in list_files(join(audio_dir, "**"))
             if bad is None or not bad.search(basename(p))]
    return list(orphans(DATASET, audio_dir, named, found))


def _read(text: str, name: str, audio_dir: str, template: str
          ) -> Iterator[TrackTask | BadRow]:
    rows = iter(csv_rows(text, ",", name))
    header = next(rows, None)
    if header is None:
        raise MetadataError(f"{name} is empty; expected the header {','.join(COLUMNS)}")
    columns = [c.strip() for c in header.values]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise MetadataError(f"{name}: missing column(s) {missing}; found {columns}")
    pos = {c: i for i, c in enumerate(columns)}
    for row in rows:
        where = f"{name} line {row.line}"
        ytid = row.values[pos["ytid"]].strip() if len(row.values) > pos["ytid"] else ""
        try:
            yield _task(row.values, pos, len(columns), where, audio_dir, template)
        except LlarkError as exc:
            yield bad_row(DATASET, exc, where, source_id=ytid,
                          row_key=f"{name}#L{row.line}")


def _task(values: list[str], pos: dict[str, int], n_columns: int, where: str, audio_dir: str,
          template: str) -> TrackTask:
    if len(values) != n_columns:
        raise MetadataError(f"row has {len(values)} fields, the header has {n_columns} "
                            "(unbalanced quotes?)")
    ytid = check_source_id(values[pos["ytid"]], "ytid")
    start_s = parse_float(values[pos["start_s"]], "start_s")
    end_s = parse_float(values[pos["end_s"]], "end_s")
    if not 0 <= start_s < end_s:
        raise MetadataError(f"window start_s={start_s} end_s={end_s} is not 0 <= start < end")
    aspects = parse_str_list(values[pos["aspect_list"]], "aspect_list")
    is_eval = parse_bool(values[pos["is_audioset_eval"]], "is_audioset_eval")
    uris = [safe_join(audio_dir, n) for n in audio_names(template, ytid, start_s, end_s)]
    return TrackTask(id=track_id(DATASET, ytid), dataset=DATASET, source_id=ytid,
                     split="eval" if is_eval else "train", audio_uri=uris[0],
                     alt_audio_uris=tuple(uris[1:]), window_start_s=start_s, window_end_s=end_s,
                     row=where, caption=values[pos["caption"]].strip(), aspects=aspects)
