"""The only places that override uvicorn: what it has no public setting or hook for.

- :func:`guarded_httptools`: uvicorn's httptools protocol with a read deadline per request
  and a cap on header bytes (uvicorn has neither setting, and httptools' own header limit
  cannot be changed), a shutdown that lets a connection finish a request it has started
  sending, pipelined requests answered in order up to a malformed one, and a response that
  cannot be delivered reported to the app (ASGI 2.4's ``OSError``) instead of dropped.
- :class:`GracefulServer`: at shutdown, the connections already in the listeners' accept queue
  are taken over and served; uvicorn closes the listeners, which resets them. Once it listens,
  it says where (uvicorn only logs it, as text). And with a shutdown delay, the first signal
  only says the server is going away (readiness fails) while it keeps serving for the delay,
  before uvicorn's shutdown (uvicorn starts it on the first signal).

Both lean on uvicorn's internals (the protocol's ``cycle``, ``pipeline``, ``flow``,
``transport``, ``loop``, ``parser``, and the ``url`` and ``headers`` it collects per request,
its callbacks and ``send_400_response``, a cycle's ``send``,
``disconnected``, ``more_body`` and ``scope``, the protocol's constructor arguments,
``Server.shutdown``, ``Server.startup`` with its ``started`` and ``servers``,
``Server.handle_exit`` with ``should_exit``, ``Server.on_tick`` and
``server_state.default_headers``), checked against uvicorn 0.54 (the range ``pyproject.toml``
allows). ``tests/app/server/test_uvicorn_hooks.py`` fails, naming the hook, if any of them
changes shape in another uvicorn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.api.service.errors import error_body
from app.errors import ApiError, HeadersTooLarge, MalformedRequest, RequestTimeout
from app.server.middleware import DISCONNECT_REASON

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

log = logging.getLogger(__name__)

# At shutdown, how long a just-accepted connection that has sent nothing yet may take to start
# its request (its bytes are usually already on the wire).
SHUTDOWN_FIRST_BYTE_GRACE = 1.0

# Added to every response during the shutdown delay: a keep-alive client (a load balancer's
# pooled connection) reconnects, to another replica, instead of reusing this connection.
CONNECTION_CLOSE = (b"connection", b"close")


def refusal(error: ApiError) -> bytes:
    """A whole response refusing a request at the HTTP layer (before any app sees it), in the
    service's JSON error shape, closing the connection."""
    body = error_body(error)
    reason = HTTPStatus(error.status).phrase.encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (error.status, reason, len(body), body)
    )


# uvicorn's line for a request it cannot parse, which the guard's own line replaces (with the
# refusal's code; also for a 431, which reaches uvicorn as a parse error).
UVICORN_PARSE_ERROR_LINE = "Invalid HTTP request received."


def _not_uvicorn_parse_error_line(record: logging.LogRecord) -> bool:
    return record.msg != UVICORN_PARSE_ERROR_LINE


class _HeadersTooLargeError(Exception):
    """Raised from a parser callback to stop reading a request whose headers are too large."""


class ResponseNotDelivered(ConnectionError):
    """Raised by a response's ``send`` once its connection is closed (as ASGI 2.4 asks):
    uvicorn returns silently, and the app would log a response as sent that nobody got."""


def _reporting_send(
    cycle: RequestResponseCycle,
) -> Callable[[ASGISendEvent], Coroutine[Any, Any, None]]:
    """``cycle.send``, raising :class:`ResponseNotDelivered` when the response cannot reach
    the client: its connection is closed or closing, or was lost while the write waited."""
    send = cycle.send

    async def reporting_send(message: ASGISendEvent) -> None:
        if not cycle.response_complete and (cycle.disconnected or cycle.transport.is_closing()):
            cycle.disconnected = True  # uvicorn then logs no "returned without a response"
            raise ResponseNotDelivered("the connection is closed")
        await send(message)
        if cycle.disconnected and not cycle.response_complete:
            raise ResponseNotDelivered("the connection was lost while the response was written")

    return reporting_send


def guarded_httptools(
    read_timeout: float,
    max_header_bytes: int,
    on_refused: Callable[[str], None] | None = None,
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the two limits it lacks: a read deadline and a cap
    on header bytes, so slow or oversized clients cannot hold connections or memory.

    - A request must arrive whole (headers and body) within ``read_timeout`` seconds of its
      first byte (of the connection, for a new one): otherwise 408 while the headers are
      incomplete, or the connection is closed (the app sees a disconnect).
    - More than ``max_header_bytes`` of request line and headers: 431, connection closed
      (counted as bytes arrive, and once more on the parsed headers: a header block that
      arrives whole in one read is not let through).
    Refusals at this layer (400 for what is not HTTP/1.1, 408, 431) are answered in the
    service's JSON error shape, as every other error, and ``on_refused`` gets each one's code
    (no route sees them, so the request metrics cannot count them).
    Idle keep-alive connections stay uvicorn's business (``timeout_keep_alive``).

    Pipelining: uvicorn answers a malformed request at once with 400 and closes the connection,
    which cut off the answers to the requests received whole before it (their apps then wrote
    into a closed transport). Here every refusal (400, 408, 431) waits for those answers and
    comes after them; nothing after the malformed request is read. When the connection is lost
    anyway, every request on it is told (uvicorn tells only the newest), a response that can no
    longer be delivered raises in the app's ``send`` (the app logs it as such, 499), and
    pipelined requests that never started are logged as not answered.

    At shutdown uvicorn closes every connection without a request in progress. That loses a
    request whose connection was accepted just before the signal but whose bytes were still on
    their way (the client sees the server disconnect without a response). Here a connection
    that never had a request, or is part-way through receiving one, is let finish that request
    (answered with ``connection: close``); one that sent nothing gets ``SHUTDOWN_FIRST_BYTE_GRACE``
    seconds to start. Idle keep-alive connections are closed at once, as uvicorn does.
    """

    first_byte_grace = min(read_timeout, SHUTDOWN_FIRST_BYTE_GRACE)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if _not_uvicorn_parse_error_line not in uvicorn_log.filters:
        uvicorn_log.addFilter(_not_uvicorn_parse_error_line)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # When the request being read must be whole (loop time), if one is being read; one
        # timer per connection checks it, re-armed only when it fires early (a call_later and
        # a cancel per request cost ~4 % of a prediction's server time, bench/NOTES.md).
        _deadline: float | None = None
        _timer: asyncio.TimerHandle | None = None
        _timer_at = 0.0
        _reading_headers = True
        _header_bytes = 0
        _headers_too_large = False
        _draining = False  # the server is shutting down: this connection serves one last request
        # A refusal held back until the requests before it are answered (see _answer_last).
        _last_answer: Callable[[], None] | None = None
        _cycles: list[RequestResponseCycle]  # this connection's requests (answered ones pruned)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._cycles = []
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for cycle in self._cycles:
                if not cycle.response_complete:  # uvicorn tells only the newest request
                    cycle.disconnected = True
                    cycle.message_event.set()
            if self.pipeline:  # received whole, never started: the app never saw them
                reason = self.pipeline[0][0].scope["state"].get(DISCONNECT_REASON)
                log.log(
                    logging.INFO if reason is None else logging.WARNING,
                    "connection closed with %d pipelined requests not answered%s",
                    len(self.pipeline),
                    f": {reason}" if reason else "",
                    extra={"event": "pipelined_not_answered", "count": len(self.pipeline)},
                )
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._last_answer is not None:
                return  # a refusal is pending: nothing after the refused request is read
            if self._reading_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            if self._reading_headers and self._header_bytes > max_header_bytes:
                self._refuse_headers()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            # The request line and headers as sent (one space after each colon). Counted here
            # too, not only as bytes arrive: those may end the headers in the same read.
            size = len(self.parser.get_method()) + len(self.url) + 14
            for name, value in self.headers:  # a loop: ~0.2 us a request, half of a sum()'s
                size += len(name) + len(value) + 4
            if size > max_header_bytes:
                self._headers_too_large = True
                raise _HeadersTooLargeError  # httptools stops; uvicorn calls send_400_response
            self._reading_headers = False
            previous = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not previous and cycle is not None:  # a new request (not an upgrade)
                self._cycles = [c for c in self._cycles if not c.response_complete]
                self._cycles.append(cycle)
                cycle.send = _reporting_send(cycle)  # type: ignore[method-assign,assignment]
            if self._draining and cycle is not None:
                cycle.keep_alive = False

        def on_response_complete(self) -> None:
            super().on_response_complete()
            for cycle in self._cycles:
                if cycle.response_complete:
                    # The reporting send refers to its cycle: dropped here, the cycle is freed
                    # by its reference count, not left to the garbage collector (which then
                    # stopped the loop for ~1.5 ms every ~50 ms at 32 connections).
                    cycle.__dict__.pop("send", None)
            answer = self._last_answer
            if answer is not None and not self._answers_owed() and not self.transport.is_closing():
                self._last_answer = None
                answer()

        def send_400_response(self, msg: str) -> None:
            if self._headers_too_large:
                self._refuse_headers()
                return
            error = MalformedRequest(
                "not a valid HTTP request (its request line, headers or chunked framing)"
            )
            self._refuse(error, "not valid HTTP")

        def shutdown(self) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            fresh = self.cycle is None
            if not idle or not (fresh or self._header_bytes > 0):
                super().shutdown()  # a response in progress, or an idle keep-alive connection
                return
            self._draining = True
            if self._header_bytes == 0:
                self._arm(first_byte_grace)

        def on_message_complete(self) -> None:
            self._disarm()
            self._reading_headers, self._header_bytes = True, 0
            super().on_message_complete()

        def _arm(self, seconds: float = read_timeout) -> None:
            deadline = self.loop.time() + seconds
            self._deadline = deadline
            if self._timer is None or self._timer_at > deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._start_timer(deadline)

        def _disarm(self) -> None:
            self._deadline = None  # a pending timer finds nothing to do

        def _start_timer(self, at: float) -> None:
            self._timer = self.loop.call_at(at, self._check_deadline)
            self._timer_at = at

        def _check_deadline(self) -> None:
            self._timer = None
            deadline = self._deadline
            if deadline is None:
                return
            if self.loop.time() < deadline:  # re-armed since, or the loop's clock is coarse
                self._start_timer(deadline)
                return
            self._deadline = None
            self._timed_out()

        def _timed_out(self) -> None:
            if self._reading_headers:
                error = RequestTimeout(
                    f"the request's headers did not arrive within {read_timeout:g} s"
                )
                self._refuse(error, "request not received in time")
            elif not self.transport.is_closing():
                # A body that stalled: each request on the connection logs why it was lost
                # (the app's line, or connection_lost's for pipelined ones never started).
                reason = (
                    f"the server closed the connection: a request body did not arrive within "
                    f"{read_timeout:g} s (XOR_REQUEST_TIMEOUT_SECONDS)"
                )
                for cycle in self._cycles:
                    cycle.scope["state"][DISCONNECT_REASON] = reason
                self.transport.close()

        def _answers_owed(self) -> bool:
            """Whether requests received whole on this connection still await their answer
            (the newest one received whole, or queued behind another, means all before it)."""
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete and not cycle.more_body

        def _answer_last(self, answer: Callable[[], None]) -> None:
            """Refuse the request being read with ``answer`` (a response that closes the
            connection) once the requests received whole before it are answered; at once if
            none are. A request whose body was still arriving is cut off with the connection:
            the rest of its body will not come."""
            if self._last_answer is not None or self.transport.is_closing():
                return
            if not self._answers_owed():
                answer()
                return
            self._last_answer = answer
            self._disarm()
            self.flow.pause_reading()

        def _refuse_headers(self) -> None:
            error = HeadersTooLarge(
                f"request line and headers exceed {max_header_bytes} bytes (XOR_MAX_HEADER_BYTES)"
            )
            self._refuse(error, "headers too large")

        def _refuse(self, error: ApiError, why: str) -> None:
            if self.transport.is_closing() or self._last_answer is not None:
                return
            log.warning(
                "refusing a request: %s",
                why,
                extra={"event": "request_refused", "code": error.code, "status": error.status},
            )
            if on_refused is not None:
                on_refused(error.code)
            self._answer_last(functools.partial(self._write_refusal, refusal(error)))

        def _write_refusal(self, response: bytes) -> None:
            if self.transport.is_closing():
                return
            self.transport.write(response)
            self.transport.close()

    return GuardedHttpToolsProtocol


class _ShutsDown(Protocol):
    def shutdown(self) -> None: ...


def accept_queued(listener: socket.socket, limit: int = 4096) -> list[socket.socket]:
    """Accept, without blocking, the connections waiting in ``listener``'s accept queue."""
    accepted: list[socket.socket] = []
    # A duplicate of the descriptor: the event loop owns ``listener`` (uvloop's is a stand-in).
    with socket.socket(fileno=os.dup(listener.fileno())) as duplicate:
        duplicate.setblocking(False)
        while len(accepted) < limit:
            try:
                connection, _ = duplicate.accept()
            except OSError:  # BlockingIOError: the queue is empty
                break
            connection.setblocking(False)
            accepted.append(connection)
    return accepted


class GracefulServer(uvicorn.Server):
    """uvicorn's server, but connections waiting in the listeners' accept queue at shutdown
    are served, not reset; ``on_listening`` gets the URL once the server listens; and with a
    ``shutdown_delay``, it keeps serving that long after the first SIGTERM/SIGINT.

    The delay, for orchestrators that stop routing to a replica while they already signal it
    (Kubernetes removes the endpoint and sends SIGTERM at once; a load balancer's health check
    needs a few seconds to see readiness fail): the first signal calls ``on_stopping`` (the app
    fails readiness) and every response then carries ``connection: close``; the listeners stay
    open and requests are served as before. When the delay has passed, uvicorn's shutdown (the
    drain) runs unchanged. A second signal ends the delay at once (the drain begins), and from
    then on uvicorn's own rules apply: another SIGINT forces the exit (cancels the drain). A
    signal before the server listens, or with no delay, starts the drain at once as uvicorn does.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        on_listening: Callable[[str], None] | None = None,
        *,
        shutdown_delay: float = 0.0,
        on_stopping: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.on_listening = on_listening
        self.shutdown_delay = shutdown_delay
        self.on_stopping = on_stopping
        # When the signal that started the delay came (time.monotonic()), None before.
        self.stopping_since: float | None = None
        self._delay_announced = False
        self._delay_over = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's signal handler (it notes the signal, to raise it again once stopped, and
        starts the shutdown), except that the first signal, with a delay, starts the delay."""
        delay = (
            self.shutdown_delay > 0
            and self.started
            and self.stopping_since is None
            and not self.should_exit
        )
        super().handle_exit(sig, frame)
        if not delay:
            return
        self.should_exit = False  # on_tick sets it once the delay has passed
        self.stopping_since = time.monotonic()
        self._close_after_each_response()
        if self.on_stopping is not None:
            self.on_stopping()  # a signal handler: this only sets a flag

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's tick (ten a second: default headers, whether to exit), which also ends the
        delay once it has passed; its log lines are written here, not in the signal handler."""
        since = self.stopping_since
        if since is not None and not self._delay_over:
            if not self._delay_announced:
                self._delay_announced = True
                log.info(
                    "shutting down in %g s: readiness fails, requests are still served",
                    self.shutdown_delay,
                    extra={"event": "shutdown_delay", "seconds": self.shutdown_delay},
                )
            elapsed = time.monotonic() - since
            if self.should_exit:  # a second signal
                self._delay_over = True
                log.info(
                    "a second signal ended the shutdown delay after %.1f s",
                    elapsed,
                    extra={"event": "shutdown_delay_ended", "seconds": round(elapsed, 3)},
                )
            elif elapsed >= self.shutdown_delay:
                self._delay_over = True
                self.should_exit = True
        should_exit = await super().on_tick(counter)
        if since is not None:
            self._close_after_each_response()  # uvicorn's tick renews the default headers
        return should_exit

    def _close_after_each_response(self) -> None:
        """Have every response from now on carry ``connection: close`` (uvicorn then closes the
        connection after it), through the headers uvicorn adds to each response."""
        headers = self.server_state.default_headers
        if CONNECTION_CLOSE not in headers:
            # A new list: a request under way keeps the one it started with.
            self.server_state.default_headers = [*headers, CONNECTION_CLOSE]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup (the lifespan, then the listeners), then ``on_listening`` with the
        first listener's URL: its bound address, so port 0 reads as the port it got."""
        await super().startup(sockets)
        if self.started and self.on_listening is not None and self.servers:
            listeners = self.servers[0].sockets
            if listeners:
                self.on_listening(listening_url(listeners[0].getsockname()))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, but the connections the kernel has already accepted on the
        listeners (its accept queue) are taken over first: closing a listener resets them,
        and their clients may well have sent a request by then."""
        queued = [
            connection
            for server in self.servers
            for listener in server.sockets or ()
            for connection in accept_queued(listener)
        ]
        for server in self.servers:
            server.close()  # uvicorn closes them again: a no-op
        loop = asyncio.get_running_loop()
        for connection in queued:
            try:
                _, protocol = await loop.connect_accepted_socket(self._new_protocol, connection)
            except OSError:
                connection.close()
                continue
            # Shutting down from its start: it serves its one request with connection: close.
            cast(_ShutsDown, protocol).shutdown()
        if queued:
            log.info(
                "took over %d queued connections at shutdown",
                len(queued),
                extra={"event": "shutdown_queued_connections", "count": len(queued)},
            )
        await super().shutdown(sockets)

    def _new_protocol(self) -> asyncio.Protocol:
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol


# What a client on this machine connects to for a server bound to every address.
_LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def listening_url(address: Any) -> str:
    """``http://host:port`` for a listener's ``getsockname()``; a wildcard address (all
    interfaces) reads as the loopback one, which a client here can connect to."""
    if isinstance(address, str):  # a unix socket's path
        return f"unix:{address}"
    host, port = str(address[0]), int(address[1])
    host = _LOOPBACK_FOR.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
