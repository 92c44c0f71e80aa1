"""Three replicas, one repository on object storage (issue 14's scale-out test): three real
``python -m app`` processes, each with its own ``XOR_MODEL_DIR`` cache of one SeaweedFS
repository. A published and promoted version reaches all three within 2 poll intervals (plus
the download and the load); promoting stable back and rolling back are followed by all three;
a request loop against every replica through all of it sees no failed request."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from modelrepo.operations import promote, rollback
from tests.reliability.test_s3_sync import (
    PAIR,
    POLL_SECONDS,
    RequestLoop,
    s3_repo,
    served_version,
    upload,
)
from tests.support.s3 import SeaweedS3
from tests.support.server import Server, start_server, stop_server
from tests.support.waiting import wait_for

REPLICAS = 3
BASE = 4000
# What following may take beyond 2 poll intervals: downloading and loading a version.
SLACK_SECONDS = 5.0


def all_follow(replicas: list[Server], version: int, since: float) -> list[float]:
    """Each replica's seconds from ``since`` until it serves ``version`` (bounded wait)."""
    seconds = []
    for server in replicas:

        def serves(server: Server = server) -> bool:
            return served_version(server) == version

        wait_for(serves, timeout=15, interval=0.02)
        seconds.append(time.monotonic() - since)
    return seconds


def test_three_replicas_follow_publish_promote_and_rollback(
    s3_url: str, s3_server: SeaweedS3, s3_env: dict[str, str], tmp_path: Path, trained_version: Path
) -> None:
    repo = s3_repo(s3_url)
    staging = tmp_path / "staging"
    first, second = BASE, BASE + 1
    upload(repo, trained_version, staging, first)
    promote(repo, first)
    replicas: list[Server] = []
    try:
        for index in range(REPLICAS):
            home = tmp_path / f"replica-{index}"
            home.mkdir()
            replicas.append(
                start_server(
                    home,
                    home / "cache" / "xor",  # each replica's own cache, created by the server
                    XOR_MODEL_SOURCE=s3_url,
                    XOR_POLL_INTERVAL_SECONDS=str(POLL_SECONDS),
                    XOR_LOG_FORMAT="json",
                )
            )
        assert [served_version(server) for server in replicas] == [first] * REPLICAS

        loops = [RequestLoop(server) for server in replicas]
        for loop in loops:
            loop.__enter__()
        try:
            upload(repo, trained_version, staging, second)
            since = time.monotonic()
            promote(repo, second)
            published = all_follow(replicas, second, since)

            since = time.monotonic()
            promote(repo, first)  # stable back to the first version
            back = all_follow(replicas, first, since)

            since = time.monotonic()
            rollback(repo)  # stable's previous value: the second version again
            rolled = all_follow(replicas, second, since)
        finally:
            for loop in loops:
                loop.__exit__(None, None, None)
        for loop in loops:
            assert loop.failures == [], loop.failures[:5]
            assert loop.requests > 20
        print(
            f"publish+promote -> all {REPLICAS} served: max {max(published):.2f} s; "
            f"promote back: max {max(back):.2f} s; rollback: max {max(rolled):.2f} s; "
            f"{sum(loop.requests for loop in loops)} requests, 0 failed"
        )
        limit = 2 * POLL_SECONDS + SLACK_SECONDS
        assert max(published) < limit and max(back) < limit and max(rolled) < limit
        for server in replicas:
            answer = httpx.post(f"{server.url}/predict", json=PAIR).json()
            assert answer["model_version"] == second
    finally:
        codes = [stop_server(server) for server in replicas]
    assert codes == [0] * len(replicas)
