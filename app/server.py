"""Running the app under uvicorn, with a graceful SIGTERM that exits 0."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from app.config import Settings

log = logging.getLogger(__name__)

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Of the shutdown budget, this much is kept for what follows the drain: the lifespan shutdown
# and the interpreter's exit, which takes 1-2 s with TensorFlow loaded (measured here).
SHUTDOWN_RESERVE_SECONDS = 3


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
        http="httptools",
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
