"""Pure ASGI middleware (no BaseHTTPMiddleware: it is slow and buffers streams).

- :class:`RequestContextMiddleware` (outermost): request id, one log line (unless turned off)
  and the HTTP metrics per request, and a 500 in the error shape for any exception that
  escaped the routes.
- :class:`BodyLimitMiddleware`: 413 for a body over the limit, decided before anything is
  parsed: at once from ``Content-Length``, otherwise (chunked uploads) as soon as the bytes
  received pass the limit, so at most the limit plus one chunk is ever held.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, InternalError, PayloadTooLarge
from app.metrics import Metrics

# Renders an error in the shape of the API that owns the request's path.
RenderError = Callable[[ApiError, str], Response]

log = logging.getLogger("app.request")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def _route_template(scope: Scope) -> str:
    # Set on a match by the router (or the prediction routes, which set a route of their own
    # with a ``path``); unknown paths share one label to bound cardinality.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, render_error: RenderError, access_log: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.render_error = render_error
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = sent if _SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error",
                extra={"event": "unhandled_error", "request_id": request_id},
            )
            if started:
                raise  # too late for a clean error response: let the server drop the connection
            error = InternalError(f"internal error; see the server log for request {request_id}")
            await self.render_error(error, scope["path"])(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            method = scope["method"]
            self.metrics.request_finished(_route_template(scope), method, status, seconds)
            if self.access_log:
                log.info(
                    "%s %s %d",
                    method,
                    scope["path"],
                    status,
                    extra={
                        "event": "request",
                        "method": method,
                        "path": scope["path"],
                        "status": status,
                        "latency_ms": round(seconds * 1000, 3),
                        "request_id": request_id,
                    },
                )


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
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            # Answered without reading the body.
            await self.render_error(self._too_large(declared), scope["path"])(scope, receive, send)
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
