"""End to end against real ``python -m app`` processes on loopback ports.

Bounded in count and time: one long-lived server for reload and body limits, one for SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import REPO
from tests.support.server import Server, running_server, start_server
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for

FIRST_VERSION = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_version: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    with running_server(tmp, trained_version, FIRST_VERSION, XOR_MAX_BODY_BYTES="4096") as server:
        yield server


@dataclass
class LoadResult:
    statuses: list[int] = field(default_factory=list)
    versions: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    wrong_answers: int = 0


def run_load(url: str, stop: threading.Event, result: LoadResult, max_requests: int) -> None:
    pairs = [[0, 0], [0, 1], [1, 0], [1, 1]]
    lock = threading.Lock()
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(max_requests):
                if stop.is_set():
                    return
                response = client.post("/predict", json={"instances": pairs})
                with lock:
                    result.statuses.append(response.status_code)
                    if response.status_code == 200:
                        body = response.json()
                        result.versions.add(body["model_version"])
                        classes = [p["class_id"] for p in body["predictions"]]
                        result.wrong_answers += classes != [0, 1, 1, 0]
    except Exception as exc:  # recorded: the test fails on any
        result.errors.append(repr(exc))


def test_hot_reload_under_load_fails_no_request(server: Server, trained_version: Path) -> None:
    result = LoadResult()
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_load, args=(server.url, stop, result, 2000)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(result.statuses) >= 50, timeout=20)
        published_at = time.monotonic()
        publish_copy(trained_version, server.model_dir, FIRST_VERSION + 1)
        wait_for(
            lambda: (
                httpx.get(f"{server.url}/health").json().get("model_version") == FIRST_VERSION + 1
            ),
            timeout=20,
            interval=0.02,
        )
        swap_seconds = time.monotonic() - published_at
        served_before = len(result.statuses)
        wait_for(lambda: len(result.statuses) >= served_before + 50, timeout=20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert result.errors == []
    assert set(result.statuses) == {200}
    assert result.wrong_answers == 0
    assert result.versions == {FIRST_VERSION, FIRST_VERSION + 1}
    print(f"{len(result.statuses)} requests, new version served {swap_seconds:.2f} s after publish")
    swaps = [line for line in server.log_lines() if line.get("event") == "model_swapped"]
    assert [line["model_version"] for line in swaps][-1] == FIRST_VERSION + 1


def test_corrupt_version_is_skipped_by_the_running_server(
    server: Server, trained_version: Path
) -> None:
    current = httpx.get(f"{server.url}/health").json()["model_version"]
    broken = publish_copy(trained_version, server.model_dir, current + 10)
    (broken / "saved_model.pb").write_bytes(b"garbage")

    def failures() -> float:
        text = httpx.get(f"{server.url}/metrics").text
        (line,) = [x for x in text.splitlines() if x.startswith('xor_model_loads_total{outcome="f')]
        return float(line.split()[-1])

    wait_for(lambda: failures() >= 1, timeout=20)
    response = httpx.post(f"{server.url}/predict", json={"inputs": [1, 0]})
    assert response.status_code == 200
    assert response.json()["model_version"] == current
    time.sleep(1)  # five more polls
    assert failures() == 1
    events = [line for line in server.log_lines() if line.get("event") == "model_load_failed"]
    assert events and events[-1]["model_version"] == current + 10


def test_oversized_bodies_get_413_before_parsing(server: Server) -> None:
    headers = {"Content-Type": "application/json"}
    response = httpx.post(f"{server.url}/predict", content=b"x" * 5000, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * 1024

    response = httpx.post(f"{server.url}/predict", content=chunks(), headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_request_log_lines_are_json(server: Server) -> None:
    httpx.get(f"{server.url}/health/live", headers={"X-Request-ID": "trace-me-1"})
    wait_for(
        lambda: any(line.get("request_id") == "trace-me-1" for line in server.log_lines()),
        timeout=5,
    )
    (line,) = [x for x in server.log_lines() if x.get("request_id") == "trace-me-1"]
    assert line["method"] == "GET" and line["path"] == "/health/live" and line["status"] == 200
    assert isinstance(line["latency_ms"], float)


def test_sigterm_drains_in_flight_requests_and_exits_0(
    tmp_path: Path, trained_version: Path
) -> None:
    model_dir = tmp_path / "xor"
    publish_copy(trained_version, model_dir, FIRST_VERSION)
    server = start_server(tmp_path, model_dir, XOR_SHUTDOWN_TIMEOUT_SECONDS="10")
    in_flight = 4
    started = threading.Barrier(in_flight + 1, timeout=20)
    responses: list[int] = []
    errors: list[str] = []

    def slow_body() -> Iterator[bytes]:
        # The request is in flight (its body still arriving) when SIGTERM lands.
        yield b'{"instances": [[0, 1]'
        started.wait()
        for _ in range(10):
            time.sleep(0.1)
            yield b", [1, 1]"
        yield b"]}"

    def request() -> None:
        try:
            response = httpx.post(
                f"{server.url}/predict",
                content=slow_body(),
                headers={"Content-Type": "application/json"},
                timeout=20,
            )
            responses.append(response.status_code)
            assert len(response.json()["predictions"]) == 11
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=request) for _ in range(in_flight)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.1)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    exit_code = server.process.wait(timeout=15)
    stopped_in = time.monotonic() - signalled
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert responses == [200] * in_flight
    assert exit_code == 0, server.log.read_text()
    assert stopped_in < 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health/live", timeout=2)
    assert any(line.get("event") == "stopped" for line in server.log_lines())


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("XOR_")}
        completed = subprocess.run(
            [sys.executable, "-m", "app"],
            cwd=REPO,
            env={
                **environment,
                "XOR_PORT": str(taken.getsockname()[1]),
                "XOR_MODEL_DIR": str(tmp_path),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert completed.returncode == 1
    assert "address already in use" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_freeze_startup_heap_spares_what_is_allocated_later() -> None:
    import gc
    import weakref

    import tensorflow  # noqa: F401  (the import heap the freeze is for)

    from app.server.runner import freeze_startup_heap

    try:
        frozen = freeze_startup_heap()
        assert frozen > 100_000  # TensorFlow's import alone leaves far more
        assert gc.get_freeze_count() == frozen

        class Node:
            peer: object = None

        node = Node()
        node.peer = node  # a reference cycle: only the collector can free it
        alive = weakref.ref(node)
        del node
        gc.collect()
        assert alive() is None
    finally:
        gc.unfreeze()
