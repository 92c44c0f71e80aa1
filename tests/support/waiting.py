"""Polling: wait for what a server, a poller or a container does in its own time."""

from __future__ import annotations

import faulthandler
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

_BACKSTOP_SECONDS = 10.0


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 15.0,
    interval: float = 0.05,
    *,
    what: str = "the condition",
    retry_on: tuple[type[Exception], ...] = (),
) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds.

    An exception of a type in ``retry_on`` (e.g. a connection refused while a container
    starts) counts as "not yet" and is named in the failure; any other propagates.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except retry_on as exc:
            last_error = exc
        if time.monotonic() > deadline:
            error = f" (last error: {last_error!r})" if last_error is not None else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{error}")
        time.sleep(interval)


def finishes(call: Callable[[], T], timeout: float = 30.0, *, what: str = "the call") -> T:
    """``call()``'s result, run in a daemon thread: the test fails (rather than hangs) if it
    has not returned within ``timeout`` seconds, e.g. a read that blocks for good.

    A call blocked inside native code that holds the GIL (TensorFlow reading a FIFO does)
    stops every Python thread, this one too; then faulthandler's own C thread ends the test
    process (exit 1) ``_BACKSTOP_SECONDS`` later, dumping every thread's stack on stderr
    (shown with ``pytest -s``: pytest's capture is lost with the process).
    """
    outcome: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="finishes", daemon=True)
    faulthandler.dump_traceback_later(timeout + _BACKSTOP_SECONDS, exit=True)
    try:
        thread.start()
        thread.join(timeout)
    finally:
        faulthandler.cancel_dump_traceback_later()
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {timeout} s (blocked?)")
    if errors:
        raise errors[0]
    return outcome[0]
