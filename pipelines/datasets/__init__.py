"""Dataset readers: each dataset's own metadata files → :class:`~pipelines.datasets.common.TrackTask`.

One module per dataset, each with ``read_tasks(data_dir, opts) -> Iterator[TrackTask | BadRow]``
(pure Python plus Beam's ``FileSystems`` for file access; no pipeline code). Use
:func:`read_tasks` to pick one by name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from pipelines.datasets.common import BadRow, ReaderOptions, TrackTask

#: Dataset name → reader module.
READERS: dict[str, str] = {
    "musiccaps": "pipelines.datasets.musiccaps",
    "magnatagatune": "pipelines.datasets.magnatagatune",
    "fma": "pipelines.datasets.fma",
    "musicnet": "pipelines.datasets.musicnet",
    "folder": "pipelines.datasets.folder",
}


def reader(dataset: str) -> Callable[[str, "ReaderOptions"], Iterator["TrackTask | BadRow"]]:
    """The ``read_tasks`` function of ``dataset``; :class:`ConfigError` for an unknown name."""
    from llark.errors import ConfigError

    if dataset not in READERS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {sorted(READERS)}")
    return importlib.import_module(READERS[dataset]).read_tasks


def read_tasks(dataset: str, data_dir: str, opts: "ReaderOptions"
               ) -> Iterator["TrackTask | BadRow"]:
    """Every metadata row (and, for ``folder``, every audio file) of ``dataset`` in ``data_dir``."""
    return reader(dataset)(data_dir, opts)
