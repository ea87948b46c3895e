"""Opening audio named by a URI: the one place that decides between a path and bytes.

A local path (or ``file://`` URI) is handed over as is, so soundfile seeks in it and reads only
the window it needs. Anything else (``gs://``, ``s3://``, ...) is read whole, once, as bytes
through Beam's ``FileSystems``: callers that cut several windows from one file (ingest, and
annotate / embed, which gather a track's clips first) open it once and decode every window
from the same bytes.
"""

from __future__ import annotations

from llark.audio import AudioSource
from llark.errors import AudioNotFoundError


def is_remote(uri: str) -> bool:
    """True for a URI that is not a local path (``gs://``, ``s3://``; not ``file://``)."""
    return "://" in uri and not uri.startswith("file://")


def open_audio(uri: str) -> AudioSource:
    """A local path as is; any other URI as its bytes, read through Beam's filesystems.

    A missing remote file raises :class:`AudioNotFoundError` (a missing local one does so when
    :func:`llark.audio.load_audio` opens it).
    """
    if not is_remote(uri):
        return uri[len("file://"):] if uri.startswith("file://") else uri
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(uri):
        raise AudioNotFoundError(f"audio file not found: {uri}")
    with FileSystems.open(uri) as f:
        return f.read()
