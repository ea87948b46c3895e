"""Paths that may be local or on an object store (``gs://``, ``s3://``), for the code outside Beam.

The Beam stages reach object stores through Beam's ``FileSystems``; everything else (the
trainer, inference, evaluation, ``llark inspect``/the report, ``llark run``, the demo corpus)
goes through this module, which uses ``pyarrow.fs``: its files are random-access, so a Parquet
reader fetches the footer and then only the row groups and columns it reads (HTTP range
requests), never the whole object.

Where the store is comes from the same environment variables the cloud SDKs read:

``gs://``
    Google Cloud Storage with Application Default Credentials. ``STORAGE_EMULATOR_HOST``
    (``http://127.0.0.1:9023``) points every client at an emulator instead (anonymous).
``s3://``
    Amazon S3 (or any S3-compatible server) with the usual ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``; ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` (``http://127.0.0.1:5000``) selects another endpoint (MinIO, moto).

Object stores have no folders and no atomic rename: a "folder" here is a key prefix, and a set
of files is made visible by writing its index (or done marker) last, as one object.

pyarrow is imported inside the functions, so importing this module costs nothing (``dags/`` and
the CLI import it).
"""

from __future__ import annotations

import fnmatch
import io
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlparse

from llark.errors import LlarkError

if TYPE_CHECKING:  # pragma: no cover
    import google.cloud.storage
    import pyarrow
    import pyarrow.fs

REMOTE_SCHEMES = ("gs", "s3")
"""URL schemes read and written through an object store."""
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
"""``http://host:port`` of a GCS emulator (the variable google-cloud-storage and Beam read)."""
S3_ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""An S3-compatible endpoint, first one set wins (the variables boto3 reads)."""


class StorageError(LlarkError):
    """An object-store path is malformed, unreachable, or missing."""


def scheme(path: str | os.PathLike[str]) -> str:
    """``gs``, ``s3``, or ``""`` for a local path."""
    text = os.fspath(path)
    if "://" not in text:
        return ""
    found = text.split("://", 1)[0].lower()
    if found == "file":
        return ""
    if found not in REMOTE_SCHEMES:
        raise StorageError(f"{text}: unsupported scheme {found}://; use a local path, gs:// or "
                           "s3://")
    return found


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for ``gs://…`` and ``s3://…``."""
    return scheme(path) != ""


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base/part/…`` for local paths and URLs alike (no ``os.sep`` in URLs)."""
    text = os.fspath(base)
    if not is_remote(text):
        return os.path.join(text, *parts)
    return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts if p)])


def name(path: str | os.PathLike[str]) -> str:
    """The last component of a path or URL."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def relative(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """``path`` relative to ``root`` (``.`` for the root itself), for local paths and URLs."""
    p, r = os.fspath(path).rstrip("/"), os.fspath(root).rstrip("/")
    if p == r:
        return "."
    return p[len(r):].lstrip("/") if p.startswith(r + "/") else p


# --------------------------------------------------------------------------- filesystems

def _endpoint(url: str) -> tuple[str, str]:
    """``http://127.0.0.1:9023`` → ``("127.0.0.1:9023", "http")``."""
    if "://" not in url:
        url = "http://" + url
    parsed = urlparse(url)
    if not parsed.netloc:
        raise StorageError(f"endpoint {url!r} has no host:port")
    return parsed.netloc, parsed.scheme or "http"


@lru_cache(maxsize=8)
def _gcs(emulator: str) -> "pyarrow.fs.FileSystem":
    import datetime as dt

    from pyarrow import fs

    if emulator:
        host, url_scheme = _endpoint(emulator)
        return fs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme=url_scheme,
                                retry_time_limit=dt.timedelta(seconds=30))
    return fs.GcsFileSystem()


@lru_cache(maxsize=8)
def _s3(endpoint: str, region: str) -> "pyarrow.fs.FileSystem":
    from pyarrow import fs

    kwargs: dict[str, str] = {}
    if region:
        kwargs["region"] = region
    if endpoint:
        host, url_scheme = _endpoint(endpoint)
        kwargs["endpoint_override"] = host
        kwargs["scheme"] = url_scheme
    # keys: pyarrow reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN itself
    return fs.S3FileSystem(**kwargs)


def filesystem(path: str | os.PathLike[str]) -> tuple["pyarrow.fs.FileSystem", str]:
    """The pyarrow filesystem for ``path`` and the path as that filesystem names it
    (``bucket/key`` for object stores, an absolute path locally)."""
    from pyarrow import fs

    text = os.fspath(path)
    kind = scheme(text)
    if kind == "":
        local = text[len("file://"):] if text.startswith("file://") else text
        return fs.LocalFileSystem(), os.path.abspath(local)
    rest = text.split("://", 1)[1].rstrip("/")
    if not rest or rest.startswith("/"):
        raise StorageError(f"{text}: no bucket name after {kind}://")
    if kind == "gs":
        return _gcs(os.environ.get(GCS_EMULATOR_ENV, "")), rest
    endpoint = next((os.environ[e] for e in S3_ENDPOINT_ENVS if os.environ.get(e)), "")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    return _s3(endpoint, region), rest


# --------------------------------------------------------------------------- queries

def exists(path: str | os.PathLike[str]) -> bool:
    """A file, or (locally) a folder, or (remotely) a prefix holding at least one object."""
    from pyarrow import fs

    if not is_remote(path):
        return os.path.exists(path)
    filesys, p = filesystem(path)
    # pyarrow reports a prefix that holds objects as a Directory
    return filesys.get_file_info(p).type != fs.FileType.NotFound


def is_file(path: str | os.PathLike[str]) -> bool:
    from pyarrow import fs

    filesys, p = filesystem(path)
    return filesys.get_file_info(p).type == fs.FileType.File


def size(path: str | os.PathLike[str]) -> int:
    """Bytes of one file; :class:`StorageError` when it is missing."""
    from pyarrow import fs

    filesys, p = filesystem(path)
    info = filesys.get_file_info(p)
    if info.type != fs.FileType.File:
        raise StorageError(f"{os.fspath(path)}: no such file")
    return int(info.size)


def list_files(folder: str | os.PathLike[str], pattern: str = "*",
               recursive: bool = True) -> list[str]:
    """Files under ``folder`` (sorted), as paths/URLs like ``folder``'s, whose name relative to
    ``folder`` matches ``pattern`` (``fnmatch``; ``*`` crosses ``/``). Missing folder → ``[]``."""
    from pyarrow import fs

    text = os.fspath(folder).rstrip("/") or "/"
    filesys, p = filesystem(text)
    try:
        infos = filesys.get_file_info(fs.FileSelector(p, recursive=recursive,
                                                      allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        rel = info.path[len(p):].lstrip("/")
        if fnmatch.fnmatchcase(rel, pattern):
            out.append(join(text, rel))
    return sorted(out)


# --------------------------------------------------------------------------- reading

class GcsRangeFile(io.RawIOBase):
    """A read-only, seekable ``gs://`` object: every ``read(n)`` is one ranged GET of exactly
    those bytes (google-cloud-storage, the client Beam uses). Measured against the emulator,
    pyarrow's own ``GcsFileSystem`` file downloads the whole object on its first read and
    only then issues range requests, so it is not used for reading."""

    def __init__(self, url: str) -> None:
        super().__init__()
        bucket, _, key = url.split("://", 1)[1].partition("/")
        blob = _gcs_client().bucket(bucket).get_blob(key)
        if blob is None:
            raise StorageError(f"{url}: no such file")
        self.url = url
        self._blob = blob
        self._size = int(blob.size or 0)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if end <= self._pos:
            return b""
        data = self._blob.download_as_bytes(start=self._pos, end=end - 1, raw_download=True,
                                            checksum=None)
        self._pos += len(data)
        return data

    def readinto(self, buffer: "bytearray | memoryview") -> int:   # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)


@lru_cache(maxsize=4)
def _gcs_client_for(emulator: str, project: str) -> "google.cloud.storage.Client":
    from google.cloud import storage as gcs

    if emulator:
        # google-cloud-storage reads STORAGE_EMULATOR_HOST itself and connects anonymously
        return gcs.Client(project=project or "emulator")
    return gcs.Client(project=project or None)


def _gcs_client() -> "google.cloud.storage.Client":
    return _gcs_client_for(os.environ.get(GCS_EMULATOR_ENV, ""),
                           os.environ.get("GOOGLE_CLOUD_PROJECT", ""))


def open_input(path: str | os.PathLike[str]) -> "pyarrow.NativeFile | GcsRangeFile":
    """A random-access file whose reads are range requests on an object store
    (``pyarrow.parquet.ParquetFile(open_input(url))`` fetches the footer, then only the row
    groups and columns it reads, never the whole object)."""
    text = os.fspath(path)
    if scheme(text) == "gs":
        return GcsRangeFile(text)
    filesys, p = filesystem(text)
    try:
        return filesys.open_input_file(p)
    except FileNotFoundError as exc:
        raise StorageError(f"{text}: no such file") from exc


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    if not is_remote(path):
        return Path(path).read_bytes()
    with open_input(path) as f:
        return f.read()


def read_text(path: str | os.PathLike[str]) -> str:
    return read_bytes(path).decode("utf-8")


# --------------------------------------------------------------------------- writing

def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write one file. Remotely it is one object, visible only once complete."""
    if not is_remote(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{os.fspath(path)}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return
    filesys, p = filesystem(path)
    with filesys.open_output_stream(p) as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def makedirs(path: str | os.PathLike[str]) -> None:
    """Create a local folder; nothing to do on an object store (prefixes need no folder)."""
    if not is_remote(path):
        Path(path).mkdir(parents=True, exist_ok=True)


def delete(paths: list[str]) -> None:
    """Delete files (missing ones are ignored)."""
    for path in paths:
        filesys, p = filesystem(path)
        try:
            filesys.delete_file(p)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- whole folders

def download_file(url: str, dest: str | os.PathLike[str]) -> Path:
    """Copy one file to the local ``dest`` in 8 MB chunks (never whole in memory)."""
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_input(url) as src, open(out, "wb") as dst:
        while chunk := src.read(8 << 20):
            dst.write(chunk)
    return out


def download_tree(remote: str, local: str | os.PathLike[str], skip: tuple[str, ...] = ()
                  ) -> list[Path]:
    """Copy every file under ``remote`` into ``local`` (same relative names), except files
    named in ``skip``. Returns them."""
    base = remote.rstrip("/")
    return [download_file(url, Path(local) / url[len(base):].lstrip("/"))
            for url in list_files(base) if name(url) not in skip]


def upload_tree(local: str | os.PathLike[str], remote: str, last: tuple[str, ...] = ()
                ) -> list[str]:
    """Copy every file under ``local`` to ``remote``; files named in ``last`` (an index, a done
    marker, a checkpoint's state file) go after all others, so a reader that waits for them
    never sees a half-copied folder. Returns the URLs written."""
    root = Path(local)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name in last)          # stable: the markers move to the end
    out = []
    filesys, _ = filesystem(remote)
    for path in files:
        url = join(remote, path.relative_to(root).as_posix())
        _, p = filesystem(url)
        with open(path, "rb") as src, filesys.open_output_stream(p) as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
        out.append(url)
    return out


def iter_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    """Lines of a text file (local or remote), without their newlines."""
    yield from read_text(path).splitlines()
