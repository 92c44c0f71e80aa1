"""Real ``python -m app`` processes on free loopback ports, logging JSON to a file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for


def free_port() -> int:
    """A loopback TCP port free right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    model_dir: Path
    started_in: float = 0.0

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):  # e.g. a TensorFlow line on stderr
                lines.append(json.loads(line))
        return lines


def start_server(tmp: Path, model_dir: Path, **env: str) -> Server:
    """Start a server on ``model_dir`` with XOR_* overrides ``env``; return once it is ready."""
    return start_server_in(REPO, tmp, model_dir, **env)


def start_server_in(
    cwd: Path, tmp: Path, model_dir: Path, *, wait_on: str = "/health/ready", **env: str
) -> Server:
    """:func:`start_server` in the working directory ``cwd`` (a relative ``model_dir`` is
    relative to it); returns once ``wait_on`` answers 200 (``/health/live`` for a server that
    has no version to be ready with)."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XOR_")}
    environment.update(
        {
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "XOR_MODEL_DIR": str(model_dir),
            "XOR_PORT": str(port),
            "XOR_POLL_INTERVAL_SECONDS": "0.2",
            **env,
        }
    )
    start = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=cwd, env=environment, stdout=out, stderr=out
        )
    server = Server(process, f"http://127.0.0.1:{port}", log, model_dir)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{server.url}{wait_on}", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, timeout=90, interval=0.1, what="server ready")
    server.started_in = time.monotonic() - start
    return server


def stop_server(server: Server) -> int:
    """SIGTERM (if still running) and the exit code; killed if it does not stop in 30 s."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise


@contextlib.contextmanager
def running_server(tmp: Path, trained_version: Path, version: int, **env: str) -> Iterator[Server]:
    """A server on ``tmp/xor`` holding a copy of the trained version as ``version``; stopped
    on exit, which must be a clean exit 0."""
    model_dir = tmp / "xor"
    publish_copy(trained_version, model_dir, version)
    server = start_server(tmp, model_dir, **env)
    try:
        yield server
    finally:
        exit_code = stop_server(server)
    assert exit_code == 0, server.log.read_text()[-4000:]
