"""ModelSync against a real S3 server (SeaweedFS): what lands in the cache, what does not, what
is evicted, and what a poll costs; XOR_MODEL_SOURCE's validation; the store's manifest rule."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import obstore
import pytest

from app.config import load_settings
from app.errors import ConfigError
from app.lifecycle.store import ModelStore
from app.lifecycle.sync import CHECKSUM_MISMATCH, ModelSync, cached_versions
from modelrepo.format import LABELS_FILE, MANIFEST_FILE
from modelrepo.operations import promote
from modelrepo.repository import open_repository
from modelrepo.s3 import S3Repository
from tests.modelrepo.conftest import write_source
from tests.support.versions import publish_copy


class Recorder:
    """The sync's observer: what it was told."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.requests: dict[str, int] = {}
        self.downloaded = 0
        self.syncs: list[bool] = []

    def sync_finished(self, *, success: bool, seconds: float, timestamp: float) -> None:
        self.syncs.append(success)

    def sync_error(self, *, reason: str) -> None:
        self.errors.append(reason)

    def sync_downloaded(self, *, size: int) -> None:
        self.downloaded += size

    def sync_requests_made(self, *, kind: str, count: int) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + count


def s3_repo(url: str) -> S3Repository:
    repo = open_repository(url)
    assert isinstance(repo, S3Repository)
    return repo


def make_sync(
    url: str,
    cache: Path,
    *,
    keep: int = 1,
    loaded: frozenset[int] = frozenset(),
    poll_seconds: float = 0.01,
) -> tuple[ModelSync, Recorder]:
    recorder = Recorder()
    sync = ModelSync(
        s3_repo(url),
        cache,
        keep=keep,
        poll_interval_seconds=poll_seconds,
        loaded=lambda: loaded,
        observer=recorder,
    )
    return sync, recorder


def test_sync_downloads_labelled_and_newest_and_writes_labels(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    for version in (1, 2, 3):
        repo.publish(write_source(tmp_path, version), version)
    promote(repo, 1)
    # An interrupted upload of 4: files without a manifest, which is no version.
    obstore.put(repo.store, "4/saved_model.pb", b"partial")
    cache = tmp_path / "cache" / "xor"
    sync, recorder = make_sync(s3_url, cache)
    sync.sync()
    assert sorted(cached_versions(cache)) == [1, 3]  # stable, and the newest (keep=1)
    assert not (cache / "4").exists()
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".tmp-")]
    assert json.loads((cache / LABELS_FILE).read_text())["labels"] == {"stable": 1}
    assert (cache / "3" / MANIFEST_FILE).is_file()
    assert recorder.syncs == [True] and recorder.errors == []
    assert sync.last_success is not None
    # An idle poll: two conditional GETs, nothing else.
    before = dict(recorder.requests)
    sync.sync()
    spent = {k: recorder.requests.get(k, 0) - before.get(k, 0) for k in recorder.requests}
    assert spent == {"labels": 1, "index": 1, "list": 0, "download": 0}


def test_a_corrupt_version_is_refused_counted_and_retried_with_backoff(
    s3_url: str, tmp_path: Path
) -> None:
    repo = s3_repo(s3_url)
    repo.publish(write_source(tmp_path, 1), 1)
    repo.publish(write_source(tmp_path, 2), 2)
    key = "2/variables/variables.data-00000-of-00001"
    data = bytearray(obstore.get(repo.store, key).bytes())
    data[0] ^= 0xFF
    obstore.put(repo.store, key, bytes(data))
    cache = tmp_path / "cache"
    sync, recorder = make_sync(s3_url, cache, keep=2, poll_seconds=60)
    sync.sync()
    assert sorted(cached_versions(cache)) == [1]
    assert recorder.errors == [CHECKSUM_MISMATCH]
    assert "version 2" in sync.problems
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".tmp-")]
    sync.sync()  # within the version's backoff: not tried again
    assert recorder.errors == [CHECKSUM_MISMATCH]


@pytest.mark.parametrize(("poll_seconds", "cap"), [(0.5, 5.0), (2.0, 20.0), (30.0, 60.0)])
def test_an_unreachable_store_is_retried_doubling_up_to_the_cap(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, poll_seconds: float, cap: float
) -> None:
    """The waits between attempts double from one poll interval and stop at 10 intervals (at
    least 5 s, at most 60 s): a store back after an outage is synced from within the cap."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    now = [1000.0]
    recorder = Recorder()
    sync = ModelSync(
        s3_repo(s3_url),
        tmp_path / "cache",
        keep=1,
        poll_interval_seconds=poll_seconds,
        observer=recorder,
        clock=lambda: now[0],
    )
    step = poll_seconds / 4
    attempts: list[float] = []
    while len(attempts) < 7:
        before = len(recorder.syncs)
        sync.sync()
        if len(recorder.syncs) > before:
            attempts.append(now[0])
        now[0] += step
    waits = [round(b - a, 6) for a, b in itertools.pairwise(attempts)]
    expected = [min(cap, poll_seconds * 2**i) for i in range(len(waits))]
    assert waits == pytest.approx(expected, abs=step)
    assert recorder.syncs == [False] * 7
    assert set(recorder.errors) == {"unreachable"}


def test_versions_that_left_are_evicted_unless_labelled_or_loaded(
    s3_url: str, tmp_path: Path
) -> None:
    repo = s3_repo(s3_url)
    for version in (1, 2, 3):
        repo.publish(write_source(tmp_path, version), version)
    cache = tmp_path / "cache"
    sync, _ = make_sync(s3_url, cache, keep=3, loaded=frozenset({2}))
    sync.sync()
    assert sorted(cached_versions(cache)) == [1, 2, 3]
    for version in (1, 2):
        repo.delete_version(version)
    repo.rewrite_index()
    sync.sync()
    assert sorted(cached_versions(cache)) == [2, 3]  # 2 is loaded: kept
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".tmp-")]


def test_the_store_ignores_cache_versions_without_manifest(
    tmp_path: Path, trained_version: Path
) -> None:
    cache = tmp_path / "cache"
    copied = publish_copy(trained_version, cache, 5)
    (copied / MANIFEST_FILE).unlink(missing_ok=True)
    store = ModelStore(cache, require_manifest=True)
    assert store.refresh() is None
    assert store.loaded == ()


@pytest.mark.parametrize(
    "source", ["http://example.com/x", "s3://B/x", "s3://", "s3://AKIA:hunter2@bucket/x"]
)
def test_model_source_must_be_an_s3_url(source: str) -> None:
    with pytest.raises(ConfigError, match="XOR_MODEL_SOURCE") as info:
        load_settings(model_source=source)
    assert "hunter2" not in str(info.value)


def test_model_source_is_normalized() -> None:
    assert load_settings(model_source="s3://models/xor/").model_source == "s3://models/xor"
    assert load_settings(model_source="").model_source == ""
