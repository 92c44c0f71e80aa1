"""The model store: the window of loaded versions, the poller, and the atomic swap.

The store keeps the newest ``keep`` valid versions loaded (``XOR_LOADED_VERSIONS``), as one
immutable tuple, newest first, replaced by one reference assignment: a request reads
:attr:`ModelStore.current` (the newest) or :meth:`ModelStore.get` once and finishes on that
model, so no request fails or waits while a newer version loads, and a client pinned to an
older version keeps being answered until that version falls out of the window (its model is
then released). Only versions that would enter the window are considered (at startup: the
newest ones that pass, falling back past broken ones). A version that fails is remembered with
a fingerprint of its files and retried only when its files change.
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


class LoadObserver(Protocol):
    """Told about every load attempt (the metrics implement it)."""

    def load_finished(self, *, success: bool, seconds: float) -> None: ...


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
        """Loaded versions whose files vanished or changed on disk since they were loaded.

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
                    self._try_load(version, path)
            self._check_loaded_files()
            if not self._loaded:
                self._state.reason = self._why_unavailable()
            return self.current

    def _try_load(self, version: int, path: Path) -> bool:
        prints = fingerprint(path)
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
        window = sorted((*self._loaded, model), key=lambda m: m.version, reverse=True)
        self._loaded = tuple(window[: self.keep])
        self._state.loaded_prints[version] = prints
        for dropped in window[self.keep :]:
            self._state.loaded_prints.pop(dropped.version, None)
            self._state.file_problems.pop(dropped.version, None)
        if self._observer is not None:
            self._observer.load_finished(success=True, seconds=model.load_seconds)
        if self.current is model:
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
        """Notice (and log once per change) a loaded version's files vanishing or changing.

        The model in memory keeps serving; but the version would not load again after a
        restart, which the operator must hear about before that restart.
        """
        problems = self._state.file_problems
        for model in self._loaded:
            event: str | None = None
            if not (model.path / "saved_model.pb").is_file():
                event, problem = "model_files_missing", "files of the loaded version are gone"
            elif fingerprint(model.path) != self._state.loaded_prints.get(model.version):
                event, problem = "model_files_changed", "files of the loaded version changed"
            known = problems.get(model.version)
            if event is None:
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

    def start_polling(self, interval_seconds: float) -> None:
        """Call :meth:`refresh` every ``interval_seconds`` in a daemon thread."""
        if self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll, args=(interval_seconds,), name="xor-model-poller", daemon=True
        )
        self._poller.start()

    def stop_polling(self, timeout: float | None = None) -> None:
        """Stop the poller, waiting for a load in progress to finish."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
            self._poller = None

    def _poll(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            try:
                self.refresh()
            except Exception:  # e.g. the model dir became unreadable: keep serving, keep polling
                log.exception("scanning %s failed", self.model_dir, extra={"event": "scan_failed"})
