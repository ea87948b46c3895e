"""Published dataset splits that more than one layer needs (the MagnaTagATune reader in
``pipelines/datasets/`` and the demo corpus in ``llark/demo/`` both use them): defined once here,
in the base layer, because ``llark/`` may not import ``pipelines/``.

MagnaTagATune is split by the first character of ``mp3_path`` (its 16 folders ``0``-``9``,
``a``-``f``). ``12-1-3`` (``0``-``b`` train, ``c`` validation, ``d``-``f`` test) is the split most
published tagging results use; ``11-2-3`` is the one some codebases use. docs/ingest.md gives
their sources.
"""

from __future__ import annotations

from llark.errors import ConfigError, MetadataError

#: ``--mtt-split`` name → folder → split. ``12-1-3`` is the literature's split (the default).
SPLIT_SCHEMES: dict[str, dict[str, str]] = {
    "12-1-3": {**{c: "train" for c in "0123456789ab"}, "c": "validation",
               "d": "test", "e": "test", "f": "test"},
    "11-2-3": {**{c: "train" for c in "0123456789a"}, "b": "validation", "c": "validation",
               "d": "test", "e": "test", "f": "test"},
}
DEFAULT_SPLIT = "12-1-3"


def check_split_scheme(scheme: str) -> dict[str, str]:
    """The folder → split map of ``scheme``; :class:`ConfigError` for an unknown name."""
    if scheme not in SPLIT_SCHEMES:
        raise ConfigError(f"--mtt-split {scheme!r}: choose one of {sorted(SPLIT_SCHEMES)} "
                          f"(default {DEFAULT_SPLIT}, the split most published results use)")
    return SPLIT_SCHEMES[scheme]


def split_of(mp3_path: str, scheme: str = DEFAULT_SPLIT) -> str:
    """``"f/x.mp3"`` → ``"test"``; :class:`MetadataError` when not under one of the 16 folders."""
    folders = check_split_scheme(scheme)
    folder = mp3_path.replace("\\", "/").split("/", 1)[0]
    if folder not in folders or "/" not in mp3_path.replace("\\", "/"):
        raise MetadataError(f"mp3_path {mp3_path!r} is not under one of the folders 0-9, a-f")
    return folders[folder]


