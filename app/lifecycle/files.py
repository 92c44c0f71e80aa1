"""Reading a version's files on the poller: regular files only, size-capped, never blocking.

Anyone who can write into the model directory decides what these paths are. Symlinks are
followed (mounted config and synced directories are made of them), but what they lead to must
be a regular file: a FIFO blocks ``open`` and ``read`` until a writer comes (forever, on the
poller thread, or at start-up before the server listens), and a device such as ``/dev/zero``
never ends. A file read whole is read only up to its cap.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.errors import ModelLoadError
from modelrepo import files as repository_files
from modelrepo.errors import ModelRepoError

# evaluation.json and golden.json: ours are a few hundred bytes; nothing legitimate nears this.
MAX_JSON_BYTES = 1 << 20


class MissingFile(ModelLoadError):
    """The file (or the target of a symlink to it) does not exist."""


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` (symlinks followed) if it is a regular file of at most
    ``max_bytes``; ModelLoadError (MissingFile if absent) otherwise.

    The repository's own safe read (:func:`modelrepo.files.read_regular_file`): the type is
    taken from ``fstat`` of the descriptor actually read, not from a ``stat`` of the path that
    could be swapped in between, the open never blocks, and at most ``max_bytes + 1`` bytes are
    read, so a file that grows after the check still cannot exceed the cap.
    """
    try:
        return repository_files.read_regular_file(path, max_bytes)
    except FileNotFoundError as exc:
        raise MissingFile(f"{path}: missing") from exc
    except ModelRepoError as exc:
        raise ModelLoadError(str(exc)) from exc


def read_json_file(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON document in ``path`` (UTF-8, read by :func:`read_regular_file`)."""
    data = read_regular_file(path, max_bytes)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    except ValueError as exc:
        raise ModelLoadError(f"{path}: not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ModelLoadError(f"{path}: not valid JSON: nested too deeply") from exc


def _walk(root: Path) -> Iterator[tuple[Path, os.stat_result | OSError]]:
    """Every entry under ``root``, symlinks followed, with its ``stat`` (or why it has none).

    A directory reached twice (a symlink loop, or two links to one directory) is entered once.
    """
    seen: set[tuple[int, int]] = set()
    pending = [(root, os.stat(root))]
    while pending:
        directory, info = pending.pop()
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        with os.scandir(directory) as entries:
            for entry in entries:
                path = Path(entry.path)
                try:
                    entry_info = os.stat(path)  # follows symlinks; never opens the file
                except OSError as exc:
                    yield path, exc
                    continue
                yield path, entry_info
                if stat.S_ISDIR(entry_info.st_mode):
                    pending.append((path, entry_info))


def check_regular_files(root: Path) -> None:
    """ModelLoadError unless every file under ``root`` is a regular file (or a directory).

    TensorFlow's loader opens the files of a SavedModel with blocking reads, holding the GIL
    while it waits: a FIFO there would stop the whole process for good (the poller, and every
    request with it), a device never end. So the whole version is checked before TensorFlow
    reads any of it. Not caught: a file swapped for a FIFO in the instant between this check
    and the load, by someone who may write into the model directory.
    """
    try:
        for path, info in _walk(root):
            if isinstance(info, OSError):
                reason = "a dangling symlink" if info.errno == errno.ENOENT else info.strerror
                raise ModelLoadError(f"{path}: must be a regular file, is {reason}")
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise ModelLoadError(
                    f"{path}: must be a regular file, is {repository_files.kind_of(info.st_mode)}"
                )
    except OSError as exc:
        raise ModelLoadError(f"{root}: unreadable: {exc.strerror or exc}") from exc
