"""Sync from object storage: ``XOR_MODEL_DIR`` kept as a local cache of an S3 repository.

Runs on the model poller's thread, right before each scan of the cache (the store calls
:meth:`ModelSync.sync` first thing in ``refresh``): a version downloaded by one poll is loaded
by the same poll, with no second thread touching the cache, and the store's stall watchdog
also covers a sync that hangs. Each poll is cheap: one conditional GET (If-None-Match) of
``labels.json`` and one of ``index.json``, answered 304 while nothing changed; a full listing
only every ``listing_interval_seconds`` as a safety net for index entries lost to concurrent
publishes, and when versions leave the index (or there is no index.json).

What is downloaded: the labelled versions and the newest ``keep`` of the repository (what the
store would load), each into ``<cache>/.tmp-sync-<n>-*`` (discovery ignores ``.tmp-`` names),
every file's size and sha256 checked as written, the manifest last, then renamed into place.
In the cache a version without its ``MANIFEST.json`` does not exist (the store is told so).
``labels.json`` is written into the cache atomically after the downloads, so the store's label
handling applies unchanged. Cached versions that left the repository and are neither labelled
nor loaded are evicted (renamed to a ``.tmp-`` name, then removed).

Failures (a checksum mismatch, missing files, an unreachable store, bad credentials, an
invalid document, a cache that cannot be written) are logged once per cause, counted by
reason, and retried with exponential backoff (per version for a version's download); what is
loaded keeps serving. Messages come from ``modelrepo``, which never quotes a credential.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.lifecycle.discovery import version_of
from modelrepo import Labels, ModelRepoError
from modelrepo.errors import (
    FormatError,
    RepositoryError,
    RepositoryNotFound,
    UnknownVersion,
    VerificationError,
)
from modelrepo.files import TEMP_PREFIX
from modelrepo.format import MANIFEST_FILE
from modelrepo.repository import LocalRepository
from modelrepo.s3 import NOT_MODIFIED, S3Repository

log = logging.getLogger(__name__)

LISTING_INTERVAL_SECONDS = 600.0
# Retries of the whole sync back off from one poll interval, doubling, to at most 10 intervals
# (at least 5 s, at most 60 s, never less than one interval): a store that comes back is synced
# from again within that.
BACKOFF_CAP_INTERVALS = 10
MIN_BACKOFF_CAP_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 60.0
MAX_VERSION_BACKOFF_SECONDS = 300.0
SYNC_PREFIX = f"{TEMP_PREFIX}sync-"
EVICT_PREFIX = f"{TEMP_PREFIX}evict-"

# The ``reason`` of xor_model_sync_errors_total.
CHECKSUM_MISMATCH = "checksum_mismatch"
MISSING_FILES = "missing_files"
UNREACHABLE = "unreachable"
ACCESS_DENIED = "access_denied"
BUCKET_MISSING = "bucket_missing"
INVALID_DOCUMENT = "invalid_document"
CACHE_IO = "cache_io"
REASONS = (
    CHECKSUM_MISMATCH,
    MISSING_FILES,
    UNREACHABLE,
    ACCESS_DENIED,
    BUCKET_MISSING,
    INVALID_DOCUMENT,
    CACHE_IO,
)


class SyncObserver(Protocol):
    """Told about each sync (the metrics implement it)."""

    def sync_finished(self, *, success: bool, seconds: float, timestamp: float) -> None: ...

    def sync_error(self, *, reason: str) -> None: ...

    def sync_downloaded(self, *, size: int) -> None: ...

    def sync_requests_made(self, *, kind: str, count: int) -> None: ...


def reason_of(exc: BaseException) -> str:
    """The error metric's reason for a failure of the sync."""
    if isinstance(exc, OSError):
        return CACHE_IO
    if isinstance(exc, VerificationError):
        text = str(exc)
        if "sha256" in text or "size differs" in text or "bytes, the manifest says" in text:
            return CHECKSUM_MISMATCH
        return MISSING_FILES
    if isinstance(exc, UnknownVersion):
        return MISSING_FILES
    if isinstance(exc, RepositoryNotFound):
        return BUCKET_MISSING
    if isinstance(exc, FormatError):
        return INVALID_DOCUMENT
    if isinstance(exc, RepositoryError) and "access denied" in str(exc):
        return ACCESS_DENIED
    return UNREACHABLE


def cached_versions(cache: Path) -> dict[int, Path]:
    """The versions of the cache: integer directories holding their MANIFEST.json."""
    try:
        entries = list(cache.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {
        version: entry
        for entry in entries
        if (version := version_of(entry)) is not None
        and entry.name == str(version)
        and (entry / MANIFEST_FILE).is_file()
    }


@dataclass
class _Backoff:
    failures: int = 0
    next_attempt: float = 0.0

    def failed(self, base: float, cap: float, now: float) -> None:
        self.failures += 1
        self.next_attempt = now + min(cap, base * 2 ** (self.failures - 1))


@dataclass
class _State:
    labels_etag: str | None = None
    labels: Labels | None = None  # None: not fetched yet
    labels_written: Labels | None = None
    index_etag: str | None = None
    indexed: frozenset[int] = frozenset()
    has_index: bool = False
    listed: frozenset[int] = frozenset()
    last_listing: float | None = None
    backoff: _Backoff = field(default_factory=_Backoff)
    version_backoff: dict[int, _Backoff] = field(default_factory=dict)
    # cause -> message of the failures logged and not yet recovered from.
    troubles: dict[str, str] = field(default_factory=dict)
    last_success: float | None = None


class ModelSync:
    """Keeps ``cache`` a copy of ``repository``'s needed versions and its labels (see the
    module docstring). Not thread-safe: call :meth:`sync` from one thread (the poller)."""

    def __init__(
        self,
        repository: S3Repository,
        cache: Path,
        *,
        keep: int,
        poll_interval_seconds: float,
        loaded: Callable[[], frozenset[int]] = frozenset,
        observer: SyncObserver | None = None,
        listing_interval_seconds: float = LISTING_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self.cache = cache
        self.keep = keep
        self.base_backoff = poll_interval_seconds
        self.backoff_cap = max(
            poll_interval_seconds,
            min(
                MAX_BACKOFF_SECONDS,
                max(MIN_BACKOFF_CAP_SECONDS, BACKOFF_CAP_INTERVALS * poll_interval_seconds),
            ),
        )
        self.listing_interval = listing_interval_seconds
        self._loaded = loaded
        self._observer = observer
        self._clock = clock
        self._state = _State()
        self._cleaned = False

    @property
    def source(self) -> str:
        return self.repository.location

    @property
    def last_success(self) -> float | None:
        """time.time() of the last sync that completed without an error, or None."""
        return self._state.last_success

    @property
    def problems(self) -> dict[str, str]:
        """cause -> message of the failures not yet recovered from."""
        return dict(self._state.troubles)

    def sync(self) -> None:
        """One poll: fetch labels and index (conditionally), download what is new, write the
        labels, evict what left. Never raises (errors are logged once and counted)."""
        state = self._state
        now = self._clock()
        if now < state.backoff.next_attempt:
            return
        start = time.perf_counter()
        ok = False
        try:
            ok = self._sync(now)
        except (ModelRepoError, OSError) as exc:
            self._trouble("repository", exc)
            state.backoff.failed(self.base_backoff, self.backoff_cap, now)
        except Exception as exc:  # a surprise must not stop the poller
            log.exception(
                "syncing from %s failed unexpectedly", self.source, extra={"event": "sync_failed"}
            )
            self._count(UNREACHABLE if not isinstance(exc, OSError) else CACHE_IO)
            state.backoff.failed(self.base_backoff, self.backoff_cap, now)
        else:
            state.backoff = _Backoff()
            self._resolved("repository")
        seconds = time.perf_counter() - start
        if ok:
            state.last_success = time.time()
        if self._observer is not None:
            self._observer.sync_finished(
                success=ok, seconds=seconds, timestamp=state.last_success or 0.0
            )

    # --- one sync -----------------------------------------------------------------------------

    def _sync(self, now: float) -> bool:
        """True when everything needed is in the cache."""
        state = self._state
        self.cache.mkdir(parents=True, exist_ok=True)
        if not self._cleaned:
            self._remove_leftovers()
            self._cleaned = True
        labels = self.repository.fetch_labels(state.labels_etag)
        self._requests("labels")
        if labels is not NOT_MODIFIED:
            state.labels, state.labels_etag = labels.labels, labels.etag
        index = self.repository.fetch_index(state.index_etag)
        self._requests("index")
        dropped = False
        if index is not NOT_MODIFIED:
            previous = state.indexed
            state.index_etag = index.etag
            state.has_index = index.index is not None
            state.indexed = frozenset(
                e.version for e in (index.index.versions if index.index else ())
            )
            # Versions left the index (deleted, or an entry lost to a concurrent publish): a
            # listing now says which, instead of the last listing keeping them for minutes.
            dropped = bool(previous - state.indexed)
        due = state.last_listing is None or now - state.last_listing >= self.listing_interval
        if due or dropped or not state.has_index:
            state.listed = frozenset(info.version for info in self.repository.list_versions())
            state.last_listing = now
            self._requests("list")
        in_repository = state.indexed | state.listed
        current = state.labels or Labels()
        labelled = frozenset(current.labels.values())
        newest = sorted(in_repository, reverse=True)[: self.keep]
        wanted = sorted(labelled | set(newest), reverse=True)
        cached = cached_versions(self.cache)
        complete = True
        for version in wanted:
            if version not in cached and not self._download(version, now):
                complete = False
        if state.labels_written != current:
            LocalRepository(self.cache).write_labels(current)
            state.labels_written = current
        self._evict(cached_versions(self.cache), in_repository | labelled)
        return complete

    def _download(self, version: int, now: float) -> bool:
        state = self._state
        backoff = state.version_backoff.get(version)
        if backoff is not None and now < backoff.next_attempt:
            return False
        cause = f"version {version}"
        temp = Path(tempfile.mkdtemp(prefix=f"{SYNC_PREFIX}{version}-", dir=self.cache))
        start = time.perf_counter()
        self._requests("download")
        try:
            manifest = self.repository.download_version(version, temp)
            temp.rename(self.cache / str(version))
        except (ModelRepoError, OSError) as exc:
            shutil.rmtree(temp, ignore_errors=True)
            if isinstance(exc, VerificationError | UnknownVersion):
                self._trouble(cause, exc)
                backoff = state.version_backoff.setdefault(version, _Backoff())
                backoff.failed(self.base_backoff, MAX_VERSION_BACKOFF_SECONDS, now)
                return False
            raise  # the store or the cache: the whole sync backs off
        state.version_backoff.pop(version, None)
        self._resolved(cause)
        size = sum(entry.size for entry in manifest.files)
        if self._observer is not None:
            self._observer.sync_downloaded(size=size)
        log.info(
            "version %d downloaded from %s into %s (%d files, %d bytes, %.2f s)",
            version,
            self.source,
            self.cache,
            len(manifest.files),
            size,
            time.perf_counter() - start,
            extra={
                "event": "sync_downloaded",
                "model_version": version,
                "bytes": size,
                "files": len(manifest.files),
            },
        )
        return True

    def _evict(self, cached: dict[int, Path], keep: frozenset[int]) -> None:
        loaded = self._loaded()
        for version, path in cached.items():
            if version in keep or version in loaded:
                continue
            doomed = Path(tempfile.mkdtemp(prefix=f"{EVICT_PREFIX}{version}-", dir=self.cache))
            path.rename(doomed / str(version))  # gone for discovery in one rename
            shutil.rmtree(doomed, ignore_errors=True)
            log.info(
                "version %d left %s: evicted from %s",
                version,
                self.source,
                self.cache,
                extra={"event": "sync_evicted", "model_version": version},
            )

    def _remove_leftovers(self) -> None:
        """Temporary directories of an earlier process that stopped mid-download."""
        for entry in self.cache.iterdir():
            if entry.name.startswith((SYNC_PREFIX, EVICT_PREFIX)) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    # --- errors -------------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        if self._observer is not None:
            self._observer.sync_error(reason=reason)

    def _requests(self, kind: str, count: int = 1) -> None:
        if self._observer is not None:
            self._observer.sync_requests_made(kind=kind, count=count)

    def _trouble(self, cause: str, exc: BaseException) -> None:
        """Count a failure; log it only when its cause's message is new."""
        reason = reason_of(exc)
        self._count(reason)
        message = str(exc) if isinstance(exc, ModelRepoError) else f"{self.cache}: {exc}"
        if self._state.troubles.get(cause) == message:
            return
        self._state.troubles[cause] = message
        log.error(
            "sync from %s failed (%s): %s; retried with backoff, the loaded versions keep serving",
            self.source,
            reason,
            message,
            extra={"event": "sync_failed", "reason": reason, "cause": cause},
        )

    def _resolved(self, cause: str) -> None:
        if self._state.troubles.pop(cause, None) is not None:
            log.info(
                "sync from %s works again (%s)",
                self.source,
                cause,
                extra={"event": "sync_recovered", "cause": cause},
            )
