"""``XOR_SHUTDOWN_DELAY_SECONDS``: after SIGTERM, readiness fails at once while requests are
still served for the delay; then the drain; a second signal ends the delay.

The server's own rules in process (``GracefulServer``, readiness), then real ``python -m app``
processes. Timings are asserted with generous bounds: this runs on small, noisy machines.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.server.uvicorn_hooks import CONNECTION_CLOSE, GracefulServer
from tests.support.apps import serving_client
from tests.support.server import Server, start_server
from tests.support.sockets import read_until_closed
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for

VERSION = 7
NOT_READY = {"status": "unavailable", "reason": "shutting down"}


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def _server(delay: float, calls: list[str], *, started: bool = True) -> GracefulServer:
    server = GracefulServer(
        uvicorn.Config(_app, log_config=None),
        shutdown_delay=delay,
        on_stopping=lambda: calls.append("stopping"),
    )
    server.started = started
    return server


def _exiting(server: GracefulServer) -> tuple[bool, bool]:
    """``should_exit`` and ``force_exit`` (read through a call: the signal handler sets them)."""
    return server.should_exit, server.force_exit


def _tick(server: GracefulServer, counter: int = 1) -> bool:
    return asyncio.run(server.on_tick(counter))


# In process: the signal rules -------------------------------------------------------------


def test_the_first_signal_starts_the_delay_and_a_second_ends_it() -> None:
    calls: list[str] = []
    server = _server(30, calls)
    server.handle_exit(signal.SIGTERM, None)
    assert _exiting(server) == (False, False) and server.stopping_since is not None
    assert calls == ["stopping"]
    assert CONNECTION_CLOSE in server.server_state.default_headers
    assert _tick(server) is False
    server.handle_exit(signal.SIGTERM, None)  # the drain begins at once
    assert _exiting(server) == (True, False)
    assert _tick(server) is True
    assert calls == ["stopping"]
    server.handle_exit(signal.SIGINT, None)  # uvicorn's rule from here on: a SIGINT forces
    assert _exiting(server) == (True, True)


@pytest.mark.parametrize(("delay", "started"), [(0.0, True), (30.0, False)])
def test_without_a_delay_or_before_listening_the_first_signal_starts_the_drain(
    delay: float, started: bool
) -> None:
    calls: list[str] = []
    server = _server(delay, calls, started=started)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit
    assert calls == [] and server.stopping_since is None
    assert CONNECTION_CLOSE not in server.server_state.default_headers


def test_a_tick_ends_the_delay_once_it_has_passed(caplog: pytest.LogCaptureFixture) -> None:
    server = _server(0.2, [])
    with caplog.at_level(logging.INFO, logger="app.server.uvicorn_hooks"):
        server.handle_exit(signal.SIGTERM, None)
        assert _tick(server, 0) is False
        time.sleep(0.3)
        assert _tick(server, 0) is True  # counter 0: uvicorn renews the default headers too
    assert server.should_exit
    assert CONNECTION_CLOSE in server.server_state.default_headers
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "shutdown_delay"]
    assert record.levelno == logging.INFO and getattr(record, "seconds", None) == 0.2


def test_readiness_fails_once_shutting_down_while_the_rest_is_served(
    trained_model_dir: Path,
) -> None:
    with serving_client(trained_model_dir) as client:
        assert client.get("/health/ready").status_code == 200
        client.app.state.services.store.begin_shutdown()  # type: ignore[attr-defined]
        for path in ("/health", "/health/ready"):
            response = client.get(path)
            assert response.status_code == 503
            assert response.json() == NOT_READY
        assert client.get("/health/live").json() == {"status": "ok"}
        assert client.post("/predict", json={"inputs": [1, 0]}).status_code == 200


# Real processes ---------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path, trained_version: Path) -> Path:
    directory = tmp_path / "xor"
    publish_copy(trained_version, directory, VERSION)
    return directory


def _readiness(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/health/ready", timeout=5)


def _signal_and_wait_until_not_ready(server: Server) -> tuple[float, float]:
    """SIGTERM; returns when it was sent and how long until readiness said 503."""
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: _readiness(server).status_code == 503, timeout=10, interval=0.01)
    return signalled, time.monotonic() - signalled


def _raw_request(server: Server, request: bytes) -> bytes:
    """``request`` on a connection of its own; everything until the server closes it."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        return read_until_closed(sock, timeout=5)


def _stop(server: Server, timeout: float) -> int:
    try:
        return server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise


def _events(server: Server, event: str) -> list[dict[str, Any]]:
    return [line for line in server.log_lines() if line.get("event") == event]


def test_during_the_delay_readiness_fails_and_requests_are_still_served(
    tmp_path: Path, model_dir: Path
) -> None:
    delay = 4.0
    server = start_server(tmp_path, model_dir, XOR_SHUTDOWN_DELAY_SECONDS=str(delay))
    pairs = {"instances": [[0, 1], [1, 1]]}
    with httpx.Client(base_url=server.url, timeout=10) as pooled:  # a keep-alive client
        before = pooled.post("/predict", json=pairs)
        assert before.status_code == 200 and "connection" not in before.headers
        signalled, not_ready_in = _signal_and_wait_until_not_ready(server)
        for path in ("/health", "/health/ready"):
            response = pooled.get(path)
            assert (response.status_code, response.json()) == (503, NOT_READY)
        assert pooled.get("/health/live").status_code == 200
        during = pooled.post("/predict", json=pairs)
        assert during.status_code == 200
        assert [p["class_id"] for p in during.json()["predictions"]] == [1, 0]
        # Keep-alive connections are closed after their response, so a pool reconnects.
        assert during.headers["connection"] == "close"
        # A new connection is still accepted and served; the server then closes it.
        raw = _raw_request(server, b"GET /health/live HTTP/1.1\r\nhost: test\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in raw
        served_until = time.monotonic() - signalled
    assert served_until < delay, "too slow to check anything within the delay: raise it"
    exit_code = _stop(server, timeout=delay + 30)
    stopped_in = time.monotonic() - signalled
    assert exit_code == 0, server.log.read_text()[-4000:]
    assert stopped_in >= delay
    assert not_ready_in < delay / 2
    (announced,) = _events(server, "shutdown_delay")
    assert announced["seconds"] == delay and announced["level"] == "INFO"
    assert _events(server, "stopped")
    print(f"SIGTERM -> readiness 503 in {not_ready_in * 1000:.0f} ms; stop took {stopped_in:.2f} s")


def test_without_a_delay_sigterm_stops_accepting_at_once(tmp_path: Path, model_dir: Path) -> None:
    server = start_server(tmp_path, model_dir)

    def refused() -> bool:
        try:
            _readiness(server)
        except httpx.TransportError:
            return True
        return False

    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    wait_for(refused, timeout=5, interval=0.02, what="the listener closed")
    closed_in = time.monotonic() - signalled
    exit_code = _stop(server, timeout=30)
    stopped_in = time.monotonic() - signalled
    assert exit_code == 0, server.log.read_text()[-4000:]
    assert _events(server, "shutdown_delay") == []
    assert _events(server, "stopped")
    print(f"no delay: listener closed in {closed_in * 1000:.0f} ms; stop took {stopped_in:.2f} s")


def test_a_second_signal_ends_the_delay(tmp_path: Path, model_dir: Path) -> None:
    delay = 120.0
    server = start_server(tmp_path, model_dir, XOR_SHUTDOWN_DELAY_SECONDS=str(delay))
    signalled, _ = _signal_and_wait_until_not_ready(server)
    server.process.send_signal(signal.SIGTERM)
    exit_code = _stop(server, timeout=60)
    stopped_in = time.monotonic() - signalled
    assert exit_code == 0, server.log.read_text()[-4000:]
    assert stopped_in < delay / 2
    assert _events(server, "shutdown_delay") and _events(server, "shutdown_delay_ended")
    assert _events(server, "stopped")
    print(f"second SIGTERM: stop took {stopped_in:.2f} s of a {delay:g} s delay")


def test_a_request_in_flight_when_the_delay_ends_is_answered(
    tmp_path: Path, model_dir: Path
) -> None:
    delay = 2.0
    server = start_server(tmp_path, model_dir, XOR_SHUTDOWN_DELAY_SECONDS=str(delay))
    signalled, _ = _signal_and_wait_until_not_ready(server)
    sent: list[float] = []
    outcome: list[httpx.Response | Exception] = []

    def slow_body() -> Iterator[bytes]:
        # Starts within the delay, still arriving when the delay ends and the drain begins.
        sent.append(time.monotonic() - signalled)
        yield b'{"instances": [[0, 1]'
        while time.monotonic() - signalled < delay + 1.5:
            time.sleep(0.1)
            yield b", [1, 1]"
        yield b"]}"
        sent.append(time.monotonic() - signalled)

    def request() -> None:
        try:
            outcome.append(
                httpx.post(
                    f"{server.url}/predict",
                    content=slow_body(),
                    headers={"Content-Type": "application/json"},
                    timeout=20,
                )
            )
        except Exception as exc:  # recorded: the test fails on it
            outcome.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    exit_code = _stop(server, timeout=60)
    thread.join(timeout=20)
    stopped_in = time.monotonic() - signalled
    (response,) = outcome
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) > 1 and {p["class_id"] for p in predictions} == {0, 1}
    first_byte, last_byte = sent
    assert first_byte < delay < last_byte, "the request did not span the end of the delay"
    assert exit_code == 0, server.log.read_text()[-4000:]
    assert stopped_in >= delay
    print(f"in flight across the delay's end: answered; stop took {stopped_in:.2f} s")
