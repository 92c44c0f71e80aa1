"""Pure ASGI middleware (no BaseHTTPMiddleware: it is slow and buffers streams).

- :class:`RequestContextMiddleware` (outermost): request id, one log line (unless turned off)
  and the HTTP metrics per request, and a 500 in the error shape for any exception that
  escaped the routes. A client that went away is not a server error: status 499 (nginx's
  "client closed request") in the log line and the metrics, no traceback.
- :class:`InFlightLimitMiddleware`: 503 ``overloaded`` at once for a prediction request beyond
  the cap on those in flight (:class:`InFlightLimit`), before its body is read, so that a burst
  costs neither the memory of the bodies nor the event loop's time to parse them.
- :class:`BodyLimitMiddleware`: 413 for a body over the limit, decided before anything is
  parsed: at once from ``Content-Length``, otherwise (chunked uploads) as soon as the bytes
  received pass the limit, so at most the limit plus one chunk is ever held.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, InternalError, Overloaded, PayloadTooLarge
from app.metrics import Metrics
from app.server.access_log import AccessLogWriter

# Renders an error in the shape of the API that owns the request's path.
RenderError = Callable[[ApiError, str], Response]

log = logging.getLogger("app.request")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

# nginx's status for a request whose client closed the connection before it was answered.
CLIENT_CLOSED_REQUEST = 499
# The key in a request's ``scope["state"]`` under which the server says why it closed the
# connection itself (app.server.uvicorn_hooks: the read deadline); absent, the client did.
DISCONNECT_REASON = "disconnect_reason"
# Seconds an overloaded client is asked to wait (Retry-After): the burst is usually gone by then.
OVERLOADED_RETRY_AFTER_SECONDS = 1


# A request id the client did not send: 32 hex digits, 16 random per process and a counter,
# unique without a uuid4 per request (os.urandom, a system call, costs more than the rest).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def _header(scope: Scope, name: bytes) -> str:
    """A request header's value ("" if absent): ``name`` lower-case, as ASGI servers send
    header names. Scanned directly: ``starlette.datastructures.Headers`` lower-cases every
    name on each lookup, and this runs twice per request on the prediction path."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _route_template(scope: Scope) -> str:
    # Set on a match by the router (or the prediction routes, which set a route of their own
    # with a ``path``); unknown paths share one label to bound cardinality.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, record: RequestRecord, render_error: RenderError) -> None:
        self.app = app
        self.render_error = render_error
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(_header(scope, _REQUEST_ID_HEADER_KEY))
        scope.setdefault("state", {})["request_id"] = request_id
        id_bytes = request_id.encode("latin-1")
        start = time.perf_counter()
        status = 500
        started = False
        undelivered = False  # the server could not write the response: the connection is gone
        disconnected: str | None = None  # how the client was lost, if it was

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, undelivered
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                # Appended to the raw list (no response sets it otherwise): MutableHeaders
                # would copy and lower-case the list first.
                message["headers"] = [
                    *message.get("headers", ()),
                    (_REQUEST_ID_HEADER_KEY, id_bytes),
                ]
            try:
                await send(message)
            except OSError:  # as ASGI 2.4 servers (and ours) raise on a closed connection
                undelivered = True
                raise

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if undelivered:
                disconnected = "before the response was delivered"
            elif isinstance(exc, ClientDisconnect):  # raised by a body read
                disconnected = "before its request arrived whole"
            else:
                log.exception(
                    "unhandled error",
                    extra={"event": "unhandled_error", "request_id": request_id},
                )
                if started:
                    raise  # too late for a clean error response: let the server drop it
                error = InternalError(
                    f"internal error; see the server log for request {request_id}"
                )
                with contextlib.suppress(OSError):  # the client is gone too: logged above
                    await self.render_error(error, scope["path"])(scope, receive, send_with_id)
        finally:
            self.record.finished(
                scope,
                _route_template(scope),
                status,
                time.perf_counter() - start,
                request_id,
                disconnected,
            )


def choose_request_id(sent: str | None) -> str:
    """The client's ``X-Request-ID`` if it sent a sane one, else a new id."""
    return sent if sent and _SANE_REQUEST_ID.fullmatch(sent) else new_request_id()


class RequestRecord:
    """What every finished request leaves: the HTTP metrics and its log line (unless the access
    log is off; a client that went away is logged whatever the setting)."""

    def __init__(
        self, metrics: Metrics, *, access_log: bool, writer: AccessLogWriter | None
    ) -> None:
        self.metrics = metrics
        self.access_log = access_log
        # The lines of requests answered below 500 go through it, off the request path; the
        # others, and all of them without one, through logging.
        self.writer = writer if access_log else None

    def finished(
        self,
        scope: Scope,
        route: str,
        status: int,
        seconds: float,
        request_id: str,
        disconnected: str | None,
    ) -> None:
        """Record a request answered with ``status`` after ``seconds`` (``route``: its template,
        the metrics' label); ``disconnected`` says how its client was lost, if it was."""
        method = scope["method"]
        if disconnected is not None:
            status = CLIENT_CLOSED_REQUEST
        self.metrics.request_finished(route, method, status, seconds)
        if disconnected is None and status < 500 and self.writer is not None:
            self.writer.request(method, scope["path"], status, seconds, request_id)
        elif disconnected is not None or self.access_log:
            log_request(scope, status, seconds, request_id, disconnected)


def log_request(
    scope: Scope, status: int, seconds: float, request_id: str, disconnected: str | None
) -> None:
    """The request's line. For a client that is gone it is logged whatever the access log
    setting (the one line it leaves): INFO if the client left, WARNING if the server cut it off
    (with the reason the server put in the scope)."""
    method, path = scope["method"], scope["path"]
    fields: dict[str, Any] = {
        "event": "request",
        "method": method,
        "path": path,
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
        "request_id": request_id,
    }
    if disconnected is None:
        log.info("%s %s %d", method, path, status, extra=fields)
        return
    reason = scope["state"].get(DISCONNECT_REASON)
    level = logging.INFO if reason is None else logging.WARNING
    fields["disconnected"] = reason or f"the client disconnected {disconnected}"
    log.log(level, "%s %s %d: %s", method, path, status, fields["disconnected"], extra=fields)


class InFlightLimit:
    """The cap on prediction requests in flight (XOR_MAX_IN_FLIGHT) and how many there are:
    one per app, shared by every :class:`InFlightLimitMiddleware` (both ways a prediction
    request may take). Plain counters: everything runs on one event loop."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self.metrics = metrics


# Which route a request takes, if it is one the cap applies to (its ``path`` labels metrics).
MatchRoute = Callable[[str, str], Any]


class InFlightLimitMiddleware:
    """503 ``overloaded`` with ``Retry-After`` for a prediction request beyond the cap,
    answered before the body is read (its bytes are discarded by the server as they come).

    ``match`` picks the capped requests by method and path when this middleware sees others
    too (FastAPI's stack); None: every request it sees is capped (the plain prediction way).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: InFlightLimit,
        render_error: RenderError,
        match: MatchRoute | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.render_error = render_error
        self.match = match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = None if self.match is None else self.match(scope["method"], scope["path"])
        if self.match is not None and route is None:
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if limit.in_flight >= limit.limit:
            if route is not None:
                scope["route"] = route  # as the router would have: it labels the metrics
            limit.metrics.overloaded(_route_template(scope))
            error = Overloaded(
                f"the server is busy: {limit.limit} prediction requests are in flight "
                "(XOR_MAX_IN_FLIGHT); retry shortly",
                headers={"Retry-After": str(OVERLOADED_RETRY_AFTER_SECONDS)},
            )
            await self.render_error(error, scope["path"])(scope, receive, send)
            return
        limit.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            limit.in_flight -= 1


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, render_error: RenderError) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.render_error = render_error

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body is {size} bytes; at most {self.max_body_bytes} bytes are accepted"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared.isascii() and declared.isdigit():
            if int(declared) > self.max_body_bytes:
                # Answered without reading the body.
                await self.render_error(self._too_large(declared), scope["path"])(
                    scope, receive, send
                )
                return
            if not _header(scope, b"transfer-encoding"):
                # The server delivers exactly Content-Length bytes: nothing to count.
                await self.app(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the route's body read: rendered by the exception handler.
                    raise self._too_large(f"more than {self.max_body_bytes}")
            return message

        await self.app(scope, limited_receive, send)
