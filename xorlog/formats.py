"""Log lines as JSON (one object per line) for machines, or as short text for a person.

``log.info("model swapped", extra={"model_version": 3})`` becomes, in JSON,
``{"ts": "...Z", "level": "INFO", "logger": "app.lifecycle.store", "message": "model swapped",
"model_version": 3}`` and, in text, ``09:07:20.912 INFO  model swapped  model_version=3``.
``auto`` picks text when the stream is a terminal and JSON otherwise (a pipe, a file, a
container's log driver), so a person at a terminal and a log collector both get theirs without
setting anything.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import sys
import time
from enum import StrEnum
from typing import Any, TextIO

import orjson


class LogFormat(StrEnum):
    """``XOR_LOG_FORMAT`` / ``--log-format``: what the lines look like."""

    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


def parse_log_format(value: Any) -> Any:
    """For a settings validator: the name in any case (``TEXT``), anything else unchanged."""
    return value.strip().lower() if isinstance(value, str) else value


def resolve_format(choice: LogFormat, stream: TextIO) -> LogFormat:
    """``choice`` itself, or for ``auto``: text if ``stream`` is a terminal, JSON otherwise."""
    if choice is not LogFormat.AUTO:
        return choice
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):  # no such method, or the stream is closed
        interactive = False
    return LogFormat.TEXT if interactive else LogFormat.JSON


# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key != "color_message"
    }


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def utc_timestamp(created: float) -> str:
    """``2026-11-30T09:07:20.912Z`` for a ``time.time()``: a JSON line's ``ts``."""
    # The date part is formatted once per second (a request log line is written per request).
    seconds = int(created)
    return f"{_utc_second(seconds)}{int((created - seconds) * 1000):03d}Z"


def _timestamp(record: logging.LogRecord) -> str:
    return utc_timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, extra fields, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(_extra_fields(record))
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(document, default=str).decode()
        except TypeError:  # what orjson refuses outright, e.g. an int beyond 64 bits
            return json.dumps(document, default=str)


@functools.lru_cache(maxsize=4)
def _local_second(seconds: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def local_stamp(created: float) -> str:
    """``09:07:20.912`` in local time for a ``time.time()``: a text line's stamp."""
    seconds = int(created)
    return f"{_local_second(seconds)}.{int((created - seconds) * 1000):03d}"


# Extra fields a person reading a terminal does not need: the event name is for machines (and
# the message says the same), a request id only matters when something went wrong.
_HIDDEN_IN_TEXT = frozenset({"event"})
_HIDDEN_BELOW_WARNING = frozenset({"request_id"})


def _said_in(value: Any, message: str) -> bool:
    """Whether ``value`` already stands in ``message`` as a word of its own."""
    text = str(value)
    return bool(text) and re.search(rf"(?<![\w.]){re.escape(text)}(?![\w.])", message) is not None


_REQUEST_FIELDS = ("method", "path", "status", "latency_ms")


def _request_line(fields: dict[str, Any]) -> str | None:
    """``GET /predict 200 1.2 ms`` (then ``: why`` for a client that went away) for a request's
    record, taking the fields it says out of ``fields``; None for any other record."""
    if fields.get("event") != "request" or not all(key in fields for key in _REQUEST_FIELDS):
        return None
    if not isinstance(fields["latency_ms"], int | float):
        return None
    method, path, status, latency = (fields.pop(key) for key in _REQUEST_FIELDS)
    line = f"{method} {path} {status} {latency:.1f} ms"
    if (disconnected := fields.pop("disconnected", None)) is not None:
        line += f": {disconnected}"
    return line


class TextFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL message  key=value ...`` in local time, for a person at a terminal.

    A request line reads ``GET /predict 200 1.2 ms``. The logger's name is shown for every level
    but INFO (for a warning, which part spoke matters); fields the message already states,
    empty ones and machine-only ones are left out (JSON keeps them all).
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = local_stamp(record.created)
        fields = _extra_fields(record)
        message = _request_line(fields) or record.getMessage()
        hidden = _HIDDEN_IN_TEXT
        if record.levelno < logging.WARNING:
            hidden = hidden | _HIDDEN_BELOW_WARNING
        shown = " ".join(
            f"{key}={value}"
            for key, value in fields.items()
            if key not in hidden and value is not None and not _said_in(value, message)
        )
        speaker = "" if record.levelno == logging.INFO else f"{record.name}: "
        line = f"{stamp} {record.levelname:<5} {speaker}{message}"
        if shown:
            line += "  " + shown
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def install_root_handler(
    level: str, log_format: LogFormat, stream: TextIO | None = None, *, replace: bool = True
) -> LogFormat:
    """Send every logger's records to ``stream`` (stderr) in ``log_format``, at ``level``;
    returns the format in use (``auto`` resolved).

    ``replace=False`` is ``logging.basicConfig``'s manners: if the root logger has handlers
    already (a test runner, a program calling our ``main``), they and its level are kept.
    Either way TensorFlow's Python-side INFO chatter (absl, "Assets written to") shows only
    at DEBUG.
    """
    target = sys.stderr if stream is None else stream
    resolved = resolve_format(log_format, target)
    root = logging.getLogger()
    if replace or not root.handlers:
        handler = logging.StreamHandler(target)
        handler.setFormatter(JsonFormatter() if resolved is LogFormat.JSON else TextFormatter())
        for existing in list(root.handlers):
            root.removeHandler(existing)
        root.addHandler(handler)
        root.setLevel(level)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(quiet)
    return resolved
