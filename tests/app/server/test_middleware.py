"""Request ids, the 500 in the error shape, and the request log line and metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.support.responses import assert_service_error


def test_request_id_is_echoed_when_sane(served_client: TestClient) -> None:
    response = served_client.get("/health", headers={"X-Request-ID": "abc-123.x"})
    assert response.headers["x-request-id"] == "abc-123.x"


@pytest.mark.parametrize(
    "sent", [b"", b"has space", b"x" * 129, b"semi;colon", "\u00fcn\u00ef".encode()]
)
def test_request_id_is_generated_otherwise(served_client: TestClient, sent: bytes) -> None:
    response = served_client.get("/health/live", headers={"X-Request-ID": sent})
    generated = response.headers["x-request-id"]
    assert generated.encode() != sent and len(generated) == 32


def test_every_response_carries_a_request_id(served_client: TestClient) -> None:
    for response in (
        served_client.get("/nope"),
        served_client.post("/predict", content=b"{"),
        served_client.get("/metrics"),
    ):
        assert len(response.headers["x-request-id"]) == 32


def test_internal_failure_is_500_in_the_error_shape_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(model_dir=tmp_path, poll_interval_seconds=60))

    def fail() -> None:
        raise RuntimeError("boom")

    app.api.add_api_route("/fail", fail)
    with TestClient(app) as client, caplog.at_level(logging.INFO):
        response = client.get("/fail")
    error = assert_service_error(response, 500, code="internal_error")
    assert response.headers["x-request-id"] in error["message"]
    assert "boom" not in response.text and "Traceback" not in response.text
    failure = next(r for r in caplog.records if getattr(r, "event", None) == "unhandled_error")
    assert failure.exc_info is not None
    request = next(r for r in caplog.records if getattr(r, "event", None) == "request")
    assert (request.status, request.path, request.method) == (500, "/fail", "GET")  # type: ignore[attr-defined]


def test_access_log_off_keeps_error_logs_and_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(model_dir=tmp_path, poll_interval_seconds=60, access_log=False))

    def fail() -> None:
        raise RuntimeError("boom")

    app.api.add_api_route("/fail", fail)
    with TestClient(app) as client, caplog.at_level(logging.INFO):
        assert client.get("/health/live").status_code == 200
        assert client.post("/predict", json={"inputs": [0, 1]}).status_code == 503
        assert client.get("/fail").status_code == 500
        metrics = client.get("/metrics").text
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "request" not in events
    assert "unhandled_error" in events
    assert 'xor_http_requests_total{method="POST",route="/predict",status="503"} 1.0' in metrics
    assert 'xor_http_requests_total{method="GET",route="/fail",status="500"} 1.0' in metrics
