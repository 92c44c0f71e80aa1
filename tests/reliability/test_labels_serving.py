"""Serving by label on a real ``python -m app``: labels changed as ``xor-models`` changes them
(modelrepo's operations), followed within 2 poll intervals, with no failed request; pinning by
label; the canary's share; a label on a broken version."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelrepo.manifest import build_manifest, write_manifest
from modelrepo.operations import promote, rollback, set_canary_percent
from modelrepo.repository import LocalRepository
from tests.support.server import Server, start_server, stop_server
from tests.support.versions import golden_set_of_xnor, publish_verified_copy
from tests.support.waiting import wait_for

POLL_SECONDS = 1.0
OLD, NEW = 2000, 2001
PAIR = {"inputs": [0, 1]}


@pytest.fixture
def labelled_server(
    tmp_path: Path, trained_version: Path
) -> Iterator[tuple[Server, LocalRepository]]:
    """A server on two verified versions, both kept loaded, polling every second."""
    model_dir = tmp_path / "xor"
    for version in (OLD, NEW):
        publish_verified_copy(trained_version, model_dir, version)
    server = start_server(
        tmp_path,
        model_dir,
        XOR_POLL_INTERVAL_SECONDS=str(POLL_SECONDS),
        XOR_LOADED_VERSIONS="2",
    )
    try:
        yield server, LocalRepository(model_dir)
    finally:
        exit_code = stop_server(server)
    assert exit_code == 0, server.log.read_text()[-4000:]


def served_version(server: Server) -> int:
    version: int = httpx.get(f"{server.url}/health").json()["model_version"]
    return version


def follow_seconds(server: Server, version: int) -> float:
    """Seconds until /health and /predict say ``version`` serves."""
    start = time.monotonic()
    wait_for(lambda: served_version(server) == version, timeout=10, interval=0.02)
    assert httpx.post(f"{server.url}/predict", json=PAIR).json()["model_version"] == version
    return time.monotonic() - start


def test_promote_and_rollback_are_followed_with_no_failed_request(
    labelled_server: tuple[Server, LocalRepository],
) -> None:
    server, repo = labelled_server
    assert served_version(server) == NEW  # no labels.json: the newest, as before
    stop = threading.Event()
    statuses: list[int] = []
    errors: list[str] = []

    def loop() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", json=PAIR)
                    statuses.append(response.status_code)
                    if (
                        response.status_code != 200
                        or response.json()["predictions"][0]["class_id"] != 1
                    ):
                        errors.append(response.text)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        promote(repo, OLD)  # stable back to the older version
        times = [follow_seconds(server, OLD)]
        promote(repo, NEW)
        times.append(follow_seconds(server, NEW))
        rollback(repo)  # back to OLD, from stable's history
        times.append(follow_seconds(server, OLD))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    print(f"{len(statuses)} requests; followed in {', '.join(f'{t:.2f}' for t in times)} s")
    assert errors == []
    assert len(statuses) > 100 and set(statuses) == {200}
    assert max(times) <= 2 * POLL_SECONDS
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f'xor_model_label_version{{label="stable"}} {float(OLD)}' in metrics
    assert f"xor_model_version {float(OLD)}" in metrics
    health = httpx.get(f"{server.url}/health").json()
    assert health["labels"] == {"stable": OLD} and health["label_problems"] == {}
    # The newest stays loaded and warm: pinned, it answers.
    pinned = httpx.post(f"{server.url}/predict?version={NEW}", json=PAIR)
    assert pinned.status_code == 200 and pinned.json()["model_version"] == NEW


def test_pinning_by_label_and_the_canary_share(
    labelled_server: tuple[Server, LocalRepository],
) -> None:
    server, repo = labelled_server
    promote(repo, OLD)
    promote(repo, NEW, label="canary")
    follow_seconds(server, OLD)
    wait_for(
        lambda: (
            httpx.get(f"{server.url}/health").json()["labels"] == {"stable": OLD, "canary": NEW}
        ),
        timeout=10,
    )
    url = server.url
    body = {"instances": [[0, 1]]}
    stable = httpx.post(f"{url}/v1/models/xor/labels/stable:predict", json=body)
    pinned = httpx.post(f"{url}/v1/models/xor/versions/{OLD}:predict", json=body)
    assert stable.status_code == 200 and stable.content == pinned.content
    assert stable.json()["predictions"][0]["class_ids"] == [1]
    status = httpx.get(f"{url}/v1/models/xor/labels/canary").json()
    assert status["model_version_status"][0]["version"] == str(NEW)
    metadata = httpx.get(f"{url}/v1/models/xor/labels/stable/metadata").json()
    assert metadata["model_spec"]["version"] == str(OLD)
    assert httpx.post(f"{url}/predict?label=canary", json=PAIR).json()["model_version"] == NEW
    assert httpx.post(f"{url}/predict?label=stable", json=PAIR).json()["model_version"] == OLD
    missing = httpx.post(f"{url}/v1/models/xor/labels/blue:predict", json=body)
    assert missing.status_code == 404 and "blue" in missing.json()["error"]
    unknown = httpx.post(f"{url}/predict?label=blue", json=PAIR)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "label_not_found"
    bad = httpx.post(f"{url}/predict?version=x", json=PAIR)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == "query.version"
    # Unpinned requests: 25 % to the canary.
    set_canary_percent(repo, 25)
    wait_for(lambda: httpx.get(f"{url}/health").json()["canary_percent"] == 25, timeout=10)
    n, p = 400, 0.25
    with httpx.Client(base_url=url) as client:
        versions = [client.post("/predict", json=PAIR).json()["model_version"] for _ in range(n)]
    assert set(versions) == {OLD, NEW}
    canary = versions.count(NEW)
    # Binomial(400, 0.25): mean 100, sigma = sqrt(n p (1 - p)) = 8.66; 4.5 sigma either side
    # (61 to 139, 15.3 % to 34.7 %): a false alarm about once in 150,000 runs.
    sigma = math.sqrt(n * p * (1 - p))
    print(f"canary answered {canary} of {n} ({canary / n:.1%})")
    assert abs(canary - n * p) <= 4.5 * sigma
    # Pinned and /v1 pinned requests are never drawn.
    assert {
        httpx.post(f"{url}/predict?label=stable", json=PAIR).json()["model_version"]
        for _ in range(40)
    } == {OLD}


def test_a_label_on_a_broken_version_keeps_the_previous_one_serving_and_is_counted(
    labelled_server: tuple[Server, LocalRepository], trained_version: Path
) -> None:
    server, repo = labelled_server
    promote(repo, OLD)
    follow_seconds(server, OLD)
    broken = repo.path / "2002"
    golden_set_of_xnor(trained_version, broken, 2002)
    (broken / "MANIFEST.json").unlink(missing_ok=True)
    write_manifest(broken, build_manifest(broken, 2002))
    promote(repo, 2002)

    def counted() -> bool:
        text = httpx.get(f"{server.url}/metrics").text
        return 'xor_model_label_problems_total{label="stable",reason="version_failed"} 1.0' in text

    wait_for(counted, timeout=15)
    time.sleep(3 * POLL_SECONDS)  # more polls: still counted once
    assert counted()
    health = httpx.get(f"{server.url}/health").json()
    assert health["model_version"] == OLD and health["labels"] == {"stable": OLD}
    assert "golden set" in health["label_problems"]["stable"]
    assert httpx.post(f"{server.url}/predict", json=PAIR).json()["model_version"] == OLD
    problems = [e for e in server.log_lines() if e.get("event") == "label_version_unavailable"]
    assert len(problems) == 1 and problems[0]["serving_version"] == OLD
