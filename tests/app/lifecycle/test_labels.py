"""The model store with labels.json: stable serves, the newest stays warm, canary share,
broken labels and broken labelled versions (real TensorFlow, labels changed with modelrepo's
operations as ``xor-models`` changes them)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from app.lifecycle.store import LABEL_VERSION_FAILED, LABEL_VERSION_MISSING, ModelStore
from modelrepo.manifest import build_manifest, write_manifest
from modelrepo.operations import promote, rollback, set_canary_percent
from modelrepo.repository import LocalRepository
from tests.support.versions import garbage_saved_model, golden_set_of_xnor, publish_verified_copy


class LabelEvents:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.file_problems = 0

    def label_problem(self, *, label: str, reason: str) -> None:
        self.problems.append((label, reason))

    def labels_file_problem(self) -> None:
        self.file_problems += 1


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def remanifest(path: Path, version: int) -> None:
    """A fresh MANIFEST.json for a version a breaker changed: it verifies, and still fails the
    server's gate, as a badly trained version published by training would."""
    (path / "MANIFEST.json").unlink(missing_ok=True)
    write_manifest(path, build_manifest(path, version))


def versions_of(store: ModelStore) -> list[int]:
    return [model.version for model in store.loaded]


@pytest.fixture
def three(model_dir: Path, trained_version: Path) -> LocalRepository:
    for version in (1, 2, 3):
        publish_verified_copy(trained_version, model_dir, version)
    return LocalRepository(model_dir)


def test_without_labels_the_newest_serves_as_before(three: LocalRepository) -> None:
    store = ModelStore(three.path)
    served = store.refresh()
    assert served is not None and served.version == 3
    assert versions_of(store) == [3]
    assert store.label_versions == {}
    assert [store.pick() for _ in range(20)] == [served] * 20


def test_stable_serves_and_the_newest_stays_loaded_as_standby(
    three: LocalRepository, caplog: pytest.LogCaptureFixture
) -> None:
    promote(three, 1)
    caplog.set_level(logging.INFO)
    store = ModelStore(three.path, keep=1)
    served = store.refresh()
    assert served is not None and served.version == 1
    assert versions_of(store) == [3, 1]  # stable, and the newest as a warm standby
    assert store.label_versions == {"stable": 1}
    # stable was loaded first and served from its load on: the newest never was.
    assert [r.model_version for r in events(caplog, "model_swapped")] == [1]  # type: ignore[attr-defined]
    assert store.get(3) is not None


def test_promote_and_rollback_are_followed_and_the_window_is_the_labels_plus_newest(
    three: LocalRepository, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(three.path, keep=1)
    assert store.refresh() is not None and versions_of(store) == [3]
    promote(three, 2)
    assert store.refresh().version == 2  # type: ignore[union-attr]
    assert versions_of(store) == [3, 2]
    promote(three, 1)
    assert store.refresh().version == 1  # type: ignore[union-attr]
    assert versions_of(store) == [3, 1]  # 2 is neither labelled nor among the newest 1
    rollback(three)
    assert store.refresh().version == 2  # type: ignore[union-attr]
    assert versions_of(store) == [3, 2]
    assert store.labels.history == {}  # rolling back took 2 off the history
    # Without the file, as before: the newest, and the old stable unloaded.
    (three.path / "labels.json").unlink()
    assert store.refresh().version == 3  # type: ignore[union-attr]
    assert versions_of(store) == [3]


def test_a_label_on_a_broken_or_missing_version_keeps_the_previous_one_and_is_counted_once(
    three: LocalRepository, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    observer = LabelEvents()
    store = ModelStore(three.path, keep=1, label_observer=observer)
    promote(three, 2)
    assert store.refresh().version == 2  # type: ignore[union-attr]
    golden_set_of_xnor(trained_version, three.path / "4", 4)
    remanifest(three.path / "4", 4)
    promote(three, 4)  # it verifies; the server's golden-set gate refuses it
    for _ in range(3):
        served = store.refresh()
        assert served is not None and served.version == 2
    assert observer.problems == [("stable", LABEL_VERSION_FAILED)]
    assert "cannot be served" in store.label_problems["stable"]
    assert len(events(caplog, "label_version_unavailable")) == 1
    assert versions_of(store) == [3, 2]  # 4 failed: 3 is still the newest loaded
    # A label naming a version that is not there (deleted after promoting).
    promote(three, 3, label="canary")
    (three.path / "3" / "saved_model.pb").rename(three.path / "3" / "moved.pb")
    store.refresh()
    assert store.label_versions == {"canary": 3, "stable": 2}  # 3 was loaded: it serves
    labels = three.read_labels()
    three.write_labels(labels.with_label("canary", 99))
    store.refresh()
    assert observer.problems[-1] == ("canary", LABEL_VERSION_MISSING)
    assert store.label_versions == {"canary": 3, "stable": 2}
    # Fixed (its files change, so it is tried again): stable moves on, the problem is gone.
    (three.path / "4" / "assets.extra" / "golden.json").unlink()
    assert store.refresh().version == 4  # type: ignore[union-attr]
    assert "stable" not in store.label_problems


def test_a_label_on_a_broken_version_from_the_start_leaves_the_newest_serving(
    model_dir: Path, trained_version: Path
) -> None:
    publish_verified_copy(trained_version, model_dir, 1)
    garbage_saved_model(trained_version, model_dir / "2", 2)
    remanifest(model_dir / "2", 2)
    repo = LocalRepository(model_dir)
    promote(repo, 2)
    observer = LabelEvents()
    store = ModelStore(model_dir, label_observer=observer)
    served = store.refresh()
    assert served is not None and served.version == 1
    assert store.label_versions == {}
    assert observer.problems == [("stable", LABEL_VERSION_FAILED)]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"labels": {"stable": "1"}}', b'{"labels": {}, "canary_percent": 101}'],
)
def test_a_broken_labels_file_is_counted_once_and_the_last_good_labels_keep_applying(
    three: LocalRepository, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    observer = LabelEvents()
    store = ModelStore(three.path, keep=1, label_observer=observer)
    promote(three, 1)
    assert store.refresh().version == 1  # type: ignore[union-attr]
    (three.path / "labels.json").write_bytes(content)
    for _ in range(3):
        assert store.refresh().version == 1  # type: ignore[union-attr]
    assert observer.file_problems == 1
    assert store.labels_error is not None and "labels.json" in store.labels_error
    assert len(events(caplog, "labels_unreadable")) == 1
    promote_again = LocalRepository(three.path)
    (three.path / "labels.json").unlink()
    promote(promote_again, 2)
    assert store.refresh().version == 2  # type: ignore[union-attr]
    assert store.labels_error is None


def test_the_canary_gets_its_share_of_unpinned_picks(three: LocalRepository) -> None:
    promote(three, 1)
    promote(three, 2, label="canary")
    set_canary_percent(three, 25)
    store = ModelStore(three.path, keep=1)
    store.refresh()
    assert store.current is not None and store.current.version == 1
    assert store.canary_percent == 25
    draws = 20_000
    canary = sum(store.pick().version == 2 for _ in range(draws))  # type: ignore[union-attr]
    # Binomial(20000, 0.25): sigma = sqrt(n p (1 - p)) = 61.2; 4.5 sigma either side.
    sigma = math.sqrt(draws * 0.25 * 0.75)
    assert abs(canary - draws * 0.25) <= 4.5 * sigma
    set_canary_percent(three, 0)
    store.refresh()
    assert {store.pick().version for _ in range(500)} == {1}  # type: ignore[union-attr]
    assert store.labelled("canary").version == 2  # type: ignore[union-attr]
