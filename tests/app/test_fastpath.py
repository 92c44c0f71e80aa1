"""The prediction routes' fast path routes and answers exactly as the ordinary FastAPI way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.responses import Response
from starlette.routing import Match

from app.config import Settings
from app.fastpath import ServiceApp, hot_path
from app.main import create_app
from app.prediction import invalid

HOT_ROUTES = {
    "/predict",
    "/v1/models/{model_name}:predict",
    "/v1/models/{model_name}/versions/{version}:predict",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
}


@pytest.fixture(scope="module")
def app(trained_model_dir: Path) -> ServiceApp:
    return create_app(Settings(model_dir=trained_model_dir, poll_interval_seconds=60))


@pytest.fixture(scope="module")
def client(app: ServiceApp) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def router_choice(app: ServiceApp, path: str) -> APIRoute | None:
    """The route Starlette's router serves a POST to ``path`` with: the first full match."""
    scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route if isinstance(route, APIRoute) else None
    return None


@pytest.mark.parametrize(
    "path",
    [
        "/predict",
        "/predict/",
        "/predictx",
        "//predict",
        "/v1/models/xor:predict",
        "/v1/models/other:predict",
        "/v1/models/a:b:predict",
        "/v1/models/xor:classify",
        "/v1/models/xor/versions/3:predict",
        "/v1/models/xor/versions/abc:predict",
        "/v1/models/xor/versions/3:regress",
        "/v1/models/xor/versions/3/x:predict",
        "/v1/models/xor",
        "/v2/models/xor/infer",
        "/v2/models/xor/versions/1/infer",
        "/v2/models/xor/versions//infer",
        "/v2/models/x/y/infer",
        "/v2/models/xor/ready",
        "/v2/models/xor",
        "/health",
        "/metrics",
        "/",
    ],
)
def test_the_fast_path_takes_exactly_the_posts_the_router_gives_hot_routes(
    app: ServiceApp, path: str
) -> None:
    chosen = router_choice(app, path)
    expected = chosen if chosen is not None and chosen.path in HOT_ROUTES else None
    scope = {"type": "http", "method": "POST", "path": path}
    assert app.hot_route_for(scope) is expected


def test_the_hot_routes_are_the_prediction_routes(app: ServiceApp) -> None:
    examples = {
        "/predict": "/predict",
        "/v1/models/xor:predict": "/v1/models/{model_name}:predict",
        "/v1/models/xor/versions/1:predict": "/v1/models/{model_name}/versions/{version}:predict",
        "/v2/models/xor/infer": "/v2/models/{model_name}/infer",
        "/v2/models/xor/versions/1/infer": "/v2/models/{model_name}/versions/{model_version}/infer",
    }
    for path, template in examples.items():
        route = app.hot_route_for({"path": path})
        assert route is not None and route.path == template
    assert set(examples.values()) == HOT_ROUTES


V2_PAIR = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [0, 1]}]}
JSON = {"Content-Type": "application/json"}
REQUESTS: list[tuple[str, dict[str, str], bytes]] = [
    ("/predict", JSON, b'{"inputs": [0, 1]}'),
    ("/predict", JSON, json.dumps({"instances": [[1, 1], [0, 1]] * 40}).encode()),
    ("/predict", JSON, b'{"inputs": [0, 2]}'),
    ("/predict", JSON, b'{"inputs": [0, 1], "inputs": [1, 1]}'),
    ("/predict", JSON, b'{"inputs": [0,'),
    ("/predict", {"Content-Type": "text/plain"}, b'{"inputs": [0, 1]}'),
    ("/predict", {}, b'{"inputs": [0, 1]}'),
    ("/predict", JSON, b"\xff\xfe"),
    ("/predict", JSON, json.dumps({"instances": [[0, 1]] * 20_000}).encode()),
    ("/predict", JSON, b" " * 2_000_000),
    ("/v1/models/xor:predict", JSON, b'{"instances": [[0, 1], [1, 1]]}'),
    ("/v1/models/xor:predict", JSON, b'{"inputs": {"inputs": [[1, 0]]}}'),
    ("/v1/models/xor:predict", {}, b'{"instances": [[0, 1]]}'),
    ("/v1/models/xor:predict", JSON, b'{"instances": [[0, NaN]]}'),
    ("/v1/models/other:predict", JSON, b'{"instances": [[0, 1]]}'),
    ("/v1/models/xor/versions/1:predict", JSON, b'{"instances": [[0, 1]]}'),
    ("/v1/models/xor/versions/abc:predict", JSON, b'{"instances": [[0, 1]]}'),
    ("/v2/models/xor/infer", JSON, json.dumps(V2_PAIR).encode()),
    ("/v2/models/xor/infer", JSON, b'{"inputs": []}'),
    ("/v2/models/xor/infer", {"Content-Type": "text/plain"}, json.dumps(V2_PAIR).encode()),
    ("/v2/models/other/infer", JSON, json.dumps(V2_PAIR).encode()),
    ("/v2/models/xor/versions/1/infer", JSON, json.dumps(V2_PAIR).encode()),
]


def _answer(client: TestClient, path: str, headers: dict[str, str], body: bytes) -> Any:
    response = client.post(path, content=body, headers={**headers, "X-Request-ID": "same"})
    return response.status_code, dict(response.headers), response.content


@pytest.mark.parametrize(("path", "headers", "body"), REQUESTS)
def test_the_fast_path_answers_as_the_ordinary_way(
    app: ServiceApp, client: TestClient, path: str, headers: dict[str, str], body: bytes
) -> None:
    fast = _answer(client, path, headers, body)
    app.fast_path_enabled = False
    try:
        ordinary = _answer(client, path, headers, body)
    finally:
        app.fast_path_enabled = True
    assert fast == ordinary
    assert fast[1]["x-request-id"] == "same"


def test_fast_requests_are_logged_and_counted_under_their_route(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="app.request"):
        assert client.post("/v1/models/xor/versions/1:predict", json={"instances": [[0, 1]]})
    (record,) = [r for r in caplog.records if r.name == "app.request"]
    assert record.getMessage() == "POST /v1/models/xor/versions/1:predict 404"
    metrics = client.get("/metrics").text
    assert 'route="/v1/models/{model_name}/versions/{version}:predict"' in metrics


def test_an_unexpected_error_on_the_fast_path_is_a_500_in_the_error_shape(
    trained_model_dir: Path,
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    async def refuses(request: Request) -> Response:
        invalid("inputs", "refused by the test")

    app = create_app(Settings(model_dir=trained_model_dir, poll_interval_seconds=60))
    app.add_api_route("/broken", hot_path(broken), methods=["POST"])
    app.add_api_route("/refuses", hot_path(refuses), methods=["POST"])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/broken", json={})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "boom" not in response.text
        response = client.post("/refuses", json={})
        assert response.status_code == 422
        assert response.json()["error"]["details"] == [
            {"loc": "inputs", "msg": "refused by the test"}
        ]
    assert app.hot_route_for({"path": "/broken"}) is not None


def test_a_hot_route_must_take_the_request_alone(trained_model_dir: Path) -> None:
    async def with_parameter(request: Request, limit: int) -> Response:
        raise AssertionError("never called")

    app = create_app(Settings(model_dir=trained_model_dir, poll_interval_seconds=60))
    # Not an Endpoint by its type either: the check at startup is for what typing misses.
    app.add_api_route("/bad", hot_path(with_parameter), methods=["POST"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="take the Request alone"):
        app.hot_route_for({"path": "/bad"})
