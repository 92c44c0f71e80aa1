"""Polling: wait for what a server, a poller or a container does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


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
