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

Labels (``labels.json`` at the root of the model directory, ``modelrepo``'s format), read on
every scan: with a ``stable`` label, requests that name no version (:meth:`ModelStore.pick`)
are served by the version it names, not the newest, and with a ``canary`` label and
``canary_percent`` > 0 that share of them by the canary (one random draw per request: every
replica reads the same file, so the share is the same everywhere). Loaded are the labelled
versions plus the newest ``keep``; the newest stays loaded and warm as a standby. A label
naming a version that does not exist, fails to load or fails its golden set leaves the label
on the version that served it before (logged once, counted); a labels.json that cannot be
read or parsed is logged once and counted, and the last good labels keep applying. Without a
labels file (or without ``stable``) the newest version serves, as it did before labels.
What requests read is one immutable :class:`ServingView`, replaced by one assignment.

With ``XOR_MODEL_SOURCE`` the model directory is a cache of an S3 repository
(``app.lifecycle.sync``): ``before_scan`` fills it on the poller's thread before each scan,
and ``require_manifest`` makes a version without its ``MANIFEST.json`` not exist here.

The poller's liveness: every completed scan is reported to the observer (the metrics'
``xor_model_poll_last_success_timestamp_seconds``), and a watchdog thread logs one WARNING
when no scan has completed for a while (:func:`stall_threshold`). A stalled poller does not
change readiness: what is loaded keeps serving. (The watchdog is Python: it cannot speak while
native code holds the GIL, as TensorFlow does when a read blocks; hence the files of a version
are checked before TensorFlow reads them, ``app.lifecycle.files``.)

Shutting down (:meth:`ModelStore.begin_shutdown`, on SIGTERM/SIGINT): what is loaded keeps
serving, but readiness reads :attr:`ModelStore.shutting_down` and turns away new traffic.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from app.errors import ModelLoadError
from app.lifecycle.discovery import Fingerprint, find_versions, fingerprint
from app.lifecycle.loading import LoadedModel, load_version
from modelrepo import Labels, ModelRepoError
from modelrepo.format import CANARY_LABEL, DEFAULT_LABEL, LABELS_FILE, MANIFEST_FILE
from modelrepo.repository import LocalRepository

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


class LabelObserver(Protocol):
    """Told about label problems (the metrics implement it)."""

    def label_problem(self, *, label: str, reason: str) -> None: ...

    def labels_file_problem(self) -> None: ...


# Why a label cannot move to the version it names (the ``reason`` of the label-problem metric).
LABEL_VERSION_MISSING = "version_missing"
LABEL_VERSION_FAILED = "version_failed"


@dataclass(frozen=True)
class LabelProblem:
    """Why ``label`` is not served by the version labels.json names for it."""

    version: int
    reason: str
    message: str


@dataclass(frozen=True)
class ServingView:
    """What requests read, once each: the loaded versions and who serves what.

    ``default`` serves requests that name no version (the ``stable`` label's version, else the
    newest loaded); ``labels`` maps each label to the loaded version serving it; ``canary`` gets
    ``canary_share`` (0 to 1) of the requests that name no version.
    """

    loaded: tuple[LoadedModel, ...] = ()
    default: LoadedModel | None = None
    labels: Mapping[str, LoadedModel] = field(default_factory=lambda: MappingProxyType({}))
    canary: LoadedModel | None = None
    canary_share: float = 0.0


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
    # The last labels.json that was read and parsed (Labels() without the file), and the error
    # of the current unreadable one (None while it reads), logged once per distinct error.
    labels: Labels = field(default_factory=Labels)
    labels_error: str | None = None
    # label -> the version serving it (it stays loaded), and why a label does not serve the
    # version labels.json names (each logged once).
    label_versions: dict[str, int] = field(default_factory=dict)
    label_problems: dict[str, LabelProblem] = field(default_factory=dict)
    # Versions loaded since the view was last published (logged as swapped in or loaded then).
    fresh: list[int] = field(default_factory=list)


class ModelStore:
    """Discovers, loads and serves versions from ``model_dir``; see the module docstring."""

    def __init__(
        self,
        model_dir: Path,
        observer: LoadObserver | None = None,
        *,
        keep: int = 1,
        min_accuracy: float = 0.0,
        label_observer: LabelObserver | None = None,
        require_manifest: bool = False,
        before_scan: Callable[[], None] | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if not 0.0 <= min_accuracy <= 1.0:
            raise ValueError(f"min_accuracy must be within [0, 1], got {min_accuracy}")
        self.model_dir = model_dir
        self.keep = keep
        self.min_accuracy = min_accuracy
        self._observer = observer
        self._label_observer = label_observer
        # A cache of an S3 repository: a version exists once its MANIFEST.json does, and the
        # sync (before_scan) fills the cache on the poller's thread right before each scan.
        self.require_manifest = require_manifest
        self._before_scan = before_scan
        # Every loaded version, newest first: the refresh's working set (refresh lock only).
        self._loaded: tuple[LoadedModel, ...] = ()
        # What requests read. Replaced by one assignment, never mutated.
        self._view = ServingView()
        self._state = _State()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._shutting_down = False

    @property
    def view(self) -> ServingView:
        """Who serves what, as one immutable snapshot. Read it once per request."""
        return self._view

    @property
    def loaded(self) -> tuple[LoadedModel, ...]:
        """Every loaded version, newest first (the newest ``keep`` and the labelled ones)."""
        return self._view.loaded

    @property
    def current(self) -> LoadedModel | None:
        """The model serving requests that name no version (the ``stable`` label's, else the
        newest loaded), or None before one is loaded. Not drawn: the canary's share is
        :meth:`pick`'s."""
        return self._view.default

    def pick(self) -> LoadedModel | None:
        """The model for one request that names no version: the canary for its share of
        them (one random draw), else :attr:`current`."""
        view = self._view
        if view.canary is not None and random.random() < view.canary_share:
            return view.canary
        return view.default

    def get(self, version: int) -> LoadedModel | None:
        """The loaded model of ``version``, or None if it is not (or no longer) loaded."""
        return next((model for model in self._view.loaded if model.version == version), None)

    def labelled(self, label: str) -> LoadedModel | None:
        """The model serving ``label``, or None if no loaded version serves it."""
        return self._view.labels.get(label)

    @property
    def labels(self) -> Labels:
        """The labels that apply (the last labels.json read and parsed)."""
        return self._state.labels

    @property
    def label_versions(self) -> dict[str, int]:
        """label -> the version serving it."""
        return {name: model.version for name, model in self._view.labels.items()}

    @property
    def canary_percent(self) -> int:
        """The canary's share of unpinned requests in percent (0 without a served canary)."""
        return round(self._view.canary_share * 100)

    @property
    def label_problems(self) -> dict[str, str]:
        """label -> why it is not served by the version labels.json names (none: all are)."""
        return {name: p.message for name, p in self._state.label_problems.items()}

    @property
    def labels_error(self) -> str | None:
        """Why labels.json cannot be read (the last good labels apply), or None."""
        return self._state.labels_error

    @property
    def file_problems(self) -> dict[int, str]:
        """Loaded versions whose files vanished, or changed into files that cannot be served,
        since they were loaded.

        They keep serving from memory; this says why a restart would not bring them back.
        """
        return dict(self._state.file_problems)

    @property
    def shutting_down(self) -> bool:
        """Whether the process is shutting down: requests are still answered, but readiness
        fails so that load balancers send no more (``XOR_SHUTDOWN_DELAY_SECONDS``)."""
        return self._shutting_down

    def begin_shutdown(self) -> None:
        """Mark the process as shutting down (:attr:`shutting_down`). Only sets a flag: it is
        called from a signal handler."""
        self._shutting_down = True

    @property
    def unavailable_reason(self) -> str:
        """Why no model is served (meaningful while :attr:`current` is None)."""
        return self._state.reason

    def refresh(self) -> LoadedModel | None:
        """Load every valid version that belongs in the window; returns what is served.

        Blocking (TensorFlow work): call it from a worker thread, never from the event loop.
        """
        with self._refresh_lock:
            if self._before_scan is not None:
                self._before_scan()
            self._read_labels()
            versions = find_versions(self.model_dir)  # newest first
            if self.require_manifest:
                versions = [(v, p) for v, p in versions if (p / MANIFEST_FILE).is_file()]
            # The labelled versions first: at start-up, the newest is not served for a moment
            # before stable is loaded.
            self._follow_labels(dict(versions))
            for version, path in versions:
                newest = self._loaded[: self.keep]
                if len(newest) >= self.keep and version < newest[-1].version:
                    break  # this one and all after it are older than the whole window
                if all(model.version != version for model in self._loaded):
                    self._try_load(version, path, fingerprint(path))
            self._check_loaded_files()
            self._trim()
            if not self._loaded:
                self._state.reason = self._why_unavailable()
            self._scan_completed()
            return self.current

    # --- labels ---------------------------------------------------------------------------------

    def _read_labels(self) -> None:
        """labels.json into ``_state.labels``; a broken one is logged once and counted, and
        the last good labels keep applying."""
        state = self._state
        try:
            labels = LocalRepository(self.model_dir).read_labels()
        except ModelRepoError as exc:
            if not self.model_dir.is_dir():
                labels = Labels()  # no directory (yet): no labels
            else:
                self._labels_unreadable(str(exc))
                return
        except OSError as exc:
            self._labels_unreadable(f"{self.model_dir / LABELS_FILE}: {exc.strerror or exc}")
            return
        if state.labels_error is not None:
            log.info(
                "%s can be read again",
                self.model_dir / LABELS_FILE,
                extra={"event": "labels_restored", "labels": dict(labels.labels)},
            )
            state.labels_error = None
        state.labels = labels

    def _labels_unreadable(self, error: str) -> None:
        state = self._state
        if error == state.labels_error:
            return
        state.labels_error = error
        if self._label_observer is not None:
            self._label_observer.labels_file_problem()
        log.error(
            "labels.json cannot be used: %s; the last good labels keep applying (%s)",
            error,
            _describe(state.labels),
            extra={
                "event": "labels_unreadable",
                "error": error,
                "labels": dict(state.labels.labels),
            },
        )

    def _follow_labels(self, paths: dict[int, Path]) -> None:
        """Move each label to the version labels.json names once that version is loaded (it
        is loaded here if need be); a label whose version is missing or fails stays on the
        version that served it (the problem logged once and counted)."""
        state = self._state
        wanted = state.labels.labels
        for name in [n for n in state.label_versions if n not in wanted]:
            del state.label_versions[name]
        for name in [n for n in state.label_problems if n not in wanted]:
            del state.label_problems[name]
        for name, version in wanted.items():
            problem: LabelProblem | None = None
            if not any(model.version == version for model in self._loaded):
                path = paths.get(version)
                if path is None:
                    problem = LabelProblem(
                        version,
                        LABEL_VERSION_MISSING,
                        f"version {version} is not in {self.model_dir}",
                    )
                elif not self._try_load(version, path, fingerprint(path)):
                    error = self._state.failures[version].error
                    problem = LabelProblem(
                        version,
                        LABEL_VERSION_FAILED,
                        f"version {version} cannot be served: {error}",
                    )
            if problem is None:
                state.label_versions[name] = version
                if state.label_problems.pop(name, None) is not None:
                    log.info(
                        "label %s is served by version %d, as labels.json says, again",
                        name,
                        version,
                        extra={"event": "label_restored", "label": name, "model_version": version},
                    )
                continue
            if state.label_problems.get(name) == problem:
                continue
            state.label_problems[name] = problem
            if self._label_observer is not None:
                self._label_observer.label_problem(label=name, reason=problem.reason)
            serving = state.label_versions.get(name)
            log.error(
                "label %s cannot move to version %d: %s; %s",
                name,
                version,
                problem.message,
                f"version {serving} keeps serving it"
                if serving is not None
                else "no version serves it"
                + (" (requests naming no version get the newest)" if name == DEFAULT_LABEL else ""),
                extra={
                    "event": "label_version_unavailable",
                    "label": name,
                    "model_version": version,
                    "reason": problem.reason,
                    "serving_version": serving,
                },
            )
        self._publish()

    def _trim(self) -> None:
        """Unload what is neither among the newest ``keep`` nor serving a label."""
        keepers = {m.version for m in self._loaded[: self.keep]}
        keepers.update(self._state.label_versions.values())
        dropped = [m for m in self._loaded if m.version not in keepers]
        if dropped:
            self._loaded = tuple(m for m in self._loaded if m.version in keepers)
        self._publish()
        for model in dropped:
            self._state.loaded_prints.pop(model.version, None)
            self._state.file_problems.pop(model.version, None)
            # The store's last reference: the model is released once requests on it finish.
            log.info(
                "model version %d is unloaded",
                model.version,
                extra={"event": "model_unloaded", "model_version": model.version},
            )

    def _publish(self) -> None:
        """Build the view from the loaded versions and the labels, swap it in, log changes."""
        state = self._state
        loaded = self._loaded
        by_version = {model.version: model for model in loaded}
        labels = {
            name: by_version[version]
            for name, version in sorted(state.label_versions.items())
            if version in by_version
        }
        default = labels.get(DEFAULT_LABEL) or (loaded[0] if loaded else None)
        canary = labels.get(CANARY_LABEL)
        share = state.labels.canary_percent / 100 if canary is not None else 0.0
        previous = self._view
        self._view = ServingView(loaded, default, MappingProxyType(labels), canary, share)
        before = previous.default.version if previous.default is not None else None
        for version in state.fresh:
            model = by_version.get(version)
            if model is None or (model is default and before != version):
                continue  # logged as swapped in below
            log.info(
                "model version %d is loaded for pinned requests%s",
                version,
                "".join(f" and label {n}" for n, m in labels.items() if m is model),
                extra={"event": "model_loaded", "model_version": version, "path": str(model.path)},
            )
        state.fresh.clear()
        if default is not None and before != default.version:
            log.info(
                "model version %d is now served",
                default.version,
                extra={
                    "event": "model_swapped",
                    "model_version": default.version,
                    "previous_version": before,
                    "path": str(default.path),
                    "load_seconds": round(default.load_seconds, 3),
                    "accuracy": default.evaluation["metrics"]["accuracy"],
                    "label": DEFAULT_LABEL if DEFAULT_LABEL in labels else None,
                },
            )
        old_labels = {name: model.version for name, model in previous.labels.items()}
        for name, model in labels.items():
            if old_labels.get(name) != model.version:
                log.info(
                    "label %s is served by version %d",
                    name,
                    model.version,
                    extra={
                        "event": "label_moved",
                        "label": name,
                        "model_version": model.version,
                        "previous_version": old_labels.get(name),
                    },
                )

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
        replaced = next((m for m in self._loaded if m.version == version), None)
        others = (m for m in self._loaded if m is not replaced)
        self._loaded = tuple(sorted((*others, model), key=lambda m: m.version, reverse=True))
        self._state.loaded_prints[version] = prints
        self._state.file_problems.pop(version, None)
        if replaced is None:
            self._state.fresh.append(version)
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
        self._publish()
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


def _describe(labels: Labels) -> str:
    if not labels.labels:
        return "no labels: the newest version serves"
    return ", ".join(f"{name}={version}" for name, version in labels.labels.items())
