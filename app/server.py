"""Running the app under uvicorn, with a graceful SIGTERM that exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings

log = logging.getLogger(__name__)

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Of the shutdown budget, this much is kept for what follows the drain: the lifespan shutdown
# and the interpreter's exit, which takes 1-2 s with TensorFlow loaded (measured here).
SHUTDOWN_RESERVE_SECONDS = 3


def guarded_httptools(read_timeout: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the two limits it lacks: a read deadline and a cap
    on header bytes, so slow or oversized clients cannot hold connections or memory.

    - A request must arrive whole (headers and body) within ``read_timeout`` seconds of its
      first byte (of the connection, for a new one): otherwise 408 while the headers are
      incomplete, or the connection is closed (the app sees a disconnect).
    - More than ``max_header_bytes`` received before the headers end: 431, connection closed.
    Idle keep-alive connections stay uvicorn's business (``timeout_keep_alive``).
    """

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _read_deadline: asyncio.TimerHandle | None = None
        _reading_headers = True
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._reading_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            if self._reading_headers and self._header_bytes > max_header_bytes:
                self._refuse(b"431 Request Header Fields Too Large", "headers too large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._reading_headers = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            self._reading_headers, self._header_bytes = True, 0
            super().on_message_complete()

        def _arm(self) -> None:
            self._disarm()
            self._read_deadline = self.loop.call_later(read_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _timed_out(self) -> None:
            self._read_deadline = None
            if self._reading_headers:
                self._refuse(b"408 Request Timeout", "request not received in time")
            elif not self.transport.is_closing():
                log.warning(
                    "closing a connection whose request body stalled",
                    extra={"event": "request_timeout"},
                )
                self.transport.close()

        def _refuse(self, status: bytes, why: str) -> None:
            if self.transport.is_closing():
                return
            log.warning("refusing a request: %s", why, extra={"event": "request_refused"})
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    return GuardedHttpToolsProtocol


class GracefulServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the captured signal after the graceful shutdown.

    uvicorn (>= 0.29) re-raises SIGTERM once it has drained, so the process would die with
    143 even though every request was answered. A drained shutdown is a success: exit 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(app: FastAPI, settings: Settings) -> int:
    """Serve ``app`` until SIGTERM/SIGINT; returns the process exit code."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=max(
            1, settings.shutdown_timeout_seconds - SHUTDOWN_RESERVE_SECONDS
        ),
        log_config=None,  # our handlers (app.logging) format uvicorn's records too
        access_log=False,  # RequestContextMiddleware logs every request
        server_header=False,
        # The fast implementations (uvloop's event loop, httptools' HTTP parser).
        loop="uvloop",
        http=guarded_httptools(settings.request_timeout_seconds, settings.max_header_bytes),
    )
    server = GracefulServer(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits this way when it cannot bind or start
        log.error("the server did not start", extra={"event": "startup_failed", "code": exc.code})
        return 1
    if not server.started:
        log.error("the server did not start", extra={"event": "startup_failed"})
        return 1
    log.info("stopped", extra={"event": "stopped"})
    return 0
