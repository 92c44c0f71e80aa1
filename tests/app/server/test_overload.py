"""The cap on prediction requests in flight (XOR_MAX_IN_FLIGHT): beyond it, 503 ``overloaded``
at once in each API's error shape, the body unread; counted; health, metrics and docs exempt.

One request is held in flight (its body waits for the test) while the others are sent, on both
ways a prediction request may take (``capped_app``: plain ASGI and FastAPI's routes).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import anyio
import pytest

from app.api.hot import ServiceApp
from app.api.oip import routes as oip_routes
from app.api.service import routes as service_routes
from app.api.tfserving import routes as tfserving_routes
from app.config import load_settings
from app.errors import ConfigError
from tests.support.asgi import Answer, call, http_scope

HOT_ROUTES = (*service_routes.HOT_ROUTES, *tfserving_routes.HOT_ROUTES, *oip_routes.HOT_ROUTES)
BODIES = {
    "/predict": {"inputs": [0, 1]},
    "/v1": {"instances": [[0, 1]]},
    "/v2": {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "INT32", "data": [0, 1]}]},
}


def request_for(template: str, version: int) -> tuple[str, bytes]:
    """A concrete path of a prediction route template and a valid body for its API."""
    path = template.replace("{model_name}", "xor")
    path = re.sub(r"\{(model_)?version\}", str(version), path)
    api = next(prefix for prefix in BODIES if path.startswith(prefix))
    return path, json.dumps(BODIES[api]).encode()


def served_version(app: ServiceApp) -> int:
    model = app.state.services.store.current
    assert model is not None
    return int(model.version)


async def send(
    app: ServiceApp, method: str, path: str, body: bytes = b"", **options: Any
) -> Answer:
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    scope = http_scope(method, path, headers=headers, state={"services": app.state.services})
    return await call(app, scope, [body], **options)


def metric(app: ServiceApp, name: str, labels: str = "") -> float:
    """One sample of the app's Prometheus exposition (0 if absent)."""
    text = app.state.services.metrics.exposition().decode()
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def while_one_is_held(app: ServiceApp, then: Any) -> tuple[Answer, Any]:
    """Run ``then()`` while one /predict request is in flight (its body not yet given);
    return the held request's answer (after it is let go) and what ``then()`` returned."""
    hold, reading = anyio.Event(), anyio.Event()
    held: dict[str, Answer] = {}

    async def first() -> None:
        body = json.dumps(BODIES["/predict"]).encode()
        held["answer"] = await send(app, "POST", "/predict", body, hold=hold, reading=reading)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(first)
        await reading.wait()
        try:
            result = await then()
        finally:
            hold.set()
    return held["answer"], result


@pytest.mark.parametrize("template", [route.path for route in HOT_ROUTES])
def test_beyond_the_cap_every_prediction_route_answers_503_overloaded_unread(
    capped_app: ServiceApp, template: str
) -> None:
    path, body = request_for(template, served_version(capped_app))
    overloaded = f'{{route="{template}"}}'
    before = metric(capped_app, "xor_http_requests_overloaded_total", overloaded)

    async def refused() -> tuple[Answer, float]:
        answer = await send(capped_app, "POST", path, body)
        return answer, metric(capped_app, "xor_http_requests_in_flight")

    held, (answer, in_flight) = anyio.run(while_one_is_held, capped_app, refused)
    assert held.status == 200, held.body
    assert answer.status == 503, answer.body
    assert answer.headers["retry-after"] == "1"
    assert answer.reads == 0  # refused before its body was read
    if path == "/predict":
        error = answer.json()["error"]
        assert error["code"] == "overloaded"
        assert "XOR_MAX_IN_FLIGHT" in error["message"]
    else:  # the protocols' own shape: {"error": "<message>"}
        assert set(answer.json()) == {"error"} and "XOR_MAX_IN_FLIGHT" in answer.json()["error"]
    assert in_flight == 1
    assert metric(capped_app, "xor_http_requests_in_flight") == 0
    assert metric(capped_app, "xor_http_requests_overloaded_total", overloaded) == before + 1
    requests = f'{{method="POST",route="{template}",status="503"}}'
    assert metric(capped_app, "xor_http_requests_total", requests) >= 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/health/live", 200),
        ("GET", "/health/ready", 200),
        ("GET", "/metrics", 200),
        ("GET", "/model", 200),
        ("GET", "/docs", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/v1/models/xor", 200),
        ("GET", "/v2/models/xor/ready", 200),
        ("GET", "/predict", 405),  # not a prediction request: routed, not capped
        ("POST", "/v1/models/xor:classify", 405),  # a model named "xor:classify"
        ("POST", "/nope", 404),
    ],
)
def test_what_is_not_a_prediction_request_is_not_capped(
    capped_app: ServiceApp, method: str, path: str, status: int
) -> None:
    held, answer = anyio.run(
        while_one_is_held, capped_app, functools.partial(send, capped_app, method, path)
    )
    assert held.status == 200
    assert answer.status == status, answer.body


def test_a_request_that_fails_or_loses_its_client_frees_its_place(capped_app: ServiceApp) -> None:
    async def scenario() -> list[int]:
        statuses = []
        for body in (b"{", b'{"inputs": [0, 2]}'):  # 400, 422
            statuses.append((await send(capped_app, "POST", "/predict", body)).status)
        await send(capped_app, "POST", "/predict", b'{"inputs"', client_leaves=True)
        answer = await send(capped_app, "POST", "/predict", json.dumps(BODIES["/predict"]).encode())
        statuses.append(answer.status)
        return statuses

    assert anyio.run(scenario) == [400, 422, 200]
    assert metric(capped_app, "xor_http_requests_in_flight") == 0


def test_the_cap_is_a_positive_setting() -> None:
    assert load_settings(max_in_flight=1).max_in_flight == 1
    with pytest.raises(ConfigError, match="XOR_MAX_IN_FLIGHT"):
        load_settings(max_in_flight=0)
