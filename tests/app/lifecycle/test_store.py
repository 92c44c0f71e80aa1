"""The model store: fallback past broken versions, retries, swaps and polling (real TensorFlow)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.lifecycle.discovery import MAX_VERSION
from app.lifecycle.loading import EVALUATION_FILE, LoadedModel
from app.lifecycle.store import STALL_INTERVALS, STALL_MIN_SECONDS, ModelStore, stall_threshold
from tests.support.versions import BREAKERS, garbage_saved_model, publish_copy, xnor_model
from tests.support.waiting import finishes, wait_for


class CountingObserver:
    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.scans: list[float] = []

    def load_finished(self, *, success: bool, seconds: float) -> None:
        assert seconds >= 0
        if success:
            self.successes += 1
        else:
            self.failures += 1

    def scan_finished(self, *, timestamp: float) -> None:
        self.scans.append(timestamp)


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def test_startup_falls_back_past_broken_versions(model_dir: Path, trained_version: Path) -> None:
    publish_copy(trained_version, model_dir, 10)
    for offset, (breaker, _) in enumerate(BREAKERS, start=11):
        breaker(trained_version, model_dir / str(offset), offset)
    observer = CountingObserver()
    store = ModelStore(model_dir, observer)
    served = store.refresh()
    assert served is not None and served.version == 10
    assert (observer.successes, observer.failures) == (1, len(BREAKERS))
    # Unchanged broken versions are not retried.
    store.refresh()
    assert (observer.successes, observer.failures) == (1, len(BREAKERS))


def test_broken_version_is_retried_only_after_it_changes(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 1)
    observer = CountingObserver()
    store = ModelStore(model_dir, observer)
    assert store.refresh() is not None
    garbage_saved_model(trained_version, model_dir / "2", 2)
    for _ in range(3):
        served = store.refresh()
        assert served is not None and served.version == 1
    assert observer.failures == 1
    shutil.copy2(trained_version / "saved_model.pb", model_dir / "2" / "saved_model.pb")
    served = store.refresh()
    assert served is not None and served.version == 2
    assert (observer.successes, observer.failures) == (2, 1)


def test_newer_version_is_swapped_in_and_older_ones_ignored(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 5)
    store = ModelStore(model_dir)
    first = store.refresh()
    assert first is not None and first.version == 5
    publish_copy(trained_version, model_dir, 3)
    assert store.refresh() is first
    publish_copy(trained_version, model_dir, 6)
    second = store.refresh()
    assert second is not None and second.version == 6
    # The old object still works for a request that grabbed it before the swap.
    assert first.run(np.array([[1, 0]], dtype=np.float32))["class_ids"].tolist() == [[1]]


def test_no_version_gives_a_reason(tmp_path: Path, model_dir: Path, trained_version: Path) -> None:
    missing = ModelStore(tmp_path / "missing")
    assert missing.refresh() is None
    assert "does not exist" in missing.unavailable_reason
    empty = ModelStore(model_dir)
    assert empty.refresh() is None
    assert "no version published" in empty.unavailable_reason
    garbage_saved_model(trained_version, model_dir / "4", 4)
    assert empty.refresh() is None
    assert "version 4" in empty.unavailable_reason


def test_polling_picks_up_a_new_version(model_dir: Path, trained_version: Path) -> None:
    store = ModelStore(model_dir)
    store.start_polling(0.05)
    try:
        publish_copy(trained_version, model_dir, 8)
        wait_for(lambda: store.current is not None)
        assert store.current is not None and store.current.version == 8
    finally:
        store.stop_polling(timeout=5)


def test_versions_beyond_int64_are_refused_once_and_a_later_one_still_loads(
    model_dir: Path, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publish_copy(trained_version, model_dir, 1000)
    for version in (MAX_VERSION + 1, 2**64, 10**20):
        publish_copy(trained_version, model_dir, version)
    observer = CountingObserver()
    store = ModelStore(model_dir, observer)
    for _ in range(3):
        served = store.refresh()
        assert served is not None and served.version == 1000
    assert (observer.successes, observer.failures) == (1, 3)
    failed = events(caplog, "model_load_failed")
    assert sorted(r.model_version for r in failed) == [MAX_VERSION + 1, 2**64, 10**20]  # type: ignore[attr-defined]
    assert all("beyond int64" in r.getMessage() for r in failed)
    publish_copy(trained_version, model_dir, 1001)  # the next retrain
    served = store.refresh()
    assert served is not None and served.version == 1001
    assert (observer.successes, observer.failures) == (2, 3)


def test_a_fifo_in_the_newest_version_does_not_block_the_scan(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 1)
    fifo = publish_copy(trained_version, model_dir, 2) / EVALUATION_FILE
    fifo.unlink()
    os.mkfifo(fifo)
    store = ModelStore(model_dir)
    served = finishes(store.refresh, what="a scan with a FIFO as evaluation.json")
    assert served is not None and served.version == 1
    publish_copy(trained_version, model_dir, 3)
    served = finishes(store.refresh, what="the next scan")
    assert served is not None and served.version == 3


def _republish(trained_version: Path, model_dir: Path, version: int, accuracy: float) -> None:
    """Delete ``version`` and publish it again, with other content (its evaluation)."""
    shutil.rmtree(model_dir / str(version))
    path = publish_copy(trained_version, model_dir, version)
    evaluation = json.loads((path / EVALUATION_FILE).read_text())
    evaluation["metrics"]["accuracy"] = accuracy
    (path / EVALUATION_FILE).write_text(json.dumps(evaluation))


def test_a_version_re_created_with_other_content_is_loaded_again_and_swapped_in(
    model_dir: Path, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 6b: a restart would serve the new content, so the store serves it now."""
    publish_copy(trained_version, model_dir, 5)
    observer = CountingObserver()
    store = ModelStore(model_dir, observer)
    old = store.refresh()
    assert old is not None
    _republish(trained_version, model_dir, 5, accuracy=0.75)
    new = store.refresh()
    assert new is not None and new is not old and new.version == 5
    assert new.evaluation["metrics"]["accuracy"] == 0.75
    assert store.loaded == (new,)
    assert store.file_problems == {}
    (record,) = events(caplog, "model_reloaded")
    assert "as they would after a restart" in record.getMessage()
    assert not events(caplog, "model_files_changed")
    store.refresh()
    assert store.current is new and observer.successes == 2  # not reloaded again


def test_a_version_re_created_with_content_that_fails_keeps_serving_and_says_so(
    model_dir: Path, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publish_copy(trained_version, model_dir, 5)
    observer = CountingObserver()
    store = ModelStore(model_dir, observer, keep=2)
    old = store.refresh()
    assert old is not None
    shutil.rmtree(model_dir / "5")
    staging = model_dir / ".tmp-export-xnor"
    xnor_model(trained_version, staging, 5)
    staging.rename(model_dir / "5")
    for _ in range(3):
        assert store.refresh() is old
    assert observer.failures == 1  # refused once, not retried while unchanged
    problem = store.file_problems[5]
    assert "changed and cannot be served" in problem and "golden set" in problem
    (record,) = events(caplog, "model_files_changed")
    assert record.levelno == logging.WARNING
    assert "keeps serving from memory, but would not load after a restart" in record.getMessage()
    # Fixed by re-publishing right content: served, and the problem is gone.
    _republish(trained_version, model_dir, 5, accuracy=1.0)
    new = store.refresh()
    assert new is not None and new is not old and store.file_problems == {}


def test_every_completed_scan_is_reported(model_dir: Path, trained_version: Path) -> None:
    observer = CountingObserver()
    store = ModelStore(model_dir, observer)
    before = time.time()
    store.refresh()
    publish_copy(trained_version, model_dir, 1)
    store.refresh()
    assert len(observer.scans) == 2
    assert before <= observer.scans[0] <= observer.scans[1] <= time.time()


def test_a_stall_is_logged_once_and_its_end_too(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.lifecycle.store")
    store = ModelStore(model_dir)
    store.refresh()
    assert not store.check_stalled(3600)
    assert store.check_stalled(0) and store.check_stalled(0)
    (record,) = events(caplog, "poll_stalled")
    assert record.levelno == logging.WARNING
    assert "nothing is served" in record.getMessage()
    store.refresh()
    (recovered,) = events(caplog, "poll_recovered")
    assert recovered.levelno == logging.INFO
    assert not store.check_stalled(3600)
    assert stall_threshold(2.0) == max(STALL_INTERVALS * 2.0, STALL_MIN_SECONDS) == 30.0
    assert stall_threshold(60.0) == 300.0


class BlockedStore(ModelStore):
    """A store whose scans wait for ``gate`` once ``block`` is set: a stuck poller."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.block = threading.Event()
        self.gate = threading.Event()

    def refresh(self) -> LoadedModel | None:
        if self.block.is_set():
            self.gate.wait()
        return super().refresh()


def test_a_stalled_poller_warns_once_and_the_loaded_version_keeps_serving(
    model_dir: Path, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.lifecycle.store")
    publish_copy(trained_version, model_dir, 3)
    observer = CountingObserver()
    store = BlockedStore(model_dir, observer)
    served = store.refresh()
    assert served is not None
    store.block.set()
    store.start_polling(0.01, stall_after_seconds=0.2)
    try:
        wait_for(lambda: bool(events(caplog, "poll_stalled")), what="the stall warning")
        scans = len(observer.scans)
        time.sleep(0.3)  # thirty more watchdog checks of the same stall
        (record,) = events(caplog, "poll_stalled")
        assert "version 3 keeps serving" in record.getMessage()
        assert store.current is served  # readiness unchanged
        assert len(observer.scans) == scans == 1  # the stuck poller completes nothing
        store.gate.set()
        wait_for(lambda: bool(events(caplog, "poll_recovered")), what="the recovery line")
        wait_for(lambda: len(observer.scans) > scans, what="a completed scan")
        assert len(events(caplog, "poll_stalled")) == 1
    finally:
        store.gate.set()
        store.stop_polling(timeout=5)
