"""Repositories: the ``Repository`` interface and its local-directory implementation.

``Repository`` is what commands and training use; each backend implements its few primitive
operations (list, read, write one file atomically, publish, delete, lock) and inherits the rest.
``LocalRepository`` keeps a repository in a directory; ``S3Repository`` implements the
same interface in ``modelrepo/s3.py`` (publish: upload the files, the manifest last, then
index.json; labels: one PUT; delete: the manifest first); ``open_repository`` returns it for
``s3://`` URLs.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modelrepo.errors import (
    FormatError,
    LockTimeout,
    RepositoryError,
    RepositoryNotFound,
    UnknownVersion,
    UsageError,
    VerificationError,
    VersionExists,
    excerpt,
)
from modelrepo.files import (
    TEMP_PREFIX,
    dump_json,
    fsync_dir,
    kind_of,
    parse_json,
    read_regular_file,
    write_atomically,
)
from modelrepo.format import (
    INDEX_FILE,
    LABELS_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    MAX_INDEX_BYTES,
    MAX_LABELS_BYTES,
    REQUIRED_FILE,
    Index,
    IndexEntry,
    Labels,
    Manifest,
    check_version,
    version_from_name,
)
from modelrepo.manifest import (
    build_manifest,
    copy_verified,
    read_manifest_file,
    tree_size,
    verify_files,
    write_manifest,
)

log = logging.getLogger(__name__)

EVALUATION_FILE = "assets.extra/evaluation.json"
MAX_EVALUATION_BYTES = 1 << 20
DELETING_PREFIX = ".deleting-"
PUBLISH_PREFIX = f"{TEMP_PREFIX}publish-"
# Longer than any publish or export takes: a younger .tmp-* entry may be one in progress.
STALE_SECONDS = 3600.0
DEFAULT_LOCK_TIMEOUT = 30.0
# O_NONBLOCK: a FIFO planted under the lock's name must not block the open (fstat refuses it).
_LOCK_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class VersionInfo:
    """A version as listed: its number, its entry's name, whether it has a MANIFEST.json."""

    version: int
    name: str
    has_manifest: bool


@dataclass(frozen=True)
class ManifestRecord:
    manifest: Manifest
    sha256: str


Status = Literal["verified", "unverified", "failed"]


@dataclass(frozen=True)
class VersionCheck:
    """What ``xor-models list`` says of a version.

    ``verified``: has a manifest and its files match it; ``unverified``: no manifest (a plain
    local directory's older or hand-dropped version); ``failed``: has a manifest, and it is
    broken or the files do not match it (``problem`` says how).
    """

    version: int
    status: Status
    size: int | None
    files: int | None
    problem: str | None = None


class Repository(abc.ABC):
    """A model repository (see the package docstring for the format).

    ``require_manifest``: a version without a MANIFEST.json does not exist (always so on S3
    and in a server's cache of S3); otherwise it is listed as unverified.

    Methods that change the repository do not lock it themselves, except ``publish``: a
    read-modify-write (of labels.json, of index.json, of the set of versions) runs inside
    ``with repo.locked():`` so that two writers cannot lose each other's update.
    """

    location: str
    require_manifest: bool

    # --- primitives each backend implements ---------------------------------------------------

    @abc.abstractmethod
    def list_versions(self) -> list[VersionInfo]:
        """The versions, oldest first."""

    @abc.abstractmethod
    def read_manifest(self, version: int) -> ManifestRecord:
        """The version's parsed manifest and the sha256 of its bytes.

        UnknownVersion if no such version; VerificationError if it has no manifest;
        FormatError if the manifest breaks the format.
        """

    @abc.abstractmethod
    def verify_version(self, version: int) -> Manifest:
        """The manifest, once every file of the version was checked against it.

        UnknownVersion, VerificationError (no manifest, or files that do not match it),
        FormatError (a broken manifest).
        """

    @abc.abstractmethod
    def unverified_size(self, version: int) -> tuple[int, int]:
        """Bytes and number of files of a version without a manifest."""

    @abc.abstractmethod
    def read_version_file(self, version: int, path: str, max_bytes: int) -> bytes:
        """A file of a version (FileNotFoundError if absent), at most ``max_bytes``."""

    @abc.abstractmethod
    def read_labels(self) -> Labels:
        """labels.json; ``Labels()`` when there is none. FormatError if it is broken."""

    @abc.abstractmethod
    def write_labels(self, labels: Labels) -> None:
        """Replace labels.json in one write (a reader sees the old or the new, whole)."""

    @abc.abstractmethod
    def read_index(self) -> Index | None:
        """index.json, or None when there is none. FormatError if it is broken."""

    @abc.abstractmethod
    def write_index(self, index: Index) -> None:
        """Replace index.json in one write."""

    @abc.abstractmethod
    def publish(self, source: Path, version: int) -> VersionInfo:
        """Publish the local directory ``source`` as ``version``: its files, then its manifest,
        made visible to readers at once, then index.json rewritten.

        A MANIFEST.json in ``source`` must describe ``version`` and match the files; without
        one, it is built. VersionExists if ``version`` exists (versions are immutable). An
        interrupted publish leaves nothing a reader takes for a version.
        """

    @abc.abstractmethod
    def delete_version(self, version: int) -> None:
        """Delete a version such that, from its first step on, it is no longer a version."""

    @abc.abstractmethod
    def leftovers(self, older_than_seconds: float = STALE_SECONDS) -> list[str]:
        """Names of what interrupted publishes and deletions left behind (readers ignore
        them): deletions' at any age, temporary entries once older than the given age."""

    @abc.abstractmethod
    def remove_leftover(self, name: str) -> None: ...

    @abc.abstractmethod
    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the repository's write lock (re-entrant within one process)."""

    # --- built on them --------------------------------------------------------------------------

    def get_version(self, version: int) -> VersionInfo:
        for info in self.list_versions():
            if info.version == version:
                return info
        raise UnknownVersion(f"{self.location}: no version {version}")

    def check_version(self, info: VersionInfo) -> VersionCheck:
        if not info.has_manifest:
            size, files = self.unverified_size(info.version)
            return VersionCheck(info.version, "unverified", size, files)
        try:
            manifest = self.verify_version(info.version)
        except (FormatError, VerificationError) as exc:
            return VersionCheck(info.version, "failed", None, None, str(exc))
        return VersionCheck(info.version, "verified", manifest.total_size, len(manifest.files))

    def evaluation_accuracy(self, version: int) -> float | None:
        """``metrics.accuracy`` of the version's evaluation.json, if it has a readable one."""
        where = f"{self.location}/{version}/{EVALUATION_FILE}"
        try:
            data = self.read_version_file(version, EVALUATION_FILE, MAX_EVALUATION_BYTES)
            document: Any = parse_json(data, where)
        except (FileNotFoundError, RepositoryError):
            return None
        metrics = document.get("metrics") if isinstance(document, dict) else None
        accuracy = metrics.get("accuracy") if isinstance(metrics, dict) else None
        if isinstance(accuracy, bool) or not isinstance(accuracy, int | float):
            return None
        return float(accuracy) if 0 <= accuracy <= 1 else None

    def build_index(self) -> Index:
        """The index the listing gives now: each version with a manifest (that parses)."""
        entries = []
        for info in self.list_versions():
            if not info.has_manifest:
                continue
            try:
                record = self.read_manifest(info.version)
            except (FormatError, VerificationError) as exc:
                log.warning("version %d left out of %s: %s", info.version, INDEX_FILE, exc)
                continue
            entries.append(IndexEntry(info.version, record.sha256))
        return Index(tuple(entries))

    def rewrite_index(self) -> Index:
        """index.json rewritten from a listing (only if it changed); call under the lock."""
        index = self.build_index()
        try:
            current = self.read_index()
        except FormatError as exc:
            log.warning("replacing a broken %s: %s", INDEX_FILE, exc)
            current = None
        if current != index:
            self.write_index(index)
        return index


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_readable_and_durable(root: Path) -> None:
    """chmod a+rX (mkdtemp makes 0700 dirs) and fsync every directory under ``root`` (the
    files were fsynced as they were written)."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
        fsync_dir(Path(directory))


class LocalRepository(Repository):
    """A repository in a local directory (which must exist)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        require_manifest: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.location = str(path)
        self.require_manifest = require_manifest
        self.lock_timeout = lock_timeout
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        try:
            info = os.stat(self.path)
        except FileNotFoundError as exc:
            raise RepositoryNotFound(f"{self.location}: no such repository") from exc
        except OSError as exc:
            raise RepositoryNotFound(
                f"{self.location}: unreachable: {exc.strerror or exc}"
            ) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise RepositoryNotFound(f"{self.location}: not a repository (not a directory)")

    def __repr__(self) -> str:
        return f"LocalRepository({self.location!r}, require_manifest={self.require_manifest})"

    # --- versions -------------------------------------------------------------------------------

    def _info(self, name: str, version: int) -> VersionInfo | None:
        """The version the entry ``name`` holds, or None if it is no version (not a directory;
        no manifest where one is required; neither a manifest nor a saved_model.pb)."""
        directory = self.path / name
        if not directory.is_dir():
            return None
        has_manifest = os.path.lexists(directory / MANIFEST_FILE)
        if not has_manifest and (
            self.require_manifest or not (directory / REQUIRED_FILE).is_file()
        ):
            return None
        return VersionInfo(version, name, has_manifest)

    def _scan(self) -> dict[int, VersionInfo]:
        try:
            with os.scandir(self.path) as entries:
                names = [entry.name for entry in entries]
        except FileNotFoundError as exc:
            raise RepositoryNotFound(f"{self.location}: no such repository") from exc
        except OSError as exc:
            raise RepositoryError(f"{self.location}: unreadable: {exc.strerror or exc}") from exc
        found: dict[int, VersionInfo] = {}
        for name in names:
            version = version_from_name(name)
            if version is None or (info := self._info(name, version)) is None:
                continue
            if version in found:
                raise FormatError(
                    f"{self.location}: {found[version].name!r} and {name!r} both name "
                    f"version {version}: remove one"
                )
            found[version] = info
        return found

    def list_versions(self) -> list[VersionInfo]:
        return [info for _, info in sorted(self._scan().items())]

    def _directory(self, version: int) -> tuple[VersionInfo, Path]:
        # The name publishing gives first; other spellings ("007") need a listing.
        info = self._info(str(version), version) or self._scan().get(version)
        if info is None:
            raise UnknownVersion(f"{self.location}: no version {version}")
        return info, self.path / info.name

    def read_manifest(self, version: int) -> ManifestRecord:
        _, directory = self._directory(version)
        try:
            manifest, data = read_manifest_file(directory, version)
        except FileNotFoundError as exc:
            raise VerificationError(f"{directory}: has no {MANIFEST_FILE}") from exc
        return ManifestRecord(manifest, _sha256(data))

    def verify_version(self, version: int) -> Manifest:
        _, directory = self._directory(version)
        manifest = self.read_manifest(version).manifest
        verify_files(directory, manifest)
        return manifest

    def unverified_size(self, version: int) -> tuple[int, int]:
        _, directory = self._directory(version)
        return tree_size(directory)

    def read_version_file(self, version: int, path: str, max_bytes: int) -> bytes:
        _, directory = self._directory(version)
        return read_regular_file(directory / path, max_bytes, follow_symlinks=False)

    # --- labels.json and index.json -------------------------------------------------------------

    def read_labels(self) -> Labels:
        path = self.path / LABELS_FILE
        try:
            data = read_regular_file(path, MAX_LABELS_BYTES)
        except FileNotFoundError:
            return Labels()
        return Labels.parse(parse_json(data, str(path)), str(path))

    def write_labels(self, labels: Labels) -> None:
        # Parsed back before it is written: nothing that breaks the format reaches the file.
        document = labels.to_document()
        Labels.parse(document, LABELS_FILE)
        write_atomically(self.path / LABELS_FILE, dump_json(document))

    def read_index(self) -> Index | None:
        path = self.path / INDEX_FILE
        try:
            data = read_regular_file(path, MAX_INDEX_BYTES)
        except FileNotFoundError:
            return None
        return Index.parse(parse_json(data, str(path)), str(path))

    def write_index(self, index: Index) -> None:
        document = index.to_document()
        Index.parse(document, INDEX_FILE)
        write_atomically(self.path / INDEX_FILE, dump_json(document))

    # --- publishing and deleting ----------------------------------------------------------------

    def _refuse_existing(self, version: int) -> None:
        if version in self._scan() or os.path.lexists(self.path / str(version)):
            raise VersionExists(
                f"{self.location}: version {version} exists already (versions are immutable)"
            )

    def publish(self, source: Path, version: int) -> VersionInfo:
        version = check_version(version, "version")
        source = Path(source)
        if not source.is_dir():
            raise RepositoryError(f"{source}: not a directory to publish")
        try:
            manifest, _ = read_manifest_file(source, version)
        except FileNotFoundError:
            manifest = build_manifest(source, version)
        else:
            verify_files(source, manifest)
        self._refuse_existing(version)
        try:
            staging = Path(tempfile.mkdtemp(prefix=PUBLISH_PREFIX, dir=self.path))
        except OSError as exc:
            raise RepositoryError(f"{self.location}: cannot write: {exc.strerror or exc}") from exc
        try:
            copy_verified(source, staging, manifest)
            write_manifest(staging, manifest)  # last: a version is complete once it is there
            _make_readable_and_durable(staging)
            with self.locked():
                self._refuse_existing(version)
                target = self.path / str(version)
                try:
                    # rename(2) fails on a non-empty directory that took the name since the
                    # check (training renames its versions into place without this lock).
                    os.rename(staging, target)
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        raise VersionExists(
                            f"{self.location}: version {version} exists already"
                        ) from exc
                    raise
                fsync_dir(self.path)
                self._rewrite_index_after_publish(version)
        except OSError as exc:
            raise RepositoryError(
                f"{self.location}: cannot publish version {version}: {exc.strerror or exc}"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already if renamed
        log.info("published version %d in %s", version, self.location)
        return VersionInfo(version, str(version), True)

    def _rewrite_index_after_publish(self, version: int) -> None:
        """The version is published whatever happens here; a stale index.json is only a
        hint (the next publish or gc rewrites it from a listing), so a failure is a warning."""
        try:
            self.rewrite_index()
        except RepositoryError as exc:
            log.warning("version %d published, but %s not rewritten: %s", version, INDEX_FILE, exc)

    def delete_version(self, version: int) -> None:
        """Rename the version to a ``.deleting-`` name first (one atomic step: no reader sees
        it as a version from then on, with or without its manifest), then remove the files."""
        _, directory = self._directory(version)
        try:
            grave = Path(tempfile.mkdtemp(prefix=f"{DELETING_PREFIX}{version}-", dir=self.path))
            os.rename(directory, grave)  # replaces the empty directory just made
            fsync_dir(self.path)
        except OSError as exc:
            raise RepositoryError(
                f"{self.location}: cannot delete version {version}: {exc.strerror or exc}"
            ) from exc
        self._remove(grave)
        log.info("deleted version %d from %s", version, self.location)

    def _remove(self, path: Path) -> None:
        try:
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise RepositoryError(f"{path}: cannot remove: {exc.strerror or exc}") from exc

    def leftovers(self, older_than_seconds: float = STALE_SECONDS) -> list[str]:
        cutoff = time.time() - older_than_seconds
        names = []
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if entry.name.startswith(DELETING_PREFIX):
                        names.append(entry.name)
                    elif entry.name.startswith(TEMP_PREFIX):
                        with contextlib.suppress(OSError):
                            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                                names.append(entry.name)
        except OSError as exc:
            raise RepositoryError(f"{self.location}: unreadable: {exc.strerror or exc}") from exc
        return sorted(names)

    def remove_leftover(self, name: str) -> None:
        if not name.startswith((DELETING_PREFIX, TEMP_PREFIX)) or "/" in name:
            raise ValueError(f"not a leftover: {name!r}")
        self._remove(self.path / name)

    # --- the lock -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive ``flock`` of ``.modelrepo.lock`` in the repository (created if
        missing; a name the server ignores), waited for up to ``lock_timeout`` seconds."""
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            path = self.path / LOCK_FILE
            try:
                # Read-only is enough for flock: a lock file another user created (0644) locks.
                fd = os.open(path, _LOCK_FLAGS, 0o644)
            except OSError as exc:
                raise RepositoryError(
                    f"{path}: cannot lock the repository: {exc.strerror or exc}"
                ) from exc
            try:
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    raise FormatError(f"{path}: must be a regular file, is {kind_of(mode)}")
                self._flock(fd, path)
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0
            finally:
                os.close(fd)  # releases the lock

    def _flock(self, fd: int, path: Path) -> None:
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{path}: another process has held the repository's lock for over "
                        f"{self.lock_timeout:g} s; try again"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            except OSError as exc:
                raise RepositoryError(
                    f"{path}: cannot lock the repository: {exc.strerror or exc}"
                ) from exc


def open_repository(text: str, *, require_manifest: bool = False) -> Repository:
    """The repository ``text`` names: a local directory, or ``s3://BUCKET/PREFIX`` (where a
    manifest is always required; endpoint and credentials from the AWS variables)."""
    if not text:
        raise UsageError("the repository is a directory path or an s3:// URL, got ''")
    if _URL_SCHEME.match(text):
        scheme = text.split("://", 1)[0].lower()
        if scheme == "s3":
            # Imported here: local repositories (and the server without S3) never load obstore.
            from modelrepo.s3 import S3Repository, parse_s3_url

            return S3Repository(parse_s3_url(text))
        raise UsageError(f"{excerpt(text)}: unsupported repository URL ({scheme}://)")
    return LocalRepository(text, require_manifest=require_manifest)
