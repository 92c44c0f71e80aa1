"""What a test needs from outside Python (a browser, a container engine): a skip with the reason
where it is missing, or, with ``XOR_REQUIRE_SERVICES=1`` (as ``.ci/run`` sets it), a failure, so
that CI cannot pass by skipping what it was meant to run.

The variable is read when this module is first imported, during collection: the autouse fixture
in tests/conftest.py removes every ``XOR_*`` variable before each test runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Final

import pytest

REQUIRE_SERVICES: Final = "XOR_REQUIRE_SERVICES"


def services_required(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``environ`` asks for missing services to fail the tests: ``XOR_REQUIRE_SERVICES``
    is ``1`` (``0`` or unset: skip them)."""
    value = environ.get(REQUIRE_SERVICES, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{REQUIRE_SERVICES} must be 0 or 1, got {value!r}")
    return value == "1"


REQUIRED: Final = services_required()


def require(what: str, problem: str | None, *, required: bool = REQUIRED) -> None:
    """Nothing if ``problem`` is None; otherwise skip the test, saying that ``what`` is missing
    and why, or, when ``required``, fail it the same way."""
    if problem is None:
        return
    message = f"{what} unavailable: {problem}"
    if required:
        pytest.fail(f"{message} ({REQUIRE_SERVICES}=1: required, not skipped)", pytrace=False)
    pytest.skip(message)


def require_command(name: str, hint: str, *, required: bool = REQUIRED) -> str:
    """The path of command ``name``, or the test skips (fails when ``required``); ``hint`` says
    how to install it."""
    path = shutil.which(name)
    require(f"`{name}`", None if path else f"not on PATH ({hint})", required=required)
    assert path is not None
    return path
