"""The request lines written off the request path (app.server.access_log): the same bytes as
the logging formatters', in order, and none lost at shutdown, even under load."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.server.access_log import MAX_PENDING_LINES, REQUEST_LOGGER, AccessLogWriter
from tests.support.server import running_server
from xorlog.formats import JsonFormatter, LogFormat, TextFormatter

CASES = [
    ("POST", "/predict", 200, 0.0012345, "a" * 32),
    ("GET", '/odd "path"/é\\x', 404, 0.5, "id-1"),
    ("POST", "/v1/models/xor:predict", 422, 12.0, "x"),
]


def record_of(
    method: str, path: str, status: int, seconds: float, request_id: str, now: float
) -> logging.LogRecord:
    """The record RequestContextMiddleware logs for a request (through logging)."""
    record = logging.getLogger(REQUEST_LOGGER).makeRecord(
        REQUEST_LOGGER,
        logging.INFO,
        __file__,
        0,
        "%s %s %d",
        (method, path, status),
        None,
        extra={
            "event": "request",
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
            "request_id": request_id,
        },
    )
    record.created = now
    return record


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("log_format", [LogFormat.JSON, LogFormat.TEXT])
def test_a_line_is_what_the_formatter_writes_for_the_same_record(
    case: tuple[str, str, int, float, str], log_format: LogFormat
) -> None:
    now = 1796040000.1234
    formatter = JsonFormatter() if log_format is LogFormat.JSON else TextFormatter()
    expected = formatter.format(record_of(*case, now)) + "\n"
    writer = AccessLogWriter(log_format, fd=os.open(os.devnull, os.O_WRONLY))
    try:
        assert writer.line(*case, now) == expected.encode("utf-8", "backslashreplace")
    finally:
        writer.close()
        os.close(writer.fd)


def test_lines_are_written_in_order_and_close_writes_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    writer = AccessLogWriter(LogFormat.TEXT, fd=fd)
    for i in range(5000):
        writer.request("GET", f"/r/{i}", 200, 0.001, str(i))
    writer.close()
    os.close(fd)
    lines = path.read_text().splitlines()
    assert [line.split()[3] for line in lines] == [f"/r/{i}" for i in range(5000)]


def test_a_writer_that_falls_behind_makes_the_request_path_write(tmp_path: Path) -> None:
    """Lines are never held without bound: past the cap, the caller writes them itself."""
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    writer = AccessLogWriter(LogFormat.JSON, fd=fd)
    writer._stop.set()  # the thread stops writing: only the cap can empty the queue now
    writer._thread.join(timeout=5)
    for i in range(MAX_PENDING_LINES + 1):
        writer.request("GET", "/", 200, 0.0, str(i))
    assert len(writer._pending) == 0
    assert len(path.read_bytes().splitlines()) == MAX_PENDING_LINES + 1
    writer.close()
    os.close(fd)


def test_no_writer_when_the_level_hides_request_lines() -> None:
    logger = logging.getLogger(REQUEST_LOGGER)
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        assert AccessLogWriter.if_enabled(LogFormat.JSON) is None
    finally:
        logger.setLevel(before)


def test_every_answered_request_has_its_line_after_sigterm_under_load(
    tmp_path: Path, trained_version: Path
) -> None:
    """Four clients keep predicting; SIGTERM in the middle of it. Every response a client got
    has exactly one line in the log, found by its request id, and nothing else does."""
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with running_server(tmp_path, trained_version, 1) as server:

        def client() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                deadline = time.monotonic() + 60
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        response = http.post("/predict", json={"inputs": [0, 1]})
                    except httpx.HTTPError:
                        return  # the server is stopping
                    with lock:
                        received.append(response.headers["x-request-id"])

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        every = server.log_lines()
        lines = [
            line for line in every if line.get("event") == "request" and line["path"] == "/predict"
        ]
    # Written before the server's last line, not after it.
    assert every[-1]["event"] == "stopped"
    logged = [line["request_id"] for line in lines]
    assert len(received) > 200
    assert len(logged) == len(set(logged))
    extra = [line for line in lines if line["request_id"] not in set(received)]
    assert set(received) <= set(logged), "answered but not logged"
    assert extra == [], extra
