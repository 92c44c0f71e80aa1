"""Reliability fixtures: the trained version and real server processes of tests/app, reused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import (  # noqa: F401  (fixtures, registered for this directory)
    model_dir,
    publish_copy,
    served_client,
    trained_model_dir,
    trained_version,
    trained_version_number,
)
from tests.app.test_server_process import Server, start_server, stop_server

FIRST_VERSION = 1000


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    trained_version: Path,  # noqa: F811  (the fixture imported above)
) -> Iterator[Server]:
    """A real ``python -m app`` on a free loopback port, serving version 1000."""
    tmp = tmp_path_factory.mktemp("reliability-server")
    versions = tmp / "xor"
    publish_copy(trained_version, versions, FIRST_VERSION)
    server = start_server(tmp, versions, XOR_REQUEST_TIMEOUT_SECONDS="3")
    yield server
    assert stop_server(server) == 0
