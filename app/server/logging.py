"""Structured logs: one JSON object per line (or readable text), fields passed as ``extra``.

``log.info("model swapped", extra={"model_version": 3})`` becomes
``{"ts": "...Z", "level": "INFO", "logger": "app.lifecycle.store", "message": "model swapped",
"model_version": 3}``. uvicorn's loggers propagate to the same root handler.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys
from typing import Any

import orjson

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
def _second(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def _timestamp(record: logging.LogRecord) -> str:
    # The date part is formatted once per second (a request log line is written per request).
    seconds = int(record.created)
    return f"{_second(seconds)}{int((record.created - seconds) * 1000):03d}Z"


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


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in _extra_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str, log_format: str) -> None:
    """Route every logger (ours, uvicorn's, TensorFlow's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # What no formatter here prints is not collected either: the caller's file/line (a stack
    # walk), thread and process names. The logging HOWTO's "Optimization" section names these
    # switches; they make the per-request line markedly cheaper (bench/NOTES.md).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    # uvicorn adds its own handlers only with a log_config; make sure its records reach ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # TensorFlow's INFO chatter (absl, "Fingerprint not found") only on DEBUG.
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(quiet)
