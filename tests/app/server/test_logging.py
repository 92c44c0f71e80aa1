"""Structured logs: the JSON and text formatters, and where configure_logging sends records."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.server.logging import JsonFormatter, TextFormatter, configure_logging


def record(message: str = "m", *args: Any, name: str = "app", **extra: Any) -> logging.LogRecord:
    """A record as ``logging.getLogger(name).info(message, *args, extra=extra)`` makes it."""
    made = logging.LogRecord(name, logging.INFO, __file__, 1, message, args or None, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def failed_record() -> logging.LogRecord:
    """An ERROR record carrying the exception being handled (``log.exception``)."""
    try:
        raise ValueError("boom")
    except ValueError:
        return logging.LogRecord(
            "app.request", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )


def test_json_lines_hold_the_fields_and_the_extras() -> None:
    line = json.loads(JsonFormatter().format(record("GET %s", "/x", latency_ms=1.5, status=200)))
    assert list(line)[:4] == ["ts", "level", "logger", "message"]
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "app", "GET /x")
    assert (line["latency_ms"], line["status"]) == (1.5, 200)
    assert line["ts"].endswith("Z")


def test_json_lines_leave_out_the_records_own_attributes() -> None:
    line = json.loads(
        JsonFormatter().format(record(event="x", _private=1, color_message="\x1b[1mm"))
    )
    assert set(line) == {"ts", "level", "logger", "message", "event"}


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (1795767072.0, "2026-11-27T08:11:12.000Z"),
        (1795767072.9996, "2026-11-27T08:11:12.999Z"),
        (1795767073.0421, "2026-11-27T08:11:13.042Z"),
    ],
)
def test_timestamps_are_utc_milliseconds(created: float, expected: str) -> None:
    made = record()
    made.created = created
    assert json.loads(JsonFormatter().format(made))["ts"] == expected
    assert TextFormatter().format(made).startswith(expected + " ")


def test_values_json_cannot_hold_are_rendered_as_text() -> None:
    made = record("caf\u00e9", path=Path("/tmp/x"))
    assert json.loads(JsonFormatter().format(made))["path"] == "/tmp/x"


def test_an_int_beyond_64_bits_falls_back_to_the_json_module() -> None:
    line = json.loads(JsonFormatter().format(record("caf\u00e9", big=2**70, small=1)))
    assert (line["message"], line["big"], line["small"]) == ("caf\u00e9", 2**70, 1)


def test_json_lines_carry_the_traceback() -> None:
    line = json.loads(JsonFormatter().format(failed_record()))
    assert line["level"] == "ERROR"
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert line["exc_info"].endswith("ValueError: boom")


def test_text_lines_read_as_text() -> None:
    made = record("GET %s", "/x", name="app.request", status=200, latency_ms=1.5)
    made.created = 1795767072.0
    assert TextFormatter().format(made) == (
        "2026-11-27T08:11:12.000Z INFO app.request: GET /x status=200 latency_ms=1.5"
    )
    made = record("plain")
    made.created = 1795767072.0
    assert TextFormatter().format(made) == "2026-11-27T08:11:12.000Z INFO app: plain"
    lines = TextFormatter().format(failed_record()).splitlines()
    assert lines[0].endswith(" ERROR app.request: failed")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "absl", "tensorflow")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after the test."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in LOGGERS)]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    switches = ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")
    saved_switches = {name: getattr(logging, name) for name in switches}
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    for name, value in saved_switches.items():
        setattr(logging, name, value)


@pytest.mark.usefixtures("restored_logging")
def test_configure_logging_routes_uvicorns_loggers_to_the_one_json_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.addHandler(logging.StreamHandler(sys.stdout))  # as uvicorn's log_config does
    uvicorn_access.propagate = False
    configure_logging("INFO", "json")
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert logging.getLogger(name).handlers == []
        assert logging.getLogger(name).propagate
    logging.getLogger("uvicorn.access").info("GET / 200", extra={"client": "127.0.0.1"})
    logging.getLogger("app.request").debug("not at INFO")
    logging.getLogger("tensorflow").info("chatter, quiet below DEBUG")
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = [json.loads(text) for text in captured.err.splitlines()]
    assert (line["logger"], line["message"], line["client"]) == (
        "uvicorn.access",
        "GET / 200",
        "127.0.0.1",
    )


@pytest.mark.usefixtures("restored_logging")
def test_configure_logging_in_text_at_debug_lets_tensorflow_speak(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("DEBUG", "text")
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, TextFormatter)
    logging.getLogger("tensorflow").debug("traced", extra={"op": "matmul"})
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" DEBUG tensorflow: traced op=matmul")
