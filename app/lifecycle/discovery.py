"""Discovery: which entries of a model directory are versions, and when their files change.

A version is ``<model_dir>/<n>/`` where ``n`` matches ``[0-9]+`` (not ``str.isdigit``, which
takes "²"), is positive, and the directory holds a ``saved_model.pb``. Every other entry
(``.tmp-export-*``, ``abc``, ``1.5``) is ignored: that is what makes publishing by ``rename``
atomic for readers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_VERSION_NAME = re.compile(r"[0-9]+")

Fingerprint = tuple[tuple[str, int, int], ...]


def version_of(entry: Path) -> int | None:
    """The version an entry's name stands for (a positive integer), or None."""
    if _VERSION_NAME.fullmatch(entry.name) and int(entry.name) > 0:
        return int(entry.name)
    return None


def find_versions(model_dir: Path) -> list[tuple[int, Path]]:
    """Versions with a ``saved_model.pb`` in ``model_dir``, newest first."""
    try:
        entries = list(model_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [
        (version, entry)
        for entry in entries
        if (version := version_of(entry)) is not None and (entry / "saved_model.pb").is_file()
    ]
    return sorted(found, key=lambda item: item[0], reverse=True)


def fingerprint(path: Path) -> Fingerprint:
    """Relative paths, sizes and mtimes of every file under ``path``: changes when it does."""
    entries = []
    for directory, _, files in os.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))
