"""The prediction routes' common case in one ASGI frame: :class:`FusedPredictionPath`.

A prediction request passes through :class:`~app.server.middleware.RequestContextMiddleware`,
:class:`~app.server.middleware.InFlightLimitMiddleware`,
:class:`~app.server.middleware.BodyLimitMiddleware` and
:class:`~app.api.hot.PredictionRoutes`: four frames, two ``send`` wrappers, a Starlette
``Request`` and its body stream. Most requests need none of what makes those general: their
body comes whole in one message with a ``Content-Length`` under the limit, and the cap is not
reached. This path does the same work for them in one frame: request id, cap, body read,
handler, response (with ``X-Request-ID``), metrics and the access log line, the same bytes and
the same lines as the chain (``tests/app/server/test_fused.py`` checks both ways side by side).

Everything else goes to the chain, untouched, before anything was answered: a chunked or
oversized body, no ``Content-Length``, the cap reached (its 413 and 503 come from there), and
a body that does not come in one message or a client that is gone before it did (the message
already received is handed to the chain first, so it reads the body as if nothing had).
"""

from __future__ import annotations

import time

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.dependencies import Services
from app.api.hot import HotRoute, ReadRequest
from app.errors import ApiError, InternalError
from app.server.middleware import (
    InFlightLimit,
    RenderError,
    RequestRecord,
    choose_request_id,
    log,
)

_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_REQUEST_ID = b"x-request-id"


def _replaying(first: Message, receive: Receive) -> Receive:
    """``receive`` that gives ``first`` once (a message already taken), then the server's."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


class FusedPredictionPath:
    """The prediction routes' middleware and routes for the common case (module docstring);
    ``chain`` is the middleware-wrapped :class:`~app.api.hot.PredictionRoutes` for the rest.

    Expects what :class:`~app.api.hot.ServiceApp` sets before calling it: ``scope["route"]``
    (the :class:`HotRoute`) and ``scope["path_params"]``.
    """

    def __init__(
        self,
        chain: ASGIApp,
        *,
        services: Services,
        limit: InFlightLimit,
        max_body_bytes: int,
        record: RequestRecord,
        render_error: RenderError,
    ) -> None:
        self.chain = chain
        self.services = services
        self.limit = limit
        self.max_body_bytes = max_body_bytes
        self.record = record
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        length: bytes | None = None
        sent_id: bytes | None = None
        for key, value in scope["headers"]:  # the first of each, as the chain reads them
            if key == _CONTENT_LENGTH:
                if length is None:
                    length = value
            elif key == _REQUEST_ID:
                if sent_id is None:
                    sent_id = value
            elif key == _TRANSFER_ENCODING:
                length = b"chunked"  # counted as it comes: the chain's
        limit = self.limit
        if (
            length is None
            or not length.isdigit()
            or int(length) > self.max_body_bytes
            or limit.in_flight >= limit.limit
        ):
            await self.chain(scope, receive, send)
            return
        limit.in_flight += 1
        try:
            message = await receive()
        except BaseException:
            limit.in_flight -= 1
            raise
        if message["type"] != "http.request" or message.get("more_body", False):
            limit.in_flight -= 1
            await self.chain(scope, _replaying(message, receive), send)
            return
        try:
            await self._answer(scope, message.get("body", b""), receive, send, start, sent_id)
        finally:
            limit.in_flight -= 1

    async def _answer(
        self,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
        start: float,
        sent_id: bytes | None,
    ) -> None:
        """Answer a request whose body has been read; metrics and log line included."""
        request_id = choose_request_id(None if sent_id is None else sent_id.decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = request_id
        route: HotRoute = scope["route"]
        status = 500
        failed = False  # the handler raised: the 500's delivery is not the client's doing
        disconnected: str | None = None
        try:
            try:
                response = await route.handler(
                    ReadRequest(scope, scope["path_params"], body), self.services
                )
            except ApiError as exc:
                response = route.render_error(exc)
            except Exception:
                failed = True
                self._unhandled(request_id)
                response = self.render_error(
                    InternalError(f"internal error; see the server log for request {request_id}"),
                    scope["path"],
                )
            status = response.status_code
            id_header = (_REQUEST_ID, request_id.encode("latin-1"))
            try:
                if response.background is None and type(response).__call__ is Response.__call__:
                    # A plain Response's two messages, as its __call__ would send them.
                    start_message = {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [*response.raw_headers, id_header],
                    }
                    await send(start_message)
                    await send({"type": "http.response.body", "body": response.body})
                else:
                    status = await self._send_other(response, id_header, scope, receive, send)
            except OSError:  # as ASGI 2.4 servers (and ours) raise on a closed connection
                if not failed:
                    disconnected = "before the response was delivered"
            except Exception:
                if not failed:
                    self._unhandled(request_id)
                raise  # the response started: too late for a clean error, the server drops it
        finally:
            seconds = time.perf_counter() - start
            self.record.finished(scope, route.path, status, seconds, request_id, disconnected)

    @staticmethod
    def _unhandled(request_id: str) -> None:
        log.exception(
            "unhandled error", extra={"event": "unhandled_error", "request_id": request_id}
        )

    @staticmethod
    async def _send_other(
        response: Response,
        id_header: tuple[bytes, bytes],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> int:
        """Send a response that is not a plain one (streaming, a file, background tasks) as it
        sends itself, with ``X-Request-ID``; ``receive`` is the server's (the body has been
        read: a streaming response may listen on it for the client leaving). Its status."""
        status = response.status_code

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        await response(scope, receive, with_id)
        return status
