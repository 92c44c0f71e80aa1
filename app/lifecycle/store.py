"""The model store: the window of loaded versions, the poller, and the atomic swap.

The store keeps the newest ``keep`` valid versions loaded (``XOR_LOADED_VERSIONS``), as one
immutable tuple, newest first, replaced by one reference assignment: a request reads
:attr:`ModelStore.current` (the newest) or :meth:`ModelStore.get` once and finishes on that
model, so no request fails or waits while a newer version loads, and a client pinned to an
older version keeps being answered until that version falls out of the window (its model is
then released). Only versions that would enter the window are considered (at startup: the
newest ones that pass, falling back past broken ones). A version that fails is remembered with
a fingerprint of its files and retried only when its files change.

A loaded version whose files change on disk (deleted and re-created under the same number) is
loaded again from its new files and swapped in if they pass, because that is what a restart
would serve; if they fail, or the files are gone, the loaded model keeps serving from memory
and the log and metrics say that a restart would not bring it back.

The poller's liveness: every completed scan is reported to the observer (the metrics'
``xor_model_poll_last_success_timestamp_seconds``), and a watchdog thread logs one WARNING
when no scan has completed for a while (:func:`stall_threshold`). A stalled poller does not
change readiness: what is loaded keeps serving. (The watchdog is Python: it cannot speak while
native code holds the GIL, as TensorFlow does when a read blocks; hence the files of a version
are checked before TensorFlow reads them, ``app.lifecycle.files``.)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.errors import ModelLoadError
from app.lifecycle.discovery import Fingerprint, find_versions, fingerprint
from app.lifecycle.loading import LoadedModel, load_version

log = logging.getLogger(__name__)


# A scan is a directory listing and a few ``stat`` calls, or, with a new version, a load and
# warm-up (about a second for this model, longer for larger ones). Five intervals without one
# completed is not jitter or one slow load; and at least 30 s, so that a short interval does
# not turn an ordinary load into a warning.
STALL_INTERVALS = 5
STALL_MIN_SECONDS = 30.0


def stall_threshold(interval_seconds: float) -> float:
    """Seconds without a completed scan after which the poller counts as stalled."""
    return max(STALL_INTERVALS * interval_seconds, STALL_MIN_SECONDS)


class LoadObserver(Protocol):
    """Told about every load attempt and every completed scan (the metrics implement it)."""

    def load_finished(self, *, success: bool, seconds: float) -> None: ...

    def scan_finished(self, *, timestamp: float) -> None: ...


@dataclass
class _Failure:
    fingerprint: Fingerprint
    error: str


@dataclass
class _State:
    failures: dict[int, _Failure] = field(default_factory=dict)
    reason: str = "the model store has not scanned the model directory yet"
    # Fingerprints of the loaded versions' files when they were loaded.
    loaded_prints: dict[int, Fingerprint] = field(default_factory=dict)
    # Loaded versions whose files are gone or changed on disk since they were loaded.
    file_problems: dict[int, str] = field(default_factory=dict)
    # time.monotonic() of the last completed scan (or of the start of polling), and whether
    # the stall since then has been logged.
    last_scan: float = field(default_factory=time.monotonic)
    stall_logged: bool = False


class ModelStore:
    """Discovers, loads and serves versions from ``model_dir``; see the module docstring."""

    def __init__(
        self,
        model_dir: Path,
        observer: LoadObserver | None = None,
        *,
        keep: int = 1,
        min_accuracy: float = 0.0,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if not 0.0 <= min_accuracy <= 1.0:
            raise ValueError(f"min_accuracy must be within [0, 1], got {min_accuracy}")
        self.model_dir = model_dir
        self.keep = keep
        self.min_accuracy = min_accuracy
        self._observer = observer
        # The loaded versions, newest first. Replaced by one assignment, never mutated.
        self._loaded: tuple[LoadedModel, ...] = ()
        self._state = _State()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    @property
    def loaded(self) -> tuple[LoadedModel, ...]:
        """Every loaded version, newest first (at most ``keep``). Read it once per request."""
        return self._loaded

    @property
    def current(self) -> LoadedModel | None:
        """The served (newest loaded) model, or None before one is loaded."""
        loaded = self._loaded
        return loaded[0] if loaded else None

    def get(self, version: int) -> LoadedModel | None:
        """The loaded model of ``version``, or None if it is not (or no longer) loaded."""
        return next((model for model in self._loaded if model.version == version), None)

    @property
    def file_problems(self) -> dict[int, str]:
        """Loaded versions whose files vanished, or changed into files that cannot be served,
        since they were loaded.

        They keep serving from memory; this says why a restart would not bring them back.
        """
        return dict(self._state.file_problems)

    @property
    def unavailable_reason(self) -> str:
        """Why no model is served (meaningful while :attr:`current` is None)."""
        return self._state.reason

    def refresh(self) -> LoadedModel | None:
        """Load every valid version that belongs in the window; returns what is served.

        Blocking (TensorFlow work): call it from a worker thread, never from the event loop.
        """
        with self._refresh_lock:
            for version, path in find_versions(self.model_dir):  # newest first
                loaded = self._loaded
                if len(loaded) >= self.keep and version < loaded[-1].version:
                    break  # this one and all after it are older than the whole window
                if all(model.version != version for model in loaded):
                    self._try_load(version, path, fingerprint(path))
            self._check_loaded_files()
            if not self._loaded:
                self._state.reason = self._why_unavailable()
            self._scan_completed()
            return self.current

    def _try_load(self, version: int, path: Path, prints: Fingerprint) -> bool:
        failure = self._state.failures.get(version)
        if failure is not None and failure.fingerprint == prints:
            return False  # failed before and unchanged since
        start = time.perf_counter()
        try:
            model = load_version(path, version, self.min_accuracy)
        except ModelLoadError as exc:
            self._failed(version, path, prints, str(exc), start)
            return False
        except Exception as exc:  # a TensorFlow surprise must not stop the poller
            self._failed(version, path, prints, f"{path}: {exc!r}", start, exc_info=True)
            return False
        self._state.failures.pop(version, None)
        previous = self.current
        replaced = self.get(version)  # the same version's old files, re-published
        others = (m for m in self._loaded if m is not replaced)
        window = sorted((*others, model), key=lambda m: m.version, reverse=True)
        self._loaded = tuple(window[: self.keep])
        self._state.loaded_prints[version] = prints
        self._state.file_problems.pop(version, None)
        for dropped in window[self.keep :]:
            self._state.loaded_prints.pop(dropped.version, None)
            self._state.file_problems.pop(dropped.version, None)
        if self._observer is not None:
            self._observer.load_finished(success=True, seconds=model.load_seconds)
        if replaced is not None:
            log.warning(
                "files of loaded model version %d changed on disk: loaded again from the new "
                "files, which now serve it, as they would after a restart (versions should be "
                "immutable: publish a new number instead)",
                version,
                extra={"event": "model_reloaded", "model_version": version, "path": str(path)},
            )
        elif self.current is model:
            log.info(
                "model version %d is now served",
                version,
                extra={
                    "event": "model_swapped",
                    "model_version": version,
                    "previous_version": previous.version if previous else None,
                    "path": str(path),
                    "load_seconds": round(model.load_seconds, 3),
                    "accuracy": model.evaluation["metrics"]["accuracy"],
                },
            )
        else:
            log.info(
                "model version %d is loaded for pinned requests",
                version,
                extra={"event": "model_loaded", "model_version": version, "path": str(path)},
            )
        for dropped in window[self.keep :]:
            # The store's last reference: the model is released once requests on it finish.
            log.info(
                "model version %d is unloaded",
                dropped.version,
                extra={"event": "model_unloaded", "model_version": dropped.version},
            )
        return True

    def _check_loaded_files(self) -> None:
        """Follow the loaded versions' files: reload changed ones, report the rest once.

        Changed files (the version deleted and re-created under its number) are loaded and
        swapped in if they pass, as a restart would serve them. Files that are gone or do not
        pass leave the model in memory serving, but a restart would not bring it back, which
        the operator must hear about (once per change) before that restart.
        """
        problems = self._state.file_problems
        for model in self._loaded:
            prints = fingerprint(model.path)
            event: str | None = None
            if not (model.path / "saved_model.pb").is_file():
                event, problem = "model_files_missing", "files of the loaded version are gone"
            elif prints != self._state.loaded_prints.get(model.version):
                if self._try_load(model.version, model.path, prints):
                    continue  # the new files serve it now
                failure = self._state.failures[model.version]
                event = "model_files_changed"
                problem = (
                    f"files of the loaded version changed and cannot be served: {failure.error}"
                )
            known = problems.get(model.version)
            if event is None:
                self._state.failures.pop(model.version, None)
                if known is not None:
                    del problems[model.version]
                    log.info(
                        "files of loaded model version %d are intact again",
                        model.version,
                        extra={"event": "model_files_restored", "model_version": model.version},
                    )
                continue
            message = f"{model.path}: {problem}"
            if message == known:
                continue
            problems[model.version] = message
            log.warning(
                "%s; version %d keeps serving from memory, but would not load after a restart",
                message,
                model.version,
                extra={"event": event, "model_version": model.version, "path": str(model.path)},
            )

    def _failed(
        self,
        version: int,
        path: Path,
        prints: Fingerprint,
        error: str,
        start: float,
        *,
        exc_info: bool = False,
    ) -> None:
        self._state.failures[version] = _Failure(prints, error)
        if self._observer is not None:
            self._observer.load_finished(success=False, seconds=time.perf_counter() - start)
        log.error(
            "model version %d cannot be served: %s",
            version,
            error,
            exc_info=exc_info,
            extra={
                "event": "model_load_failed",
                "model_version": version,
                "path": str(path),
                "serving_version": self.current.version if self.current else None,
            },
        )

    def _why_unavailable(self) -> str:
        if not self.model_dir.is_dir():
            return f"model directory {self.model_dir} does not exist (yet)"
        failed = sorted(self._state.failures.items(), reverse=True)
        if failed:
            version, failure = failed[0]
            return (
                f"no loadable version in {self.model_dir}: {len(failed)} failed "
                f"(version {version}: {failure.error})"
            )
        return f"no version published in {self.model_dir} yet"

    def _scan_completed(self) -> None:
        self._state.last_scan = time.monotonic()
        if self._observer is not None:
            self._observer.scan_finished(timestamp=time.time())
        if self._state.stall_logged:
            self._state.stall_logged = False
            log.info(
                "the model poller completes scans of %s again",
                self.model_dir,
                extra={"event": "poll_recovered", "model_dir": str(self.model_dir)},
            )

    def check_stalled(self, stall_after_seconds: float) -> bool:
        """Whether no scan has completed for ``stall_after_seconds``; logs one WARNING when
        that starts (the next completed scan logs that it ended)."""
        since = time.monotonic() - self._state.last_scan
        if since < stall_after_seconds:
            return False
        if not self._state.stall_logged:
            self._state.stall_logged = True
            current = self.current
            log.warning(
                "the model poller has completed no scan of %s for %.1f s: a load or a read in "
                "it has not returned, so new versions are not picked up; %s",
                self.model_dir,
                since,
                f"version {current.version} keeps serving" if current else "nothing is served",
                extra={
                    "event": "poll_stalled",
                    "model_dir": str(self.model_dir),
                    "seconds_since_last_scan": round(since, 1),
                    "serving_version": current.version if current else None,
                },
            )
        return True

    def start_polling(
        self, interval_seconds: float, *, stall_after_seconds: float | None = None
    ) -> None:
        """Call :meth:`refresh` every ``interval_seconds`` in a daemon thread, and watch it
        from another: one WARNING once no scan has completed for ``stall_after_seconds``
        (default :func:`stall_threshold`)."""
        if self._poller is not None:
            return
        stall_after = (
            stall_threshold(interval_seconds)
            if stall_after_seconds is None
            else stall_after_seconds
        )
        self._stop.clear()
        self._state.last_scan = time.monotonic()  # the stall clock starts with the polling
        self._poller = threading.Thread(
            target=self._poll, args=(interval_seconds,), name="xor-model-poller", daemon=True
        )
        self._watchdog = threading.Thread(
            target=self._watch,
            args=(min(interval_seconds, stall_after),),
            kwargs={"stall_after": stall_after},
            name="xor-model-poll-watchdog",
            daemon=True,
        )
        self._poller.start()
        self._watchdog.start()

    def stop_polling(self, timeout: float | None = None) -> None:
        """Stop the poller, waiting for a load in progress to finish."""
        self._stop.set()
        for thread in (self._poller, self._watchdog):
            if thread is not None:
                thread.join(timeout)
        self._poller = self._watchdog = None

    def _poll(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            try:
                self.refresh()
            except Exception:  # e.g. the model dir became unreadable: keep serving, keep polling
                log.exception("scanning %s failed", self.model_dir, extra={"event": "scan_failed"})

    def _watch(self, every_seconds: float, *, stall_after: float) -> None:
        while not self._stop.wait(every_seconds):
            self.check_stalled(stall_after)
