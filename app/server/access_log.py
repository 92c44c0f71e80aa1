"""The per-request log line, written off the request path.

Through ``logging`` a request's line costs ~20 µs on the event loop (a record, the handlers'
locks, the formatter, a write to stderr per line): ~12 % of a prediction's server time
(bench/NOTES.md). :class:`AccessLogWriter` formats the same line (byte for byte what the
root handler's formatter writes for the same record) and queues it; a thread writes what is
queued every few milliseconds in one ``write``. :meth:`AccessLogWriter.close` writes the rest
at shutdown: no line is lost. A writer that cannot keep up (stderr blocked) makes the request
path wait instead of holding lines without bound.

Only the lines of requests that went well or were refused (status below 500) take this way;
a server error and a client that went away are logged through ``logging`` as before
(:mod:`app.server.middleware`), which is also what runs when no writer is given (the tests'
apps, a host program's logging).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time

import orjson

from xorlog.formats import LogFormat, local_stamp, utc_timestamp

REQUEST_LOGGER = "app.request"
# How often the thread writes what is queued: a line shows up at most this late.
FLUSH_SECONDS = 0.02
# Lines queued at most; beyond, a request writes them itself (stderr is not keeping up).
MAX_PENDING_LINES = 20_000


class AccessLogWriter:
    """Request lines in ``log_format`` (json or text) to file descriptor ``fd``."""

    def __init__(self, log_format: LogFormat, fd: int = 2) -> None:
        if log_format is LogFormat.AUTO:
            raise ValueError("resolve the format first (text or json)")
        self.json = log_format is LogFormat.JSON
        self.fd = fd
        self._pending: collections.deque[bytes] = collections.deque()
        self._write_lock = threading.Lock()  # one writer at a time: whole lines, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    @classmethod
    def if_enabled(cls, log_format: LogFormat) -> AccessLogWriter | None:
        """A writer, unless the request logger's INFO lines are not wanted (XOR_LOG_LEVEL)."""
        if not logging.getLogger(REQUEST_LOGGER).isEnabledFor(logging.INFO):
            return None
        return cls(log_format)

    def line(
        self, method: str, path: str, status: int, seconds: float, request_id: str, now: float
    ) -> bytes:
        """The line the root handler's formatter would write for this request's record."""
        if self.json:
            return (
                orjson.dumps(
                    {
                        "ts": utc_timestamp(now),
                        "level": "INFO",
                        "logger": REQUEST_LOGGER,
                        "message": f"{method} {path} {status}",
                        "event": "request",
                        "method": method,
                        "path": path,
                        "status": status,
                        "latency_ms": round(seconds * 1000, 3),
                        "request_id": request_id,
                    }
                )
                + b"\n"
            )
        latency = round(seconds * 1000, 3)
        text = f"{local_stamp(now)} INFO  {method} {path} {status} {latency:.1f} ms\n"
        return text.encode("utf-8", "backslashreplace")

    def request(self, method: str, path: str, status: int, seconds: float, request_id: str) -> None:
        """Queue the request's line (called on the event loop, once per request)."""
        self._pending.append(self.line(method, path, status, seconds, request_id, time.time()))
        if len(self._pending) > MAX_PENDING_LINES:
            self.flush()

    def flush(self) -> None:
        """Write every queued line now."""
        with self._write_lock:
            pending = self._pending
            lines = []
            while pending:
                lines.append(pending.popleft())
            if lines:
                self._write_all(b"".join(lines))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # stderr is gone (closed pipe): nothing to write to
            view = view[written:]

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            if self._pending:
                self.flush()

    def close(self) -> None:
        """Stop the thread and write what is left (at shutdown, after the drain)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
