"""Building, writing and verifying a version's MANIFEST.json on a local file system.

A version holds regular files and directories only. The walk opens every directory and file
relative to its parent's descriptor with ``O_NOFOLLOW``, so a symlink anywhere in a version
(the version directory itself included) is refused, and none can be swapped in between a check
and the read: S3 has no symlinks, and a followed one would make the manifest vouch for bytes
that live outside the version and can change without it. FIFOs, devices and sockets are
refused without being opened for reading in a blocking way (see ``files.py``).

Verification reads every byte once: each file is checked for its size before it is hashed
(a mismatch fails at once), and a file that is not listed, or listed but missing, fails it:
versions are immutable, so an extra file is as wrong as a changed one. Directories are not
listed (S3 has none); an empty directory passes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelrepo.errors import FormatError, RepositoryError, VerificationError
from modelrepo.files import OPEN_FLAGS, dump_json, kind_of, parse_json, read_regular_file
from modelrepo.format import MANIFEST_FILE, MAX_MANIFEST_BYTES, FileEntry, Manifest

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Deeper than any SavedModel; bounds the descriptors a hostile tree can make us hold open.
MAX_DEPTH = 32
# Problems quoted in one verification error; the rest are counted.
_MAX_PROBLEMS = 5


@dataclass(frozen=True)
class _Found:
    path: str
    fd: int
    info: os.stat_result


def _open_dir(name: str | Path, dir_fd: int | None, shown: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                info = None
            what = kind_of(info.st_mode) if info else "not a directory"
            raise VerificationError(f"{shown}: must be a directory, is {what}") from exc
        raise RepositoryError(f"{shown}: unreadable: {exc.strerror or exc}") from exc


def _walk(root: Path, *, skip_manifest: bool) -> Iterator[_Found]:
    """Every regular file under ``root`` (its path relative to ``root``, POSIX, and an open
    descriptor the caller reads; closed when the caller asks for the next one).

    VerificationError at the first symlink, FIFO, device or socket, or a tree too deep.
    """
    try:
        root_fd = _open_dir(root, None, str(root))
    except FileNotFoundError as exc:
        raise VerificationError(f"{root}: missing") from exc
    stack: list[tuple[int, str]] = [(root_fd, "")]
    try:
        while stack:
            dir_fd, prefix = stack.pop()
            try:
                names = sorted(os.listdir(dir_fd))
                for name in names:
                    relative = f"{prefix}{name}"
                    if not prefix and name == MANIFEST_FILE and skip_manifest:
                        continue
                    shown = f"{root}/{relative}"
                    try:
                        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed meanwhile: as if never listed
                    if stat.S_ISDIR(info.st_mode):
                        if relative.count("/") + 1 >= MAX_DEPTH:
                            raise VerificationError(f"{shown}: nested more than {MAX_DEPTH} deep")
                        stack.append((_open_dir(name, dir_fd, shown), f"{relative}/"))
                        continue
                    if not stat.S_ISREG(info.st_mode):
                        raise VerificationError(
                            f"{shown}: must be a regular file, is {kind_of(info.st_mode)} "
                            "(a version holds regular files and directories only)"
                        )
                    fd = os.open(name, OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                    try:
                        opened = os.fstat(fd)
                        if not stat.S_ISREG(opened.st_mode):  # swapped since the stat
                            raise VerificationError(
                                f"{shown}: must be a regular file, is {kind_of(opened.st_mode)}"
                            )
                        yield _Found(relative, fd, opened)
                    finally:
                        os.close(fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise RepositoryError(f"{root}: unreadable: {exc.strerror or exc}") from exc
    finally:
        for dir_fd, _ in stack:
            os.close(dir_fd)


def _hash(fd: int, limit: int) -> tuple[int, str]:
    """Size and sha256 of what ``fd`` holds, reading at most ``limit + 1`` bytes."""
    digest = hashlib.sha256()
    size = 0
    while size <= limit:
        chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def build_manifest(version_dir: Path, version: int) -> Manifest:
    """The manifest of the files now in ``version_dir`` (a MANIFEST.json there is skipped).

    VerificationError if the directory holds a symlink or anything but regular files and
    directories; FormatError if it is no SavedModel (no saved_model.pb).
    """
    entries = []
    for found in _walk(version_dir, skip_manifest=True):
        size, sha256 = _hash(found.fd, found.info.st_size)
        if size != found.info.st_size:
            raise VerificationError(f"{version_dir}/{found.path}: changed while read")
        entries.append(FileEntry(found.path, size, sha256))
    return Manifest.build(version, entries)


def write_manifest(version_dir: Path, manifest: Manifest) -> bytes:
    """Write ``MANIFEST.json`` into ``version_dir`` (a directory nobody reads yet: publishing
    renames it into place afterwards); returns the bytes written."""
    data = dump_json(manifest.to_document())
    path = version_dir / MANIFEST_FILE
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise RepositoryError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return data


def read_manifest_file(version_dir: Path, version: int) -> tuple[Manifest, bytes]:
    """The manifest in ``version_dir`` and its bytes; FileNotFoundError if it has none.

    FormatError if it breaks the format or names another version than ``version``.
    """
    path = version_dir / MANIFEST_FILE
    data = read_regular_file(path, MAX_MANIFEST_BYTES, follow_symlinks=False)
    manifest = Manifest.parse(parse_json(data, str(path)), str(path))
    if manifest.version != version:
        raise FormatError(f"{path}: describes version {manifest.version}, not {version}")
    return manifest, data


def verify_files(version_dir: Path, manifest: Manifest) -> None:
    """VerificationError unless ``version_dir`` holds exactly the manifest's files, each of
    its size and sha256 (regular files only, no symlinks; the MANIFEST.json aside)."""
    listed = {entry.path: entry for entry in manifest.files}
    problems: list[str] = []
    seen: set[str] = set()
    for found in _walk(version_dir, skip_manifest=True):
        seen.add(found.path)
        entry = listed.get(found.path)
        if entry is None:
            problems.append(f"{found.path}: not in the manifest")
        elif found.info.st_size != entry.size:
            problems.append(
                f"{found.path}: {found.info.st_size:,} bytes, the manifest says {entry.size:,}"
            )
        else:
            size, sha256 = _hash(found.fd, entry.size)
            if size != entry.size:
                problems.append(f"{found.path}: {size:,} bytes, the manifest says {entry.size:,}")
            elif sha256 != entry.sha256:
                problems.append(f"{found.path}: sha256 {sha256} differs from the manifest's")
    problems.extend(f"{path}: missing" for path in sorted(set(listed) - seen))
    _raise_if_any(version_dir, problems)


def _raise_if_any(version_dir: Path, problems: list[str]) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:_MAX_PROBLEMS])
    more = len(problems) - _MAX_PROBLEMS
    suffix = f"; and {more} more" if more > 0 else ""
    raise VerificationError(f"{version_dir}: fails its manifest: {shown}{suffix}")


def copy_verified(source: Path, target: Path, manifest: Manifest) -> None:
    """Copy the manifest's files from ``source`` into the (new, empty) ``target``, checking
    each copied byte stream against the manifest (so a source changed since the manifest was
    built cannot slip through), and fsync each file written."""
    listed = {entry.path: entry for entry in manifest.files}
    copied: set[str] = set()
    problems: list[str] = []
    for found in _walk(source, skip_manifest=True):
        entry = listed.get(found.path)
        if entry is None:
            problems.append(f"{found.path}: not in the manifest")
            continue
        destination = target / found.path
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            with open(destination, "xb") as out:
                size, sha256 = _copy(found.fd, out.fileno(), entry.size)
                os.fsync(out.fileno())
        except OSError as exc:
            raise RepositoryError(f"{destination}: cannot write: {exc.strerror or exc}") from exc
        if (size, sha256) != (entry.size, entry.sha256):
            problems.append(f"{found.path}: changed while copied")
        copied.add(found.path)
    problems.extend(f"{path}: missing" for path in sorted(set(listed) - copied))
    _raise_if_any(source, problems)


def _copy(source_fd: int, target_fd: int, limit: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while size <= limit:
        chunk = os.read(source_fd, min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(target_fd, view) :]
        size += len(chunk)
    return size, digest.hexdigest()


def tree_size(root: Path) -> tuple[int, int]:
    """Bytes and number of regular files under ``root`` (symlinks not followed), for versions
    without a manifest; unreadable parts are skipped."""
    total = files = 0
    for directory, _, names in os.walk(root):  # errors (an unreadable dir) are skipped
        for name in names:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
                files += 1
    return total, files
