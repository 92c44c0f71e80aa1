"""What the monitoring tests check against: promtool, and the series the app really exports."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.monitoring.promql import PROMETHEUS_SERIES, exposed_series
from tests.support.requirements import require_command


@pytest.fixture(scope="session")
def promtool() -> str:
    """The ``promtool`` command; skipped where missing (failed with XOR_REQUIRE_SERVICES=1)."""
    return require_command("promtool", "Debian's prometheus package: run scripts/system-deps")


@pytest.fixture(scope="module")
def known_series(served_client: TestClient) -> frozenset[str]:
    """Every series name a scrape of the app can produce, after one prediction (so that the
    histograms of the request path have samples), plus those Prometheus adds (``up``...)."""
    response = served_client.post("/predict", json={"instances": [[0, 1], [1, 1]]})
    assert response.status_code == 200, response.text
    metrics = served_client.get("/metrics")
    assert metrics.status_code == 200
    return exposed_series(metrics.text) | PROMETHEUS_SERIES
