"""``FusedPredictionPath`` (app.server.fused) against the middleware chain it stands in for.

- Which way a request takes (a counting spy on ``chain``): the fused way answers a one-message
  body under the limit; no or a bad Content-Length, chunked, over the limit (413), the cap
  reached (503), a body in two messages (the first replayed), a client gone first (499): the
  chain. The same status, headers and bytes as the chain and as FastAPI's routes.
- The request id (echoed when sane), one count, one latency observation and one log line per
  request (none with the access log off); a handler's error (500, logged once), a send that
  fails (499), responses that are not plain (streaming, file, background task).
- The in-flight count: 1 while answered, 0 after every request, a cancelled one included.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.dependencies import Services
from app.api.hot import HotRoute, PredictionRequest, ServiceApp
from app.api.service.errors import render_service_error
from app.main import create_app
from app.server.fused import FusedPredictionPath
from tests.support.apps import serving_settings
from tests.support.asgi import Answer, call, http_scope
from tests.support.responses import assert_service_error

MAX_BODY = 2048
JSON = ("content-type", "application/json")
PAIR = b'{"inputs": [0, 1]}'
V2_PAIR = b'{"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [0, 1]}]}'
FRESH_ID = re.compile(r"[0-9a-f]{32}")
Fields = Sequence[tuple[str, str]]
Log = pytest.LogCaptureFixture


# --- extra hot routes: what the service's own handlers never do -------------------------------


async def boom(request: PredictionRequest, services: Services) -> Response:
    raise RuntimeError("boom: a secret the client must not see")


async def hang(request: PredictionRequest, services: Services) -> Response:
    entered, never = request.scope["state"]["hang"]
    entered.set()
    await never.wait()
    raise AssertionError("never set")


async def background(request: PredictionRequest, services: Services) -> Response:
    return Response(b"answered", background=BackgroundTask(request.scope["state"]["task"]))


async def stream(request: PredictionRequest, services: Services) -> Response:
    async def chunks() -> Any:
        for chunk in (b"one,", b"two,", b"three"):
            await anyio.sleep(0)  # as any real producer does: the loop runs between chunks
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def a_file(request: PredictionRequest, services: Services) -> Response:
    return FileResponse(Path(__file__))  # its length and dates are read when it is sent


EXTRA = tuple(
    HotRoute(path, handler, render_service_error)
    for path, handler in [
        ("/boom", boom),
        ("/hang", hang),
        ("/background", background),
        ("/stream", stream),
        ("/file", a_file),
    ]
)


# --- apps, the spy, and requests by hand ------------------------------------------------------


def make_app(model_dir: Path, *, plain: bool = True, **overrides: Any) -> ServiceApp:
    """An app on the trained version with MAX_BODY as the body limit; no lifespan."""
    settings = serving_settings(model_dir, max_body_bytes=MAX_BODY, **overrides)
    extra = EXTRA if plain else ()
    app = create_app(settings, extra_hot_routes=extra, plain_prediction_routes=plain)
    app.state.services.store.refresh()
    assert app.state.services.store.current is not None
    return app


@pytest.fixture(scope="module")
def fused_app(trained_model_dir: Path) -> ServiceApp:
    return make_app(trained_model_dir)


@pytest.fixture(scope="module")
def fastapi_app(trained_model_dir: Path) -> ServiceApp:
    """The same, FastAPI's routes answering the prediction requests (the reference)."""
    return make_app(trained_model_dir, plain=False)


class Spy:
    """Stands in for ``app.plain.chain``: counts the requests the fused way hands it."""

    def __init__(self, app: ServiceApp, monkeypatch: pytest.MonkeyPatch) -> None:
        assert isinstance(app.plain, FusedPredictionPath)
        self.app, self.path = app, app.plain
        self.chain = self.path.chain
        self.calls = 0
        monkeypatch.setattr(self.path, "chain", self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.chain(scope, receive, send)


@pytest.fixture
def spy(fused_app: ServiceApp, monkeypatch: pytest.MonkeyPatch) -> Spy:
    return Spy(fused_app, monkeypatch)


@pytest.fixture
def logged(caplog: Log) -> Log:
    caplog.set_level(logging.INFO, logger="app.request")
    return caplog


def events(caplog: Log, event: str = "request") -> list[Any]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def sized(body: bytes, *headers: tuple[str, str]) -> Fields:
    return [JSON, ("content-length", str(len(body))), *headers]


def scope_for(
    app: ServiceApp, path: str, headers: Fields, *, spec: str = "2.3", state: Any = None
) -> Scope:
    """A POST to ``path`` (with its query); ``spec``: the ASGI version, 2.3 as uvicorn's."""
    path, _, query = path.partition("?")
    state = {"services": app.state.services, **(state or {})}
    scope = http_scope("POST", path, headers=headers, state=state)
    scope["query_string"] = query.encode()
    scope["asgi"]["spec_version"] = spec
    return scope


def post(
    app: ServiceApp, path: str, body: bytes = PAIR, headers: Fields | None = None, **options: Any
) -> Answer:
    """One request by ``tests.support.asgi.call`` (``headers``: JSON and Content-Length by
    default); the in-flight count is checked to be back to 0 after it."""
    scope = scope_for(app, path, sized(body) if headers is None else headers)
    answer = anyio.run(functools.partial(call, app, scope, **{"parts": [body], **options}))
    if isinstance(app.plain, FusedPredictionPath):
        assert app.plain.limit.in_flight == 0
    return answer


def without_id(answer: Answer) -> tuple[int, dict[str, str], bytes]:
    assert answer.headers["x-request-id"]
    headers = {k: v for k, v in answer.headers.items() if k != "x-request-id"}
    return answer.status, headers, answer.body


def error_of(answer: Answer, status: int, code: str) -> dict[str, Any]:
    response = httpx.Response(answer.status, headers=answer.headers, content=answer.body)
    return assert_service_error(response, status, code=code)


def count(app: ServiceApp, name: str, **labels: str) -> float:
    value = app.state.services.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def requests_total(app: ServiceApp, route: str, status: int) -> float:
    return count(app, "xor_http_requests_total", route=route, method="POST", status=str(status))


# --- which way a request takes ----------------------------------------------------------------


@pytest.mark.parametrize("size", [len(PAIR), MAX_BODY])
def test_one_message_under_the_limit_is_answered_without_the_chain(spy: Spy, size: int) -> None:
    body = PAIR + b" " * (size - len(PAIR))  # trailing blanks: the same JSON, `size` bytes
    answer = post(spy.app, "/predict", body)
    assert (answer.status, answer.reads, spy.calls) == (200, 1, 0)
    assert answer.json()["predictions"] and FRESH_ID.fullmatch(answer.headers["x-request-id"])


CHUNKED = ("transfer-encoding", "chunked")
FALLBACKS: dict[str, tuple[Fields, list[bytes]]] = {
    "no Content-Length": ([JSON], [PAIR]),
    "chunked": ([JSON, CHUNKED], [PAIR[:5], PAIR[5:]]),
    "Content-Length, then chunked": (sized(PAIR, CHUNKED), [PAIR]),
    "chunked, then Content-Length": ([CHUNKED, *sized(PAIR)], [PAIR]),
    "a Content-Length that is no number": ([JSON, ("content-length", "+18")], [PAIR]),
    "a body in two messages": (sized(PAIR), [PAIR[:5], PAIR[5:]]),
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_other_bodies_go_to_the_chain_and_are_answered_alike(spy: Spy, case: str) -> None:
    headers, parts = FALLBACKS[case]
    fused = post(spy.app, "/predict")
    assert spy.calls == 0
    answer = post(spy.app, "/predict", headers=headers, parts=parts)
    assert spy.calls == 1
    # The whole body reached the handler: the message the fused way took first was replayed.
    assert without_id(answer) == without_id(fused) and answer.status == 200


def test_a_body_over_the_limit_goes_to_the_chain_413_unread(spy: Spy) -> None:
    answer = post(spy.app, "/predict", PAIR + b" " * (MAX_BODY + 1 - len(PAIR)))
    assert (spy.calls, answer.reads) == (1, 0)
    error_of(answer, 413, "payload_too_large")


def test_the_cap_reached_goes_to_the_chain_503_overloaded_unread(spy: Spy) -> None:
    overloaded = "xor_http_requests_overloaded_total"
    before = count(spy.app, overloaded, route="/predict")
    spy.path.limit.in_flight = spy.path.limit.limit
    try:
        answer = anyio.run(call, spy.app, scope_for(spy.app, "/predict", sized(PAIR)), [PAIR])
        assert spy.path.limit.in_flight == spy.path.limit.limit  # a refused one is not counted
    finally:
        spy.path.limit.in_flight = 0
    assert (spy.calls, answer.reads, answer.headers["retry-after"]) == (1, 0, "1")
    error_of(answer, 503, "overloaded")
    assert count(spy.app, overloaded, route="/predict") == before + 1


def test_a_client_gone_before_its_body_goes_to_the_chain_499(spy: Spy, logged: Log) -> None:
    before = requests_total(spy.app, "/predict", 499)
    answer = post(spy.app, "/predict", client_leaves=True)  # http.disconnect comes first
    assert (spy.calls, answer.status) == (1, 0)
    (line,) = events(logged)
    assert line.status == 499 and "before its request arrived whole" in line.disconnected
    assert requests_total(spy.app, "/predict", 499) == before + 1


# --- the same answers as the chain and FastAPI, the request id --------------------------------

V1_PAIR = b'{"instances": [[0, 1], [1, 1]]}'
ANSWERS = {
    "predict": ("/predict", JSON, PAIR, 200),
    "predict, pinned by the query": ("/predict?version={version}", JSON, PAIR, 200),
    "predict, malformed": ("/predict", JSON, b'{"inputs": [0,', 400),
    "predict, text/plain": ("/predict", ("content-type", "text/plain"), PAIR, 415),
    "predict, invalid bits": ("/predict", JSON, b'{"inputs": [0, 2]}', 422),
    "v1": ("/v1/models/xor:predict", JSON, V1_PAIR, 200),
    "v1, unknown model": ("/v1/models/other:predict", JSON, V1_PAIR, 404),
    "v1, pinned": ("/v1/models/xor/versions/{version}:predict", JSON, V1_PAIR, 200),
    "v2": ("/v2/models/xor/infer", JSON, V2_PAIR, 200),
    "v2, unknown model": ("/v2/models/other/infer", JSON, V2_PAIR, 404),
    "v2, pinned": ("/v2/models/xor/versions/{version}/infer", JSON, V2_PAIR, 200),
}


@pytest.mark.parametrize("case", ANSWERS)
def test_the_fused_way_answers_as_the_chain_and_as_fastapi(
    spy: Spy, fastapi_app: ServiceApp, trained_version_number: int, case: str
) -> None:
    path, content_type, body, status = ANSWERS[case]
    path = path.format(version=trained_version_number)
    fused = post(spy.app, path, body, [content_type, ("content-length", str(len(body)))])
    assert spy.calls == 0
    chained = post(spy.app, path, body, [content_type])
    assert spy.calls == 1
    fastapi = post(fastapi_app, path, body, [content_type, ("content-length", str(len(body)))])
    assert without_id(fused) == without_id(chained) == without_id(fastapi)
    assert fused.status == status


SENT_IDS = {
    "sane": (["abc-123"], "abc-123"),
    "two": (["first.1", "second.2"], "first.1"),  # the first, as the chain reads it
    "too long": (["x" * 200], None),
    "a space": (["has space"], None),
    "empty": ([""], None),
    "not ASCII": (["\u00fcml\u00e4ut"], None),
}


@pytest.mark.parametrize("case", SENT_IDS)
def test_the_request_id_is_echoed_when_sane_and_is_the_log_lines(
    spy: Spy, logged: Log, case: str
) -> None:
    sent, echoed = SENT_IDS[case]
    answer = post(spy.app, "/predict", PAIR, sized(PAIR, *(("x-request-id", v) for v in sent)))
    assert (answer.status, spy.calls) == (200, 0)
    request_id = answer.headers["x-request-id"]
    if echoed is None:
        assert FRESH_ID.fullmatch(request_id) and request_id not in sent
    else:
        assert request_id == echoed
    (line,) = events(logged)
    assert line.request_id == request_id


# --- metrics and the log line -----------------------------------------------------------------

COUNTED = {
    "v1": ("/v1/models/xor:predict", "/v1/models/{model_name}:predict", V1_PAIR, 200),
    "v2": ("/v2/models/xor/infer", "/v2/models/{model_name}/infer", V2_PAIR, 200),
    "invalid": ("/predict", "/predict", b'{"inputs": [0, 2]}', 422),
}


@pytest.mark.parametrize("case", COUNTED)
def test_each_request_is_counted_timed_and_logged_once(spy: Spy, logged: Log, case: str) -> None:
    path, route, body, status = COUNTED[case]
    n = 3
    timed = "xor_http_request_duration_seconds_count"
    before = (requests_total(spy.app, route, status), count(spy.app, timed, route=route))
    answers = [post(spy.app, path, body) for _ in range(n)]
    assert spy.calls == 0
    assert requests_total(spy.app, route, status) == before[0] + n
    assert count(spy.app, timed, route=route) == before[1] + n
    lines = [(r.method, r.path, r.status, r.request_id) for r in events(logged)]
    assert lines == [("POST", path, status, a.headers["x-request-id"]) for a in answers]


def test_no_line_with_the_access_log_off_but_the_metrics_count(
    trained_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: Log
) -> None:
    spy = Spy(make_app(trained_model_dir, access_log=False), monkeypatch)
    caplog.set_level(logging.DEBUG, logger="app.request")
    assert post(spy.app, "/predict").status == 200
    assert post(spy.app, "/predict", b'{"inputs": [0, 2]}').status == 422
    assert (spy.calls, events(caplog)) == (0, [])
    assert requests_total(spy.app, "/predict", 200) == requests_total(spy.app, "/predict", 422) == 1


# --- errors -----------------------------------------------------------------------------------


def test_a_handler_error_is_500_in_the_error_shape_logged_once(spy: Spy, logged: Log) -> None:
    before = requests_total(spy.app, "/boom", 500)
    answer = post(spy.app, "/boom", b"{}")
    assert spy.calls == 0
    request_id = answer.headers["x-request-id"]
    assert request_id in error_of(answer, 500, "internal_error")["message"]
    assert b"secret" not in answer.body and b"Traceback" not in answer.body
    (failure,) = events(logged, "unhandled_error")
    assert failure.request_id == request_id and isinstance(failure.exc_info[1], RuntimeError)
    (line,) = events(logged)
    assert (line.status, line.request_id) == (500, request_id)
    assert requests_total(spy.app, "/boom", 500) == before + 1


def test_a_response_that_cannot_be_sent_is_499(spy: Spy, logged: Log) -> None:
    before = {status: requests_total(spy.app, "/predict", status) for status in (200, 499)}
    post(spy.app, "/predict", send_error=OSError("connection closed"))
    assert spy.calls == 0
    records: list[Any] = [r for r in logged.records if r.levelno >= logging.INFO]
    (line,) = records  # the request's line, no error record, no traceback
    assert line.status == 499 and line.exc_info is None and line.event == "request"
    assert "before the response was delivered" in line.disconnected
    assert requests_total(spy.app, "/predict", 499) == before[499] + 1
    assert requests_total(spy.app, "/predict", 200) == before[200]


async def as_a_server(app: ASGIApp, scope: Scope, body: bytes) -> list[Message]:
    """Run a request as a server does: its body in one message, then ``receive`` waits (the
    client stays connected). Returns the messages sent."""
    sent: list[Message] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await app(scope, receive, send)
    return sent


def delivered(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes, bool]:
    """Status, headers (but the request id), body, and whether the last message ended it."""
    start, *bodies = sent
    headers = dict(start["headers"])
    assert headers.pop(b"x-request-id")
    body = b"".join(message.get("body", b"") for message in bodies)
    return start["status"], headers, body, bool(bodies) and not bodies[-1].get("more_body")


NOT_PLAIN = [
    ("/background", "2.3"),
    ("/stream", "2.4"),
    ("/stream", "2.3"),
    ("/file", "2.4"),
]


@pytest.mark.parametrize(("path", "spec"), NOT_PLAIN)
def test_a_response_that_is_not_plain_is_delivered_whole_with_the_id(
    spy: Spy, path: str, spec: str
) -> None:
    ran: list[str] = []
    state = {"task": functools.partial(ran.append, "background")}

    def run(headers: Fields) -> tuple[int, dict[bytes, bytes], bytes, bool]:
        scope = scope_for(spy.app, path, headers, spec=spec, state=state)
        sent = anyio.run(as_a_server, spy.app, scope, b"{}")
        assert (b"x-request-id", scope["state"]["request_id"].encode()) in sent[0]["headers"]
        return delivered(sent)

    fused = run(sized(b"{}"))
    assert spy.calls == 0
    chained = run([JSON])
    assert spy.calls == 1
    assert fused == chained and fused[0] == 200 and fused[3]
    assert spy.path.limit.in_flight == 0
    assert ran == (["background"] * 2 if path == "/background" else [])


def fail() -> None:
    raise RuntimeError("a background task failed")


LATE = [pytest.param([JSON], id="chain"), pytest.param(sized(b"{}"), id="fused")]


@pytest.mark.parametrize("headers", LATE)
def test_an_error_after_the_response_started_is_logged_with_the_request_id(
    spy: Spy, logged: Log, headers: Fields
) -> None:
    scope = scope_for(spy.app, "/background", headers, state={"task": fail})
    with pytest.raises(RuntimeError, match="background task failed"):
        anyio.run(as_a_server, spy.app, scope, b"{}")
    assert spy.path.limit.in_flight == 0
    (failure,) = events(logged, "unhandled_error")
    assert failure.request_id == scope["state"]["request_id"]


# --- the in-flight count when a request is cancelled ------------------------------------------


@pytest.mark.parametrize("waiting_for", ["the handler", "the body"])
def test_a_cancelled_request_leaves_the_in_flight_count_at_0(spy: Spy, waiting_for: str) -> None:
    limit = spy.path.limit

    async def scenario() -> None:
        entered, never = asyncio.Event(), asyncio.Event()
        scope = scope_for(spy.app, "/hang", sized(b"{}"), state={"hang": (entered, never)})

        async def receive() -> Message:
            if waiting_for == "the body":
                entered.set()
                await never.wait()
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: Message) -> None:
            raise AssertionError(f"nothing is sent: {message}")

        task = asyncio.create_task(spy.app(scope, receive, send))
        await asyncio.wait_for(entered.wait(), 10)
        assert limit.in_flight == 1  # counted while it waits, by the fused way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert (limit.in_flight, spy.calls) == (0, 0)
