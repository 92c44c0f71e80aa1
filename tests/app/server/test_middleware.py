"""Request ids, the 500 in the error shape, the request log line and metrics, and clients that
are gone (499, one line, no traceback)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from app.api.hot import ServiceApp
from app.config import Settings
from app.main import create_app
from app.server.middleware import DISCONNECT_REASON
from app.server.uvicorn_hooks import ResponseNotDelivered
from tests.support.apps import served_app
from tests.support.asgi import Answer, call, http_scope
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


# --- clients that are gone: 499, one line, no traceback ---------------------------------------

PREDICTIONS = {
    "/predict": b'{"inputs": [0, 1]}',
    "/v1/models/xor:predict": b'{"instances": [[0, 1]]}',
    "/v2/models/xor/infer": (
        b'{"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "INT32", "data": [0, 1]}]}'
    ),
}
# The route templates the metrics label them with.
ROUTES = {
    "/predict": "/predict",
    "/v1/models/xor:predict": "/v1/models/{model_name}:predict",
    "/v2/models/xor/infer": "/v2/models/{model_name}/infer",
    "/health": "/health",
}


def lost_request(
    app: ServiceApp, method: str, path: str, body: bytes = b"", **options: Any
) -> Answer:
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    scope = http_scope(method, path, headers=headers, state={"services": app.state.services})
    parts = [body[: len(body) // 2], body[len(body) // 2 :]]
    return anyio.run(functools.partial(call, app, scope, parts, **options))


def the_one_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The single record logged at INFO or above, which must be the request's line."""
    (record,) = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert getattr(record, "event", None) == "request"
    assert record.exc_info is None
    return record


def requests_total(app: ServiceApp, method: str, path: str, status: int) -> float:
    text = app.state.services.metrics.exposition().decode()
    route = ROUTES[path]
    sample = f'xor_http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
    line = next((x for x in text.splitlines() if x.startswith(sample)), sample + "0")
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("path", PREDICTIONS)
def test_a_client_that_leaves_before_its_body_is_in_is_499_not_500(
    app_of_either_way: ServiceApp, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    app = app_of_either_way
    before = requests_total(app, "POST", path, 499)
    with caplog.at_level(logging.DEBUG):
        answer = lost_request(app, "POST", path, PREDICTIONS[path], client_leaves=True)
    assert answer.status == 0  # nothing was sent to a client that is gone
    record = the_one_line(caplog)
    assert record.levelno == logging.INFO
    assert record.status == 499  # type: ignore[attr-defined]
    assert "before its request arrived whole" in record.disconnected  # type: ignore[attr-defined]
    assert requests_total(app, "POST", path, 499) == before + 1
    assert requests_total(app, "POST", path, 500) == 0


@pytest.mark.parametrize(("method", "path"), [("POST", "/predict"), ("GET", "/health")])
def test_a_response_that_cannot_be_delivered_is_499_not_500(
    app_of_either_way: ServiceApp, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    app = app_of_either_way
    body = PREDICTIONS["/predict"] if method == "POST" else b""
    before = requests_total(app, method, path, 499)
    with caplog.at_level(logging.DEBUG):
        lost_request(app, method, path, body, send_error=ResponseNotDelivered("closed"))
    record = the_one_line(caplog)
    assert (record.levelno, record.status) == (logging.INFO, 499)  # type: ignore[attr-defined]
    assert "before the response was delivered" in record.disconnected  # type: ignore[attr-defined]
    assert requests_total(app, method, path, 499) == before + 1
    assert requests_total(app, method, path, 500) == 0


def test_a_request_the_server_cut_off_is_one_warning_with_its_reason(
    trained_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's reason (the read deadline, set in the scope by app.server.uvicorn_hooks) is
    the line's; logged with the access log off too: it is the one line the request leaves."""
    app = served_app(trained_model_dir, "plain", access_log=False)
    body = PREDICTIONS["/predict"]
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    reason = "the server closed the connection: a request body did not arrive in time"
    state = {"services": app.state.services, DISCONNECT_REASON: reason}
    scope = http_scope("POST", "/predict", headers=headers, state=state)
    with caplog.at_level(logging.DEBUG):
        anyio.run(functools.partial(call, app, scope, [body[:5], body[5:]], client_leaves=True))
    record = the_one_line(caplog)
    assert (record.levelno, record.status) == (logging.WARNING, 499)  # type: ignore[attr-defined]
    assert record.disconnected == reason and reason in record.getMessage()  # type: ignore[attr-defined]
