"""Sync from object storage on a real ``python -m app`` and a real S3 server (SeaweedFS): a
version published to S3 is served within 2 poll intervals, labels are followed, a corrupted
object is refused and counted while the old version keeps serving, an S3 outage under a request
loop fails no request, and the secret key never shows."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import obstore

from modelrepo.operations import promote
from modelrepo.repository import open_repository
from modelrepo.s3 import S3Repository
from tests.support.s3 import SeaweedS3
from tests.support.server import Server, start_server, stop_server
from tests.support.versions import publish_verified_copy
from tests.support.waiting import wait_for

POLL_SECONDS = 0.5
BASE = 3000
PAIR = {"inputs": [0, 1]}


def s3_repo(url: str) -> S3Repository:
    repo = open_repository(url)
    assert isinstance(repo, S3Repository)
    return repo


def upload(repo: S3Repository, trained: Path, staging: Path, version: int) -> None:
    """Publish a copy of the trained version as ``version`` (files, manifest, index.json)."""
    repo.publish(publish_verified_copy(trained, staging, version), version)


def served_version(server: Server) -> int:
    version: int = httpx.get(f"{server.url}/health").json()["model_version"]
    return version


def follow_seconds(server: Server, version: int, since: float) -> float:
    wait_for(lambda: served_version(server) == version, timeout=10, interval=0.02)
    seconds = time.monotonic() - since
    assert httpx.post(f"{server.url}/predict", json=PAIR).json()["model_version"] == version
    return seconds


def metric(server: Server, name: str) -> float:
    return value(httpx.get(f"{server.url}/metrics").text, name)


def value(text: str, name: str) -> float:
    """The sum of the samples of ``text`` (Prometheus text) whose line starts with ``name``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class RequestLoop:
    """Predictions and /health in a loop from a thread; every failure recorded."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.failures: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=5) as client:
            while not self._stop.is_set():
                for method, path in (("POST", "/predict"), ("GET", "/health")):
                    try:
                        response = client.request(
                            method, path, json=PAIR if method == "POST" else None
                        )
                        if response.status_code != 200:
                            self.failures.append(f"{path}: {response.status_code} {response.text}")
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{path}: {exc!r}")
                    self.requests += 1
                time.sleep(0.01)


def corrupt(repo: S3Repository, key: str) -> None:
    """Replace the object with bytes of the same size that differ (one byte flipped)."""
    data = bytearray(obstore.get(repo.store, key).bytes())
    data[len(data) // 2] ^= 0xFF
    obstore.put(repo.store, key, bytes(data))


def test_server_syncs_from_s3(
    s3_url: str, s3_server: SeaweedS3, s3_env: dict[str, str], tmp_path: Path, trained_version: Path
) -> None:
    secret = s3_env["AWS_SECRET_ACCESS_KEY"]
    repo = s3_repo(s3_url)
    staging = tmp_path / "staging"
    old, broken, new = BASE, BASE + 1, BASE + 2
    upload(repo, trained_version, staging, old)
    promote(repo, old)
    # A newer version whose saved_model.pb differs from its manifest (same size).
    upload(repo, trained_version, staging, broken)
    corrupt(repo, f"{broken}/saved_model.pb")
    cache = tmp_path / "cache" / "xor"  # created by the server
    server = start_server(
        tmp_path,
        cache,
        XOR_MODEL_SOURCE=s3_url,
        XOR_POLL_INTERVAL_SECONDS=str(POLL_SECONDS),
        XOR_LOADED_VERSIONS="2",
        XOR_LOG_FORMAT="json",
    )
    try:
        # Served from S3 at start-up; the corrupted version is refused, counted, not cached.
        assert served_version(server) == old
        wait_for(
            lambda: metric(server, 'xor_model_sync_errors_total{reason="checksum_mismatch"}') >= 1,
            timeout=10,
        )
        assert not (cache / str(broken)).exists()
        assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]
        assert (cache / str(old) / "MANIFEST.json").is_file()
        time.sleep(4 * POLL_SECONDS)  # retried with backoff: logged once all the same
        failed = [x for x in server.log_lines() if x.get("event") == "sync_failed"]
        assert len(failed) == 1, failed
        assert served_version(server) == old

        with RequestLoop(server) as loop:
            # Publish a new version and promote it: served within 2 poll intervals.
            upload(repo, trained_version, staging, new)
            since = time.monotonic()
            promote(repo, new)
            publish_to_served = follow_seconds(server, new, since)
            # Promote stable back: followed.
            since = time.monotonic()
            promote(repo, old)
            back = follow_seconds(server, old, since)

            # S3 down for 10 s: requests and /health keep answering 200; errors counted.
            errors_before = metric(server, 'xor_model_sync_errors_total{reason="unreachable"}')
            with s3_server.stopped():
                time.sleep(10)
                assert served_version(server) == old
            assert (
                metric(server, 'xor_model_sync_errors_total{reason="unreachable"}') > errors_before
            )
            # The sync resumes by itself: a promotion after the outage is followed.
            since = time.monotonic()
            promote(repo, new)
            after_outage = follow_seconds(server, new, since)
        assert loop.failures == [], loop.failures[:5]
        assert loop.requests > 100
        print(
            f"publish->served {publish_to_served:.2f} s, promote back {back:.2f} s, "
            f"after a 10 s outage {after_outage:.2f} s, {loop.requests} requests, 0 failed"
        )
        assert publish_to_served < 2 * POLL_SECONDS + 1.0  # + the download and the load
        assert back < 2 * POLL_SECONDS + 0.5

        # Idle polls cost two conditional GETs each.
        kinds = [
            f'xor_model_sync_requests_total{{kind="{k}"}}' for k in ("labels", "index", "list")
        ]
        polls_name = "xor_model_sync_duration_seconds_count"
        start = httpx.get(f"{server.url}/metrics").text  # one scrape: requests and polls agree
        time.sleep(10 * POLL_SECONDS)
        end = httpx.get(f"{server.url}/metrics").text
        requests = sum(value(end, k) - value(start, k) for k in kinds)
        polls = value(end, polls_name) - value(start, polls_name)
        assert polls >= 5
        print(f"idle: {requests / polls:.2f} requests per poll over {polls:.0f} polls")
        assert abs(requests - 2 * polls) <= 2  # a scrape may fall inside one sync

        # The secret never shows: log, /model, /metrics, error bodies.
        bodies = [
            httpx.get(f"{server.url}{path}").text
            for path in ("/model", "/metrics", "/health", "/v1/models/xor")
        ]
        bodies.append(httpx.post(f"{server.url}/predict?version={broken}", json=PAIR).text)
        bodies.append(httpx.post(f"{server.url}/predict", content=b"{").text)
        for text in bodies:
            assert secret not in text
    finally:
        exit_code = stop_server(server)
    log_text = server.log.read_text()
    assert exit_code == 0, log_text[-4000:]
    assert secret not in log_text
    assert s3_env["AWS_ACCESS_KEY_ID"] not in log_text
    assert re.search(r"sync_recovered", log_text), log_text[-4000:]
