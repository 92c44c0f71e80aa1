"""Reliability fixtures: a real server process on a copy of the session's trained version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, running_server

FIRST_VERSION = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_version: Path) -> Iterator[Server]:
    """A real ``python -m app`` on a free loopback port, serving version 1000."""
    tmp = tmp_path_factory.mktemp("reliability-server")
    with running_server(
        tmp, trained_version, FIRST_VERSION, XOR_REQUEST_TIMEOUT_SECONDS="3"
    ) as server:
        yield server
