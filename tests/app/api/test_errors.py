"""Errors on the wire: which API's shape a path is answered in, and each shape's rendering."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.api.common import render_protocol_error
from app.api.errors import (
    ErrorShape,
    ErrorShapes,
    exception_handler,
    from_http_exception,
    from_validation_error,
)
from app.api.oip import routes as oip_routes
from app.api.service.errors import render_service_error
from app.api.tfserving import routes as tfserving_routes
from app.errors import (
    ApiError,
    Detail,
    InvalidInput,
    MalformedRequest,
    MethodNotAllowed,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
)
from tests.support.responses import assert_protocol_error, assert_service_error

# As create_app declares them.
SHAPES = ErrorShapes(
    default=render_service_error,
    shapes=[tfserving_routes.ERROR_SHAPE, oip_routes.ERROR_SHAPE],
)


def shape_of(response: Response) -> str:
    body = json.loads(bytes(response.body))
    return "protocol" if isinstance(body["error"], str) else "service"


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1", "protocol"),
        ("/v1/", "protocol"),
        ("/v1/models/xor:predict", "protocol"),
        ("/v1/anything/else", "protocol"),
        ("/v2", "protocol"),
        ("/v2/models/xor/infer", "protocol"),
        ("/v10", "service"),
        ("/v1x/models", "service"),
        ("/v3/models/xor", "service"),
        ("/x/v1/models", "service"),
        ("/predict", "service"),
        ("/health", "service"),
        ("/", "service"),
    ],
)
def test_a_path_is_answered_in_the_shape_of_the_api_owning_its_prefix(
    path: str, shape: str
) -> None:
    assert shape_of(SHAPES.render(NotFound("no such thing"), path)) == shape


def test_the_first_shape_owning_a_path_wins() -> None:
    def named(name: str) -> Any:
        return lambda error: Response(name)

    shapes = ErrorShapes(
        default=named("default"),
        shapes=[ErrorShape("/a", named("a")), ErrorShape("/a/b", named("a/b"))],
    )
    assert shapes.render(NotFound("x"), "/a/b/c").body == b"a"
    assert shapes.render(NotFound("x"), "/ab").body == b"default"


def test_the_app_answers_unknown_paths_in_the_owning_apis_shape(client: TestClient) -> None:
    for path in ("/v1", "/v1/models/xor/labels/x/y", "/v2/repository/index"):
        assert assert_protocol_error(client.get(path), 404) == "no such endpoint"
    for path in ("/v10", "/v1x", "/nope"):
        assert_service_error(client.get(path), 404, code="not_found")


def test_the_service_shape() -> None:
    error = InvalidInput(
        "instances[0][1]: must be 0 or 1, got 2 (and 1 more problem)",
        details=[
            Detail("instances[0][1]", "must be 0 or 1, got 2"),
            Detail("instances[1][0]", "must be 0 or 1, got 3"),
        ],
        headers={"X-Extra": "kept"},
    )
    response = render_service_error(error)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-extra"] == "kept"
    assert response.body == (
        b'{"error":{"code":"invalid_input",'
        b'"message":"instances[0][1]: must be 0 or 1, got 2 (and 1 more problem)",'
        b'"details":[{"loc":"instances[0][1]","msg":"must be 0 or 1, got 2"},'
        b'{"loc":"instances[1][0]","msg":"must be 0 or 1, got 3"}]}}'
    )


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("inputs[0]: must be 0 or 1", details=[Detail("inputs[0]", "x")]), 400),
        (MalformedRequest("request body is not valid JSON"), 400),
        (NotFound("Servable not found for request: Latest(other)"), 404),
        (MethodNotAllowed("method not allowed; allowed: POST"), 405),
        (PayloadTooLarge("request body is 101 bytes"), 413),
        (ApiError("internal error"), 500),
    ],
)
def test_the_protocol_shape_answers_invalid_input_with_400(error: ApiError, status: int) -> None:
    response = render_protocol_error(error)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert json.loads(bytes(response.body)) == {"error": error.message}


@pytest.mark.parametrize("render", [render_service_error, render_protocol_error])
def test_both_shapes_keep_the_errors_headers(render: Any) -> None:
    response = render(ModelUnavailable("no model is loaded", headers={"Retry-After": "2"}))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize("render", [render_service_error, render_protocol_error])
def test_non_ascii_messages_are_escaped(render: Any) -> None:
    response = render(NotFound("no model 'caf\u00e9 \u2603\U0001f600'"))
    body = bytes(response.body)
    assert body.isascii()
    assert b"caf\\u00e9 \\u2603\\ud83d\\ude00" in body
    error = json.loads(body)["error"]
    message = error if isinstance(error, str) else error["message"]
    assert message == "no model 'caf\u00e9 \u2603\U0001f600'"


def test_starlettes_404_and_405_become_the_apps_errors() -> None:
    not_found = from_http_exception(HTTPException(404))
    assert isinstance(not_found, NotFound)
    assert (not_found.status, not_found.message) == (404, "no such endpoint")
    not_allowed = from_http_exception(HTTPException(405, headers={"Allow": "GET, POST"}))
    assert isinstance(not_allowed, MethodNotAllowed)
    assert not_allowed.message == "method not allowed; allowed: GET, POST"
    assert not_allowed.headers == {"Allow": "GET, POST"}


def test_another_http_status_is_kept_with_a_generic_code() -> None:
    error = from_http_exception(HTTPException(418, detail="short and stout"))
    assert (error.status, error.code, error.message) == (418, "http_error", "short and stout")
    assert (ApiError.status, ApiError.code) == (500, "internal_error")  # the class is untouched


def test_validation_errors_become_invalid_input() -> None:
    exc = RequestValidationError(
        [{"loc": ("query", "limit"), "msg": "Input should be a valid integer", "type": "int"}]
    )
    error = from_validation_error(exc)
    assert isinstance(error, InvalidInput)
    assert [(d.loc, d.msg) for d in error.details] == [
        ("query.limit", "Input should be a valid integer")
    ]


def request_for(path: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "headers": []})


@pytest.mark.parametrize(
    ("exc", "path", "status", "shape"),
    [
        (NotFound("x"), "/v1/models/x", 404, "protocol"),
        (InvalidInput("x"), "/predict", 422, "service"),
        (HTTPException(405, headers={"Allow": "POST"}), "/v2/models/xor/infer", 405, "protocol"),
        (RequestValidationError([]), "/model", 422, "service"),
    ],
)
def test_the_exception_handler_renders_in_the_paths_shape(
    exc: Exception, path: str, status: int, shape: str
) -> None:
    handle = exception_handler(SHAPES)
    response = anyio.run(handle, request_for(path), exc)
    assert (response.status_code, shape_of(response)) == (status, shape)


def test_the_exception_handler_leaves_other_errors_to_the_middleware() -> None:
    handle = exception_handler(SHAPES)
    with pytest.raises(RuntimeError, match="boom"):
        anyio.run(handle, request_for("/predict"), RuntimeError("boom"))
