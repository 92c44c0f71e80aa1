"""The prediction routes' plain ASGI way routes and answers exactly as FastAPI's own routes.

``create_app(settings)`` answers the prediction requests with :class:`PredictionRoutes`
(``app.api.hot``, behind the same middleware as FastAPI); with
``plain_prediction_routes=False`` the FastAPI routes declared for the same paths answer them.
Both ways must pick the same route for a path and give the same bytes for a request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.responses import Response
from starlette.types import Message, Scope

from app.api.common import render_protocol_error
from app.api.dependencies import Services
from app.api.hot import HotRoute, PredictionRequest, PredictionRoutes, ServiceApp
from app.api.oip import routes as oip_routes
from app.api.service import routes as service_routes
from app.api.service.errors import render_service_error
from app.api.tfserving import routes as tfserving_routes
from app.core.bits import invalid
from app.main import create_app
from tests.support.apps import serving_settings
from tests.support.responses import assert_protocol_error, assert_service_error

HOT_ROUTES = (
    *service_routes.HOT_ROUTES,
    *tfserving_routes.HOT_ROUTES,
    *oip_routes.HOT_ROUTES,
)


@pytest.fixture(scope="module")
def plain_app(trained_model_dir: Path) -> ServiceApp:
    """The app answering the prediction routes the plain ASGI way (the default)."""
    return create_app(serving_settings(trained_model_dir))


@pytest.fixture(scope="module")
def fastapi_app(trained_model_dir: Path) -> ServiceApp:
    """The same app, with FastAPI's routes answering the prediction requests."""
    return create_app(serving_settings(trained_model_dir), plain_prediction_routes=False)


@pytest.fixture(scope="module")
def plain_client(plain_app: ServiceApp) -> Iterator[TestClient]:
    with TestClient(plain_app) as client:
        yield client


@pytest.fixture(scope="module")
def fastapi_client(fastapi_app: ServiceApp) -> Iterator[TestClient]:
    with TestClient(fastapi_app) as client:
        yield client


@pytest.fixture(scope="module")
def prediction_routes(plain_app: ServiceApp) -> PredictionRoutes:
    """Built here from the APIs' declarations; create_app's own is checked to be the same."""
    services: Services = plain_app.state.services
    return PredictionRoutes(routes=HOT_ROUTES, services=services)


def post_routes(app: ServiceApp) -> set[str]:
    """The POST routes FastAPI serves, as its OpenAPI document lists them (FastAPI 0.165 keeps
    included routers' routes out of ``app.routes``)."""
    paths: dict[str, dict[str, Any]] = app.api.openapi()["paths"]
    return {path for path, operations in paths.items() if "post" in operations}


def test_the_hot_routes_are_the_post_routes_fastapi_declares(plain_app: ServiceApp) -> None:
    hot = [route.path for route in HOT_ROUTES]
    assert len(hot) == len(set(hot))
    assert set(hot) == post_routes(plain_app)
    assert "/predict" in hot  # not vacuous: the service's own and the protocols' predictions
    assert len(hot) == 6


def test_create_app_installs_exactly_the_hot_routes(
    plain_app: ServiceApp, fastapi_app: ServiceApp
) -> None:
    assert plain_app.predictions is not None
    assert plain_app.predictions.routes == HOT_ROUTES
    assert plain_app.predictions.services is plain_app.state.services
    assert fastapi_app.predictions is None
    assert post_routes(fastapi_app) == post_routes(plain_app)


def fastapi_choice(app: ServiceApp, path: str) -> tuple[str, dict[str, Any]] | None:
    """The route template FastAPI's router answers a POST to ``path`` with, and the path
    parameters it matched: read from the scope after the FastAPI app answered it (as the
    metrics read them), so whatever the router's internals."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("testserver", 80),
        "client": ("testclient", 50000),
        "state": {"services": app.state.services},  # what the lifespan hands the routes
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    anyio.run(app.api, scope, receive, send)
    template = getattr(scope.get("route"), "path", None)  # unset: no route matched
    return None if template is None else (template, scope["path_params"])


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
        "/v1/models/xor/labels/stable:predict",
        "/v1/models/xor/labels/stable/x:predict",
        "/v1/models/xor/labels/:predict",
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
def test_the_hot_routes_take_exactly_the_posts_fastapi_gives_prediction_routes(
    plain_app: ServiceApp, prediction_routes: PredictionRoutes, path: str
) -> None:
    hot_paths = {route.path for route in HOT_ROUTES}
    chosen = fastapi_choice(plain_app, path)
    expected = chosen if chosen is not None and chosen[0] in hot_paths else None
    found = prediction_routes.route_for("POST", path)
    assert (None if found is None else (found[0].path, found[1])) == expected


@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "OPTIONS"])
def test_the_hot_routes_take_posts_only(prediction_routes: PredictionRoutes, method: str) -> None:
    assert prediction_routes.route_for(method, "/predict") is None
    assert prediction_routes.route_for("POST", "/predict") is not None


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
    ("/v1/models/xor/labels/stable:predict", JSON, b'{"instances": [[0, 1]]}'),
    ("/v1/models/xor/labels/Not-A-Label:predict", JSON, b'{"instances": [[0, 1]]}'),
    ("/predict?version=1", JSON, b'{"inputs": [0, 1]}'),
    ("/predict?version=0", JSON, b'{"inputs": [0, 1]}'),
    ("/predict?version=1&label=stable", JSON, b'{"inputs": [0, 1]}'),
    ("/predict?label=canary", JSON, b'{"inputs": [0, 1]}'),
    ("/predict?label=Canary&other=1", JSON, b'{"inputs": [0, 1]}'),
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
def test_the_plain_way_answers_as_fastapis_routes(
    plain_client: TestClient,
    fastapi_client: TestClient,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    plain = _answer(plain_client, path, headers, body)
    assert plain == _answer(fastapi_client, path, headers, body)
    assert plain[1]["x-request-id"] == "same"


@pytest.mark.parametrize("way", ["plain_client", "fastapi_client"])
def test_prediction_requests_are_logged_and_counted_under_their_route(
    request: pytest.FixtureRequest, way: str, caplog: pytest.LogCaptureFixture
) -> None:
    client: TestClient = request.getfixturevalue(way)
    with caplog.at_level("INFO", logger="app.request"):
        response = client.post("/v1/models/xor/versions/1:predict", json={"instances": [[0, 1]]})
    assert response.status_code == 404
    (record,) = [r for r in caplog.records if r.name == "app.request"]
    assert record.getMessage() == "POST /v1/models/xor/versions/1:predict 404"
    metrics = client.get("/metrics").text
    assert (
        'xor_http_requests_total{method="POST",'
        'route="/v1/models/{model_name}/versions/{version}:predict",status="404"}'
    ) in metrics
    assert 'route="/v1/models/xor/versions/1:predict"' not in metrics


async def broken(request: PredictionRequest, services: Services) -> Response:
    raise RuntimeError("boom: a secret the client must not see")


async def refuses(request: PredictionRequest, services: Services) -> Response:
    invalid("inputs", "refused by the test")


def test_errors_of_a_hot_handler(trained_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected error is the service's 500 (no traceback leaked, the error logged); an
    ApiError is rendered by the route's own renderer, not by the path's."""
    extra = (
        HotRoute("/broken", broken, render_service_error),
        HotRoute("/refuses", refuses, render_protocol_error),
    )
    app = create_app(serving_settings(trained_model_dir), extra_hot_routes=extra)
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="app.request"),
    ):
        response = client.post("/broken", json={})
        refused = client.post("/refuses", json={})
    error = assert_service_error(response, 500, code="internal_error")
    assert response.headers["x-request-id"] in error["message"]
    assert "boom" not in response.text and "Traceback" not in response.text
    (logged,) = [r for r in caplog.records if getattr(r, "event", None) == "unhandled_error"]
    assert logged.exc_info is not None and "boom" in str(logged.exc_info[1])
    # 422 in the service's shape by the path; the route's renderer says 400, the protocols' way.
    assert assert_protocol_error(refused, 400) == "inputs: refused by the test"


def test_a_literal_route_is_found_as_the_patterns_in_order_would_find_it(
    plain_app: ServiceApp,
) -> None:
    """Literal paths are looked up directly, unless a route declared before them would take
    them: then that one answers, as trying the patterns in turn does."""
    services: Services = plain_app.state.services
    routes = PredictionRoutes(
        [
            HotRoute("/a/{name}", broken, render_service_error),
            HotRoute("/a/b", refuses, render_service_error),
            HotRoute("/c", refuses, render_service_error),
            HotRoute("/c", broken, render_service_error),
        ],
        services,
    )
    found = routes.route_for("POST", "/a/b")
    assert found is not None and found[0].path == "/a/{name}" and found[1] == {"name": "b"}
    found = routes.route_for("POST", "/c")
    assert found is not None and found[0].handler is refuses and found[1] == {}
    assert routes.route_for("POST", "/a") is None
