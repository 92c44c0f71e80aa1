"""The model store: fallback past broken versions, retries, swaps and polling (real TensorFlow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from app.lifecycle.store import ModelStore
from tests.support.versions import BREAKERS, garbage_saved_model, publish_copy
from tests.support.waiting import wait_for


class CountingObserver:
    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0

    def load_finished(self, *, success: bool, seconds: float) -> None:
        assert seconds >= 0
        if success:
            self.successes += 1
        else:
            self.failures += 1


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
