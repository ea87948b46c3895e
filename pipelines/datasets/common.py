"""What every dataset reader shares: the unit of work, malformed rows, safe paths, file access.

A reader turns a dataset's own metadata files into one :class:`TrackTask` per audio file, or a
:class:`BadRow` for a metadata row it cannot use (so every row is accounted for: the ingest job
turns a ``BadRow`` into a dead letter), and a :class:`SkippedFile` for every file it lists that
is not an input (orphan audio, files that are not audio), which ingest counts as skipped.
Readers run in the driver and decode no audio; only a file with an unlisted extension is
probed (:func:`non_audio_reason`).

Metadata and listings go through Beam's ``FileSystems`` so ``gs://`` data directories work the
same as local ones (this module imports only ``apache_beam.io.filesystems``, no pipeline code).
Paths taken from metadata are joined with :func:`safe_join`, which refuses anything that would
leave the data directory (``../../etc/passwd``, absolute paths, URLs).
"""

from __future__ import annotations

import ast
import logging
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Iterable

from llark.errors import AudioNotFoundError, LlarkError, MetadataError, UnsafePathError
from pipelines.schema import CLIP_METADATA_FIELDS, DATASETS, SPLITS, Clip, NoteEvent, clip_id, track_id

log = logging.getLogger("llark.datasets")

#: File name extensions of the audio files readers look for (lower case, without the dot):
#: read by soundfile (libsndfile) or, failing that, by ffmpeg.
AUDIO_EXTENSIONS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac",
                                     "aif", "aiff", "aifc", "webm", "au", "snd", "caf", "w64",
                                     "wv", "ape", "mka", "mp2", "ac3", "wma")

#: Extensions of files that are certainly not audio (covers, notes, playlists, checksums,
#: unfinished downloads): skipped as ``not_audio:.<ext>`` without being opened. A file with any
#: other unlisted extension is probed (soundfile, then ffprobe).
NOT_AUDIO_EXTENSIONS: tuple[str, ...] = (
    "txt", "md", "rst", "pdf", "doc", "docx", "rtf", "html", "htm", "json", "jsonl", "csv",
    "tsv", "xml", "yaml", "yml", "ini", "nfo", "log", "cue", "m3u", "m3u8", "pls", "sfv", "md5",
    "sha1", "sha256", "jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff", "svg", "lrc",
    "srt", "vtt", "mid", "midi", "db", "ds_store", "zip", "tar", "gz", "7z", "rar", "part",
    "ytdl", "tmp", "py", "sh")

#: Extensions tried in order for a ``{ext}`` placeholder in a MusicCaps filename template.
TEMPLATE_EXTENSIONS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "m4a", "opus", "webm")



# --------------------------------------------------------------------------- options

@dataclass(frozen=True)
class ReaderOptions:
    """What a reader needs besides the data directory (built from ``IngestConfig``)."""

    audio_dir: str = ""           # where the audio lives; "" = the dataset's default place
    metadata: str = ""            # the metadata file, when not at the dataset's default place
    subset: str = ""              # FMA: small / medium / large / full; "" = detect
    filename_template: str = "{ytid}.{ext}"   # MusicCaps audio file names
    mtt_split: str = "12-1-3"     # MagnaTagATune folder split (magnatagatune.SPLIT_SCHEMES)


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class TrackTask:
    """The unit of work of ingest: one audio file and the metadata of its track.

    ``id`` is the track ID ``{dataset}:{source_id}``. ``alt_audio_uris`` are tried in order when
    ``audio_uri`` does not exist (MusicCaps: one name per audio extension). A fixed window
    (``window_start_s``/``window_end_s``, MusicCaps) is cut from a full-length file; a file
    already holding just that window is used whole. ``labels_uri`` names MusicNet's note labels.
    ``row`` says where the metadata came from (``file line N``) for error messages.
    ``expected_duration_s`` is how long the metadata says the file is (MusicNet ``seconds``,
    FMA ``track/duration`` or its 30 s clip; ``None`` when the metadata does not say; MusicCaps
    files are checked against their window instead); ingest compares it with what decodes.
    """

    id: str
    dataset: str
    source_id: str
    split: str
    audio_uri: str
    alt_audio_uris: tuple[str, ...] = ()
    window_start_s: float | None = None
    window_end_s: float | None = None
    labels_uri: str = ""
    row: str = ""
    title: str = ""
    artist: str = ""
    album: str = ""
    tags: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    caption: str = ""
    aspects: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    composer: str = ""
    composition: str = ""
    movement: str = ""
    ensemble: str = ""
    expected_duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.expected_duration_s is not None and not self.expected_duration_s > 0:
            raise ValueError(f"{self.id}: expected_duration_s {self.expected_duration_s} <= 0")
        if self.dataset not in DATASETS:
            raise ValueError(f"{self.id}: dataset {self.dataset!r} not in {DATASETS}")
        if self.split not in SPLITS:
            raise ValueError(f"{self.id}: split {self.split!r} not in {SPLITS}")
        if self.id != track_id(self.dataset, self.source_id):
            raise ValueError(f"task id {self.id!r} is not {self.dataset}:{self.source_id}")
        if (self.window_start_s is None) != (self.window_end_s is None):
            raise ValueError(f"{self.id}: give both window bounds or neither")
        if self.window_start_s is not None and not 0 <= self.window_start_s < self.window_end_s:
            raise ValueError(f"{self.id}: bad window {self.window_start_s}..{self.window_end_s}")

    @property
    def audio_candidates(self) -> tuple[str, ...]:
        return (self.audio_uri,) + self.alt_audio_uris

    def make_clip(self, audio_uri: str, start_s: float, end_s: float, sample_rate_hz: int,
                  channels: int, track_duration_s: float, rms_dbfs: float | None,
                  notes: tuple[NoteEvent, ...] = (),
                  instruments: tuple[str, ...] | None = None) -> Clip:
        """The :class:`Clip` of window ``start_s..end_s`` (seconds in ``audio_uri``'s time)."""
        meta = {name: getattr(self, name) for name in CLIP_METADATA_FIELDS}
        if instruments is not None:
            meta["instruments"] = instruments
        return Clip(id=clip_id(self.dataset, self.source_id, start_s, end_s),
                    dataset=self.dataset, source_id=self.source_id, split=self.split,
                    audio_uri=audio_uri, start_s=start_s, end_s=end_s,
                    sample_rate_hz=sample_rate_hz, channels=channels,
                    track_duration_s=track_duration_s, notes=notes, rms_dbfs=rms_dbfs, **meta)


_BAD_ROW_ERRORS: dict[str, type[LlarkError]] = {
    "MetadataError": MetadataError, "UnsafePathError": UnsafePathError,
    "AudioNotFoundError": AudioNotFoundError}


@dataclass(frozen=True)
class BadRow:
    """A metadata row the reader already knows cannot be ingested; becomes a dead letter.

    Mostly malformed rows (``MetadataError``, ``UnsafePathError``); also rows whose audio a
    reader's listing shows to be absent (``AudioNotFoundError``, MusicNet). ``id`` names the
    row: the track ID when the row has a usable one, else ``{dataset}:{file}#L{line}``.
    """

    id: str
    dataset: str
    error_type: str               # a key of _BAD_ROW_ERRORS
    message: str
    row: str = ""
    audio_uri: str = ""

    def __post_init__(self) -> None:
        if self.error_type not in _BAD_ROW_ERRORS:
            raise ValueError(f"BadRow error_type must be one of {sorted(_BAD_ROW_ERRORS)}")

    def error(self) -> LlarkError:
        where = f" ({self.row})" if self.row else ""
        return _BAD_ROW_ERRORS[self.error_type](f"{self.message}{where}")


@dataclass(frozen=True)
class SkippedFile:
    """A file in the data directory that is not an input, with the reason it is counted under.

    Readers yield one for every file they list but do not ingest, so a folder's files are all
    accounted for: audio without a metadata row (``audio_without_metadata``, MusicNet, FMA,
    MagnaTagATune, MusicCaps) and files that are not audio (``folder``: ``not_audio:.txt``, or
    ``no_audio_stream:.xyz`` when ffprobe finds none). ``id`` names the file (its path relative
    to the folder that was listed, prefixed by the dataset); ingest writes it as a skip note.
    """

    id: str
    dataset: str
    reason: str
    uri: str


def skipped_file(dataset: str, root: str, uri: str, reason: str) -> SkippedFile:
    """A :class:`SkippedFile` named ``{dataset}:{path relative to root}``."""
    prefix = root.rstrip("/") + "/"
    if is_uri(root):
        rel = uri[len(prefix):] if uri.startswith(prefix) else basename(uri)
    else:
        rel = os.path.relpath(os.path.abspath(uri), os.path.abspath(root)).replace(os.sep, "/")
    return SkippedFile(id=f"{dataset}:{rel}", dataset=dataset, reason=reason, uri=uri)


#: Skip reason of an audio file that no metadata row names.
ORPHAN_REASON = "audio_without_metadata"


def extension(uri: str) -> str:
    """``"a/B.WAV"`` → ``"wav"``; ``""`` for a name without one (``.DS_Store`` → ``ds_store``)."""
    name = basename(uri)
    if "." not in name.lstrip(".") and name.startswith("."):
        return name[1:].lower()
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def is_audio_name(uri: str) -> bool:
    """Whether the file's extension is one of :data:`AUDIO_EXTENSIONS`."""
    return extension(uri) in AUDIO_EXTENSIONS


def non_audio_reason(uri: str) -> str | None:
    """Why a file with an unlisted extension is not an input, or ``None`` when it holds audio.

    Certainly-not-audio extensions (:data:`NOT_AUDIO_EXTENSIONS`) → ``not_audio:.<ext>``
    and macOS AppleDouble files (``._name``, any extension) → ``not_audio:._*`` without
    opening the file; any other → probed with soundfile, then ffprobe:
    ``no_audio_stream:.<ext>`` when neither finds audio (0-byte files included).
    """
    ext = extension(uri)
    shown = f".{ext}" if ext else "(no extension)"
    if basename(uri).startswith("._"):
        return "not_audio:._* (macOS AppleDouble)"
    if ext in NOT_AUDIO_EXTENSIONS:
        return f"not_audio:{shown}"
    from llark.audio import probe_audio
    from llark.errors import AudioError

    try:
        probe_audio(read_bytes(uri) if is_uri(uri) else uri)
    except AudioError:
        return f"no_audio_stream:{shown}"
    return None


def orphans(dataset: str, root: str, listed: Iterable[str], found: Iterable[str]
            ) -> Iterable[SkippedFile]:
    """Files ``found`` under ``root`` that no task ``listed`` names, sorted, as skips: audio as
    ``audio_without_metadata``, anything else under :func:`non_audio_reason`'s reason."""
    named = {path_key(u) for u in listed}
    for uri in sorted(found):
        if path_key(uri) in named:
            continue
        reason = None if is_audio_name(uri) else non_audio_reason(uri)
        yield skipped_file(dataset, root, uri, reason or ORPHAN_REASON)


def path_key(uri: str) -> str:
    """A file's identity for comparing listings with metadata paths (absolute local paths)."""
    return uri if is_uri(uri) else os.path.abspath(uri)


def bad_row(dataset: str, exc: LlarkError, row: str, source_id: str = "",
            row_key: str = "", audio_uri: str = "") -> BadRow:
    """A :class:`BadRow` for ``exc``; named by track ID when ``source_id`` is usable."""
    rid = ""
    if source_id and ":" not in source_id:
        rid = track_id(dataset, source_id)
    if not rid:
        rid = f"{dataset}:{row_key or row.replace(' ', '')}"
    etype = type(exc).__name__
    if etype not in _BAD_ROW_ERRORS:
        etype = "UnsafePathError" if isinstance(exc, UnsafePathError) else "MetadataError"
    return BadRow(id=rid, dataset=dataset, error_type=etype, message=str(exc), row=row,
                  audio_uri=audio_uri)


def dedupe(items: Iterable[TrackTask | BadRow | SkippedFile]
           ) -> Iterable[TrackTask | BadRow | SkippedFile]:
    """Pass items through; a task whose ID was already seen becomes a ``BadRow``."""
    seen: dict[str, str] = {}
    for item in items:
        if isinstance(item, TrackTask):
            if item.id in seen:
                yield BadRow(id=item.id, dataset=item.dataset, error_type="MetadataError",
                             message=f"duplicate row for {item.id} (first at {seen[item.id]}); "
                                     "the first one is ingested", row=item.row,
                             audio_uri=item.audio_uri)
                continue
            seen[item.id] = item.row
        yield item


# --------------------------------------------------------------------------- paths

def is_uri(path: str) -> bool:
    return "://" in path


def join(base: str, *parts: str) -> str:
    """Join path parts; URIs (``gs://...``) with ``/``, local paths with ``os.path.join``."""
    if is_uri(base):
        return posixpath.join(base.rstrip("/") or base, *parts)
    return os.path.join(base, *parts)


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative(relative: str, base: str = "the data directory") -> str:
    """A metadata path made canonical (``./a//b.wav`` → ``a/b.wav``), or :class:`UnsafePathError`.

    Refused: an empty path, an absolute path (``/x``, ``C:\\x``, ``\\\\server``), a URL, a NUL
    byte, or any ``..`` component (``\\`` counts as a separator). The check is lexical: symbolic
    links inside the data directory are followed as usual.
    """
    if not isinstance(relative, str) or relative == "":
        raise UnsafePathError(f"empty file path in metadata (under {base})")
    if "\x00" in relative:
        raise UnsafePathError(f"file path {relative!r} from metadata contains a NUL byte")
    if is_uri(relative) or relative.startswith(("/", "\\")) or _DRIVE.match(relative):
        raise UnsafePathError(f"file path {relative!r} from metadata is absolute; metadata paths "
                              f"must be relative to {base}")
    parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"file path {relative!r} from metadata leaves {base} "
                              "('..' is not allowed)")
    if not parts:
        raise UnsafePathError(f"file path {relative!r} from metadata names no file")
    return "/".join(parts)


def safe_join(base: str, relative: str) -> str:
    """``base/relative`` for a ``relative`` path taken from metadata; refuses escapes
    (see :func:`safe_relative`)."""
    return join(base, *safe_relative(relative, base).split("/"))


# --------------------------------------------------------------------------- file access

def read_text(uri: str, what: str = "metadata file") -> str:
    """A whole text file through Beam's filesystems; :class:`MetadataError` when absent."""
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(uri):
        raise MetadataError(f"{what} not found: {uri}")
    with FileSystems.open(uri) as f:
        data = f.read()
    text = data.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd")
    if bad:
        log.warning("%s: %d byte sequence(s) are not UTF-8 and were replaced", uri, bad)
    return text


def exists(uri: str) -> bool:
    """A file or folder; on an object store also a "folder" prefix that holds objects (object
    stores have no folders, so ``gs://b/data/fma_small`` exists only through its files)."""
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(uri):
        return True
    if is_uri(uri):
        return bool(FileSystems.match([uri.rstrip("/") + "/**"], limits=[1])[0].metadata_list)
    return False


def list_files(pattern: str) -> list[str]:
    """Paths matching a Beam glob (``*`` within a folder, ``**`` across folders), sorted."""
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_bytes(uri: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri) as f:
        return f.read()


# --------------------------------------------------------------------------- value parsing

def parse_str_list(value: str, what: str) -> tuple[str, ...]:
    """A Python/JSON list literal of strings (``"['a', 'b']"``) → tuple; ``""`` → ``()``."""
    text = value.strip()
    if text == "":
        return ()
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise MetadataError(f"{what}: not a list literal: {_short(value)}") from exc
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(i, str) for i in parsed):
        raise MetadataError(f"{what}: expected a list of strings, got {_short(value)}")
    return tuple(i.strip() for i in parsed if i.strip())


def parse_int_list(value: str, what: str) -> tuple[int, ...]:
    """``"[21, 76]"`` → ``(21, 76)``; ``""`` → ``()``."""
    text = value.strip()
    if text == "":
        return ()
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise MetadataError(f"{what}: not a list literal: {_short(value)}") from exc
    if not isinstance(parsed, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in parsed):
        raise MetadataError(f"{what}: expected a list of integers, got {_short(value)}")
    return tuple(parsed)


def parse_float(value: str, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"{what}: not a number: {_short(str(value))}") from exc
    if out != out or out in (float("inf"), float("-inf")):
        raise MetadataError(f"{what}: not a finite number: {value!r}")
    return out


def parse_bool(value: str, what: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise MetadataError(f"{what}: not a boolean: {_short(str(value))}")


def check_source_id(source_id: str, what: str) -> str:
    """A source ID must be non-empty, a single line, and free of ``:`` (IDs are parsed on it)."""
    if source_id == "" or source_id.strip() != source_id:
        raise MetadataError(f"{what}: empty or space-padded id {source_id!r}")
    if ":" in source_id or "\n" in source_id or "\r" in source_id:
        raise MetadataError(f"{what}: id {source_id!r} contains ':' or a line break")
    return source_id


def _short(text: str, limit: int = 80) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[:limit] + "…"


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CsvRow:
    """One CSV record with the line it starts on (records may span lines)."""

    line: int
    values: list[str] = field(default_factory=list)


def csv_rows(text: str, delimiter: str = ",", what: str = "CSV") -> Iterable[CsvRow]:
    """Records of a CSV text with their starting line numbers (quoted newlines allowed)."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"',
                        doublequote=True, strict=False)
    last = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise MetadataError(f"{what} line {last + 1}: unreadable CSV: {exc}") from exc
        start = last + 1
        last = reader.line_num
        if not values or (len(values) == 1 and values[0].strip() == ""):
            continue
        yield CsvRow(start, values)
