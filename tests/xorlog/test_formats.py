"""Log formats: JSON for machines, short text for a person, and ``auto`` choosing between them."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from xorlog.formats import (
    JsonFormatter,
    LogFormat,
    TextFormatter,
    install_root_handler,
    parse_log_format,
    resolve_format,
)


def record(
    message: str = "m", *args: Any, name: str = "app", level: int = logging.INFO, **extra: Any
) -> logging.LogRecord:
    """A record as ``logging.getLogger(name).log(level, message, *args, extra=extra)`` makes."""
    made = logging.LogRecord(name, level, __file__, 1, message, args or None, None)
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


def local_time(created: float) -> str:
    seconds = int(created)
    milliseconds = int((created - seconds) * 1000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{milliseconds:03d}"


# --- auto ---------------------------------------------------------------------------------


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """A real terminal (a pseudo-terminal's far end), as a text stream."""
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as stream:
        yield stream
    os.close(leader)


def test_auto_is_text_on_a_terminal(terminal: TextIO) -> None:
    assert terminal.isatty()
    assert resolve_format(LogFormat.AUTO, terminal) is LogFormat.TEXT


def test_auto_is_json_on_a_pipe_or_a_file(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as _, os.fdopen(write_end, "w") as pipe:
        assert resolve_format(LogFormat.AUTO, pipe) is LogFormat.JSON
    with (tmp_path / "log").open("w") as file:
        assert resolve_format(LogFormat.AUTO, file) is LogFormat.JSON


def test_auto_is_json_on_a_closed_stream() -> None:
    stream = io.StringIO()
    stream.close()
    assert resolve_format(LogFormat.AUTO, stream) is LogFormat.JSON


@pytest.mark.parametrize("choice", [LogFormat.JSON, LogFormat.TEXT])
def test_an_explicit_format_is_kept_anywhere(choice: LogFormat, terminal: TextIO) -> None:
    assert resolve_format(choice, terminal) is choice
    assert resolve_format(choice, io.StringIO()) is choice


@pytest.mark.parametrize(("value", "parsed"), [("TEXT", "text"), (" Json ", "json"), (3, 3)])
def test_format_names_are_read_in_any_case(value: Any, parsed: Any) -> None:
    assert parse_log_format(value) == parsed


# --- JSON ---------------------------------------------------------------------------------


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
def test_json_timestamps_are_utc_milliseconds(created: float, expected: str) -> None:
    made = record()
    made.created = created
    assert json.loads(JsonFormatter().format(made))["ts"] == expected


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


# --- text ---------------------------------------------------------------------------------

CREATED = 1795767072.25


def text(made: logging.LogRecord) -> str:
    made.created = CREATED
    return TextFormatter().format(made)


def test_a_request_line_reads_method_path_status_and_milliseconds() -> None:
    made = record(
        "%s %s %d",
        "GET",
        "/predict",
        200,
        name="app.request",
        event="request",
        method="GET",
        path="/predict",
        status=200,
        latency_ms=1.234,
        request_id="0123456789abcdef0123456789abcdef",
    )
    assert text(made) == f"{local_time(CREATED)} INFO  GET /predict 200 1.2 ms"


def test_a_request_that_went_wrong_keeps_its_request_id() -> None:
    made = record(
        "%s %s %d: %s",
        "POST",
        "/predict",
        499,
        "the client disconnected while reading",
        name="app.request",
        level=logging.WARNING,
        event="request",
        method="POST",
        path="/predict",
        status=499,
        latency_ms=10.0,
        request_id="abc123",
        disconnected="the client disconnected while reading",
    )
    assert text(made) == (
        f"{local_time(CREATED)} WARNING app.request: "
        "POST /predict 499 10.0 ms: the client disconnected while reading  request_id=abc123"
    )


def test_text_shows_the_fields_the_message_does_not_already_say() -> None:
    made = record(
        "model version %d is now served",
        17,
        name="app.lifecycle.store",
        event="model_swapped",
        model_version=17,
        previous_version=None,
        path="/srv/models/xor/17",
        accuracy=1.0,
    )
    assert text(made) == (
        f"{local_time(CREATED)} INFO  model version 17 is now served  "
        "path=/srv/models/xor/17 accuracy=1.0"
    )


def test_a_value_only_part_of_a_word_is_not_taken_as_said() -> None:
    made = record("loaded 170 rows", name="training", count=17, version=1)
    assert text(made).endswith("INFO  loaded 170 rows  count=17 version=1")


def test_text_names_the_logger_for_every_level_but_info() -> None:
    assert text(record("plain", name="app.x")) == f"{local_time(CREATED)} INFO  plain"
    debug = record("traced", name="tensorflow", level=logging.DEBUG, op="matmul")
    assert text(debug) == f"{local_time(CREATED)} DEBUG tensorflow: traced  op=matmul"


def test_text_lines_carry_the_traceback() -> None:
    lines = TextFormatter().format(failed_record()).splitlines()
    assert lines[0].endswith(" ERROR app.request: failed")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


def test_text_time_is_local_time_of_day_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "IST-5:30")  # POSIX for UTC+05:30, no time zone database needed
    time.tzset()
    try:
        made = record()
        made.created = 1795767192.9996  # 08:13:12.999 UTC (a second no other test formats)
        assert TextFormatter().format(made).startswith("13:43:12.999 INFO ")
    finally:
        monkeypatch.undo()
        time.tzset()


# --- the root handler ---------------------------------------------------------------------


@pytest.fixture
def restored_root() -> Iterator[logging.Logger]:
    """install_root_handler changes process-wide state: put it back after the test."""
    loggers = [logging.getLogger(name) for name in ("", "absl", "tensorflow")]
    saved = [(logger, logger.handlers[:], logger.level) for logger in loggers]
    yield logging.getLogger()
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def test_install_replaces_the_root_handlers(restored_root: logging.Logger) -> None:
    stream = io.StringIO()
    assert install_root_handler("WARNING", LogFormat.AUTO, stream) is LogFormat.JSON
    (handler,) = restored_root.handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert restored_root.level == logging.WARNING
    logging.getLogger("somewhere").info("below the level")
    logging.getLogger("somewhere").warning("said", extra={"n": 1})
    (line,) = stream.getvalue().splitlines()
    assert (json.loads(line)["message"], json.loads(line)["n"]) == ("said", 1)


def test_tensorflows_python_chatter_shows_only_at_debug(restored_root: logging.Logger) -> None:
    install_root_handler("INFO", LogFormat.TEXT, io.StringIO())
    assert logging.getLogger("tensorflow").level == logging.WARNING
    assert logging.getLogger("absl").level == logging.WARNING
    install_root_handler("DEBUG", LogFormat.TEXT, io.StringIO())
    assert logging.getLogger("tensorflow").level == logging.DEBUG


def test_without_replace_a_configured_host_keeps_its_logging(
    restored_root: logging.Logger,
) -> None:
    hosts = logging.StreamHandler(io.StringIO())
    restored_root.handlers[:] = [hosts]
    restored_root.setLevel(logging.DEBUG)
    assert install_root_handler("ERROR", LogFormat.TEXT, io.StringIO(), replace=False) == "text"
    assert restored_root.handlers == [hosts]
    assert restored_root.level == logging.DEBUG
    restored_root.handlers[:] = []
    install_root_handler("ERROR", LogFormat.TEXT, io.StringIO(), replace=False)
    (handler,) = restored_root.handlers
    assert isinstance(handler.formatter, TextFormatter)
    assert restored_root.level == logging.ERROR
