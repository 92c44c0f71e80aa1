"""Reading and replacing the repository's small files safely.

Whoever can write into a repository decides what its paths are. A file is read only if the
descriptor actually opened is a regular file (``fstat``, not a ``stat`` of the path that could
be swapped in between), opened without blocking (a FIFO would wait for a writer forever) and
read only up to its cap (a device such as ``/dev/zero`` never ends). JSON is parsed strictly:
duplicate keys and ``NaN``/``Infinity`` are errors, not silently accepted.

A file is replaced in one step: written to a temporary file in the same directory (whose name
starts with ``.tmp-``, so no reader takes it for anything), flushed to disk, then renamed over
the old one. A reader sees the old file or the new one, never a mix; a crash leaves the old.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from modelrepo.errors import FormatError, RepositoryError

TEMP_PREFIX = ".tmp-"
_READ_CHUNK = 1 << 16
# O_NONBLOCK: opening a FIFO waits for a writer without it. O_NOCTTY: a terminal device must
# not become our controlling terminal.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def kind_of(mode: int) -> str:
    """What a non-regular file is, for a message."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_regular_file(path: Path, max_bytes: int, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``.

    FileNotFoundError if it does not exist (callers decide what absence means); FormatError if
    it is something else than a regular file or too large; RepositoryError if unreadable.
    """
    flags = OPEN_FLAGS if follow_symlinks else OPEN_FLAGS | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise FormatError(f"{path}: must be a regular file, is a symlink") from exc
        raise RepositoryError(f"{path}: unreadable: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FormatError(f"{path}: must be a regular file, is {kind_of(info.st_mode)}")
        if info.st_size > max_bytes:
            raise FormatError(
                f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} allowed"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise FormatError(f"{path}: grew beyond the {max_bytes:,} bytes allowed while read")
    except OSError as exc:
        raise RepositoryError(f"{path}: unreadable: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


class _DuplicateKey(ValueError):
    pass


def excerpt_key(key: str) -> str:
    return repr(key) if len(key) <= 80 else f"{key[:80]!r}..."


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(f"duplicate key {excerpt_key(key)}")
        document[key] = value
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes, where: str) -> Any:
    """``data`` as strict JSON (UTF-8, no duplicate keys, no NaN/Infinity), or FormatError."""
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
        )
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where}: not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    except RecursionError as exc:
        raise FormatError(f"{where}: not valid JSON: nested too deeply") from exc
    except ValueError as exc:
        raise FormatError(f"{where}: not valid JSON: {exc}") from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one step (temp file, fsync, rename, fsync the dir).

    On any failure the old file is left as it was and the temporary file removed.
    """
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-", dir=path.parent)
    except OSError as exc:
        raise RepositoryError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise RepositoryError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        raise
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        raise RepositoryError(f"{path}: written, but not synced: {exc.strerror or exc}") from exc


def dump_json(document: Any) -> bytes:
    """The bytes a repository file holds: indented JSON, a final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
