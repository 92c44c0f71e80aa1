"""The server's logs: every logger (ours, uvicorn's, TensorFlow's) to one stderr handler.

The line formats and the ``auto`` choice are shared with training (:mod:`xorlog.formats`);
what is the server's own is here: uvicorn's loggers routed to that handler, and the record
attributes no format prints not collected, for the per-request line's sake.
"""

from __future__ import annotations

import logging

from xorlog.formats import JsonFormatter, LogFormat, TextFormatter, install_root_handler

__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "configure_logging"]


def configure_logging(level: str, log_format: LogFormat | str) -> LogFormat:
    """Route every logger to stderr in ``log_format`` at ``level``; returns the format in use
    (``auto`` resolved: text on a terminal, JSON otherwise)."""
    resolved = install_root_handler(level, LogFormat(log_format))
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
    return resolved
