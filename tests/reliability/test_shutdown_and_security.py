"""SIGTERM under load, and security hygiene: no debug surface, no CORS, pinned dependencies."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.server.uvicorn_hooks import GracefulServer, accept_queued, guarded_httptools
from tests.support import REPO
from tests.support.server import start_server
from tests.support.sockets import read_until_closed
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_sigterm_under_load_completes_every_accepted_request(
    tmp_path: Path, trained_version: Path
) -> None:
    model_dir = tmp_path / "xor"
    publish_copy(trained_version, model_dir, 1000)
    server = start_server(tmp_path, model_dir, XOR_SHUTDOWN_TIMEOUT_SECONDS="10")
    completed: list[int] = []
    failures: list[str] = []
    refused = 0
    stop = threading.Event()
    lock = threading.Lock()

    def load() -> None:
        nonlocal refused
        while not stop.is_set():
            try:
                # A fresh connection per request: each is either accepted and answered, or
                # refused at connect time once the listener is closed.
                response = httpx.post(
                    f"{server.url}/predict", json={"instances": [[0, 1], [1, 1]]}, timeout=10
                )
            except httpx.ConnectError:
                with lock:
                    refused += 1
                time.sleep(0.01)
                continue
            except Exception as exc:  # a request accepted but not answered: the failure we hunt
                with lock:
                    failures.append(repr(exc))
                continue
            with lock:
                completed.append(response.status_code)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    # The signal must come under real load: wait (bounded) for requests to flow, rather than a
    # fixed time, which a busy machine can make too short (CI saw 11 answers in 1.5 s).
    try:
        wait_for(lambda: len(completed) > 20, timeout=60, what="20 answers before SIGTERM")
    except BaseException:
        stop.set()
        server.process.kill()
        raise
    before = len(completed)
    server.process.send_signal(signal.SIGTERM)
    exit_code = server.process.wait(timeout=20)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert before > 20
    assert failures == []
    assert set(completed) == {200}
    assert refused > 0  # new connections were refused cleanly after the listener closed
    assert exit_code == 0


def test_sigterm_serves_a_request_still_on_its_way_and_drops_silent_connections(
    tmp_path: Path, trained_version: Path
) -> None:
    """A connection accepted just before SIGTERM whose request had not arrived yet is served
    (with connection: close); one that sends nothing is closed after a short grace."""
    model_dir = tmp_path / "xor"
    publish_copy(trained_version, model_dir, 1000)
    server = start_server(tmp_path, model_dir, XOR_SHUTDOWN_TIMEOUT_SECONDS="10")
    port = int(server.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port)) as late,
        socket.create_connection(("127.0.0.1", port)) as silent,
    ):
        late.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n")
        time.sleep(0.5)  # both accepted by the server; the first has sent half its headers
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        body = b'{"instances": [[0, 1]]}'
        late.sendall(b"content-length: %d\r\n\r\n%s" % (len(body), body))
        head, _, payload = read_until_closed(late).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"connection: close" in head.lower()
        assert json.loads(payload)["predictions"][0]["class_id"] == 1
        silent_answer = read_until_closed(silent)
        assert silent_answer == b"" or silent_answer.startswith(b"HTTP/1.1 408 "), silent_answer
        assert server.process.wait(timeout=20) == 0
    # The silent connection held the shutdown for its grace only, not the read deadline.
    assert time.monotonic() - started < 8


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: reads the request, answers 200 with its body length."""
    assert scope["type"] == "http"
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_shutdown_serves_connections_waiting_in_the_accept_queue() -> None:
    """Connections the kernel accepted but the server had not yet taken when the shutdown
    began are served, not reset by the listener's close."""

    async def scenario() -> list[bytes]:
        config = uvicorn.Config(
            _hello,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,
            http=guarded_httptools(read_timeout=5, max_header_bytes=65536),
            timeout_graceful_shutdown=5,
        )
        config.load()
        server = GracefulServer(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        # The event loop does not run while these connect and send: they wait in the queue.
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for client in clients:
            client.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        assert len(server.server_state.connections) == 0
        await server.shutdown()
        answers = []
        for client in clients:
            with client:
                answers.append(read_until_closed(client))
        return answers

    for answer in asyncio.run(scenario()):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), answer
        assert b"connection: close" in head.lower()
        assert body == b"3"


def test_accept_queued_takes_every_waiting_connection_and_nothing_else() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert accept_queued(listener) == []
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        accepted = accept_queued(listener)
        try:
            assert len(accepted) == 4
            assert all(not connection.getblocking() for connection in accepted)
            assert accept_queued(listener) == []
            assert listener.fileno() >= 0  # the listener itself stays open
        finally:
            for sock in accepted + clients:
                sock.close()


# --- security hygiene -------------------------------------------------------------------------

DEBUG_PATHS = [
    "/debug",
    "/_debug",
    "/admin",
    "/console",
    "/debug/pprof",
    "/env",
    "/config",
    "/settings",
    "/shutdown",
    "/reload",
    "/.env",
    "/server-status",
]


def test_no_debug_endpoints(served_client: TestClient) -> None:
    for path in DEBUG_PATHS:
        for method in ("GET", "POST"):
            response = served_client.request(method, path)
            assert response.status_code == 404, (method, path)
    # That a server error leaks no traceback: tests/app/server/test_middleware.py.


def test_cors_is_off_by_default(served_client: TestClient) -> None:
    origin = {"Origin": "https://evil.example"}
    for response in (
        served_client.get("/health", headers=origin),
        served_client.post("/predict", json={"inputs": [0, 1]}, headers=origin),
        served_client.options(
            "/predict",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        ),
    ):
        assert not any(h.lower().startswith("access-control-") for h in response.headers)


LOCKS = ["requirements.lock", "requirements-dev.lock"]
_PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.+!_-]+)(\s*;\s*.+)?$"
)


def _locked(path: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # uv's "# via" comments
        match = _PIN.fullmatch(line)
        assert match, f"{path.name}: not pinned as name==version: {line!r}"
        names[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[3]
    return names


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_files_pin_every_dependency(lock: str) -> None:
    locked = _locked(REPO / lock)
    assert locked
    # Every transitive requirement of every locked package is locked too.
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    missing = []
    for name in locked:
        try:
            requirements = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # another platform's package (markers)
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = re.sub(r"[-_.]+", "-", requirement.name).lower()
            if key not in locked:
                missing.append(f"{name} -> {requirement.name}")
    assert missing == []


# Import names whose distribution is named differently.
_DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "google": "protobuf",
    "prometheus_client": "prometheus-client",
    "pydantic_settings": "pydantic-settings",
    "tensorflow": "tensorflow-cpu",
}


# The project's own top-level packages (pyproject.toml's package list).
_OWN_PACKAGES = ("app", "training", "modelrepo", "xorlog")


def _third_party_imports(package: Path) -> set[str]:
    names: set[str] = set()
    for file in package.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in _OWN_PACKAGES}


def test_every_import_of_the_project_is_in_the_runtime_lock() -> None:
    locked = _locked(REPO / "requirements.lock")
    imports = set().union(*(_third_party_imports(REPO / package) for package in _OWN_PACKAGES))
    assert imports  # the scan found something
    unlocked = sorted(
        name
        for name in imports
        if re.sub(r"[-_.]+", "-", _DISTRIBUTIONS.get(name, name)).lower() not in locked
    )
    assert unlocked == []
