"""Running the app under uvicorn: one process, graceful shutdown on SIGTERM/SIGINT (after the
shutdown delay, if any), exit 0."""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from app.config import Settings
from app.server.uvicorn_hooks import GracefulServer, guarded_httptools

log = logging.getLogger(__name__)

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Of the shutdown budget, this much is kept for what follows the drain: the lifespan shutdown
# and the interpreter's exit, which takes seconds with TensorFlow loaded.
SHUTDOWN_RESERVE_SECONDS = 3


def freeze_startup_heap() -> int:
    """Move every object alive now out of the garbage collector's reach; returns how many.

    Importing TensorFlow leaves about a million long-lived objects, and each full collection
    walks all of them with the event loop stopped: the p99 latency under load paid for it
    (bench/NOTES.md). Frozen, they are never walked again, as the CPython docs recommend for
    exactly this. Called after the imports and before any model loads, so what later versions
    allocate stays collectable.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@contextmanager
def _signals_end(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM/SIGINT stop ``server`` gracefully, and a drained shutdown exits 0.

    uvicorn handles both signals while it serves and, once it has drained, re-raises the one it
    caught for whatever handler was there before it (uvicorn's documented behaviour).
    With Python's defaults there, a fully answered shutdown would die with 143 (or a
    KeyboardInterrupt); the handlers installed here take the re-raised signal instead, and a
    signal that comes before uvicorn's own handlers are in place still stops the server.
    """

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in _HANDLED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    app: ASGIApp,
    settings: Settings,
    *,
    on_listening: Callable[[str], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
    on_refused: Callable[[str], None] | None = None,
) -> int:
    """Serve ``app`` until SIGTERM/SIGINT; returns the process exit code. ``on_listening``
    gets the server's URL once it accepts connections; ``on_stopping`` is called (from the
    signal handler: keep it to setting a flag) when the first signal starts the shutdown delay
    (``XOR_SHUTDOWN_DELAY_SECONDS``, see :class:`GracefulServer`), so that readiness fails
    while requests are still served. ``on_stopped`` runs once the server has stopped serving,
    before the last line (the access log's writer writes what it holds). ``on_refused`` gets
    the error code of each request the HTTP layer refuses before any route sees it."""
    frozen = freeze_startup_heap()
    log.debug("froze %d objects of the startup heap", frozen, extra={"event": "gc_freeze"})
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=max(
            1, settings.shutdown_timeout_seconds - SHUTDOWN_RESERVE_SECONDS
        ),
        log_config=None,  # our handlers (app.server.logging) format uvicorn's records too
        access_log=False,  # RequestContextMiddleware logs every request
        server_header=False,
        # The fast implementations (uvloop's event loop, httptools' HTTP parser).
        loop="uvloop",
        http=guarded_httptools(
            settings.request_timeout_seconds, settings.max_header_bytes, on_refused
        ),
    )
    server = GracefulServer(
        config,
        on_listening,
        shutdown_delay=settings.shutdown_delay_seconds,
        on_stopping=on_stopping,
    )
    try:
        with _signals_end(server):
            server.run()
    except SystemExit as exc:  # uvicorn exits this way when it cannot bind or start
        log.error("the server did not start", extra={"event": "startup_failed", "code": exc.code})
        return 1
    finally:
        if on_stopped is not None:
            on_stopped()
    if not server.started:
        log.error("the server did not start", extra={"event": "startup_failed"})
        return 1
    log.info("stopped", extra={"event": "stopped"})
    return 0
