"""Real servers for the client's tests: one serving the trained version (with a small request
limit, so batching and re-splitting show), and servers with no model loaded (503)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.server import Server, running_server, start_server_in, stop_server

VERSION = 7
# The service's XOR_MAX_REQUEST_PAIRS for the shared server: below the client's default
# batch size, so the client has to learn it from the service's 422.
LIMIT = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_version: Path) -> Iterator[Server]:
    """A real server holding the trained version as VERSION, at most LIMIT pairs a request."""
    tmp = tmp_path_factory.mktemp("client-server")
    with running_server(tmp, trained_version, VERSION, XOR_MAX_REQUEST_PAIRS=str(LIMIT)) as server:
        yield server


def start_unready_server(tmp: Path) -> Server:
    """A real server on an empty model dir: alive, answering /predict 503 model_unavailable
    with Retry-After until a version is published into ``server.model_dir``."""
    model_dir = tmp / "xor"
    model_dir.mkdir()
    return start_server_in(REPO, tmp, model_dir, wait_on="/health/live")


@pytest.fixture
def unready_server(tmp_path: Path) -> Iterator[Server]:
    server = start_unready_server(tmp_path)
    try:
        yield server
    finally:
        assert stop_server(server) == 0, server.log.read_text()[-4000:]


def xor(pair: tuple[int, int]) -> int:
    return pair[0] ^ pair[1]


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``xor-predict ARGS`` (as ``python -m xor_client``), with no XOR_* variable set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XOR_")}
    return subprocess.run(
        [sys.executable, "-m", "xor_client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
