"""Discovery: which entries of a model directory are versions, and when their files change.

A version is ``<model_dir>/<n>/`` where ``n`` matches ``[0-9]+`` (not ``str.isdigit``, which
takes "²"), is positive, and the directory holds a ``saved_model.pb``. Every other entry
(``.tmp-export-*``, ``abc``, ``1.5``) is ignored: that is what makes publishing by ``rename``
atomic for readers. A number beyond ``MAX_VERSION`` is still found here, so that the store
can refuse it (logged and counted once, as any version that cannot be served).
"""

from __future__ import annotations

import os
from pathlib import Path

# Versions are int64 (MAX_VERSION), as in TF Serving and in both protocols' clients; and JSON
# encoders (orjson) cannot write a larger integer at all.
from modelrepo.format import MAX_VERSION as MAX_VERSION
from modelrepo.format import version_number

# What a version is made of, for :func:`fingerprint` (paths relative to the version).
_FINGERPRINTED = (
    ".",
    "saved_model.pb",
    "fingerprint.pb",
    "variables",
    "variables/variables.index",
    "assets",
    "assets.extra",
    "assets.extra/evaluation.json",
    "assets.extra/golden.json",
)

# (relative path, device, inode, size, mtime in ns) of each of those that exists.
Fingerprint = tuple[tuple[str, int, int, int, int], ...]


def version_of(entry: Path) -> int | None:
    """The version an entry's name stands for (a positive integer), or None."""
    return version_number(entry.name)


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
    """Identity, size and mtime of the version directory, its subdirectories and the files
    the server and TensorFlow open first: changes when the version is deleted, replaced or
    re-published, at a cost that does not grow with its number of files.

    The poller takes this of every loaded version (and of every version it would consider) on
    every scan, so walking all files would cost a full ``stat`` of each, every interval, while
    idle. A fixed handful of ``stat`` calls (symlinks followed: a re-pointed link is a
    different inode) still sees what happens to a published version: a version is published
    by ``rename``, so replacing or re-creating it gives new inodes; adding, removing or
    renaming a file changes its directory's mtime; rewriting saved_model.pb, the variables
    index or the JSON files in place changes their size or mtime. Not seen: a data shard
    rewritten in place alone; versions are immutable, and such a rewrite is not publishing.
    """
    entries = []
    for name in _FINGERPRINTED:
        try:
            stat = os.stat(path / name)
        except OSError:
            continue
        entries.append((name, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)
