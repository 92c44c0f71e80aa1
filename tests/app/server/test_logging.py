"""Where configure_logging sends every logger's records, and in which format.

The formats themselves are shared with training and tested in tests/xorlog/test_formats.py.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from app.server.logging import JsonFormatter, LogFormat, TextFormatter, configure_logging

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
    assert configure_logging("INFO", "json") is LogFormat.JSON
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
    assert configure_logging("DEBUG", "text") is LogFormat.TEXT
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, TextFormatter)
    logging.getLogger("tensorflow").debug("traced", extra={"op": "matmul"})
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" DEBUG tensorflow: traced  op=matmul")


@pytest.mark.usefixtures("restored_logging")
def test_auto_writes_json_where_no_person_reads(capsys: pytest.CaptureFixture[str]) -> None:
    """Under pytest stderr is a capture file, as it is a pipe under compose or systemd."""
    assert configure_logging("INFO", LogFormat.AUTO) is LogFormat.JSON
    logging.getLogger("app.x").info("hello")
    assert json.loads(capsys.readouterr().err)["message"] == "hello"
