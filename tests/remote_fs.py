"""Beam filesystems over the local disk under their own schemes: stand-ins for gs:// in tests
that need a URI Beam reads through ``FileSystems`` (as bytes), and a count of the files opened.

Beam finds filesystems by scheme among ``FileSystem`` subclasses, so importing this module is
enough to make ``llarktest://`` and ``llarkcount://`` URIs work.
"""

from __future__ import annotations

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.localfilesystem import LocalFileSystem


class PrefixFileSystem(LocalFileSystem):
    """A Beam filesystem with its own scheme over the local disk: a stand-in for gs:// etc."""

    @classmethod
    def scheme(cls) -> str:
        return "llarktest"

    @staticmethod
    def _local(path: str) -> str:
        return path[len("llarktest://"):]

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        return super().open(self._local(path), mime_type, compression_type)

    def exists(self, path: str) -> bool:
        return super().exists(self._local(path))


class CountingFileSystem(PrefixFileSystem):
    """The prefix filesystem under another scheme, counting the files it opens."""

    opened: list[str] = []

    @classmethod
    def scheme(cls) -> str:
        return "llarkcount"

    @staticmethod
    def _local(path: str) -> str:
        return path[len("llarkcount://"):]

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        type(self).opened.append(path)
        return LocalFileSystem.open(self, self._local(path), mime_type, compression_type)
