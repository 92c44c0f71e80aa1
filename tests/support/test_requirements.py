"""XOR_REQUIRE_SERVICES: a missing service skips a test, or fails it when required (CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.requirements import (
    REQUIRE_SERVICES,
    require,
    require_command,
    services_required,
)


@pytest.mark.parametrize(
    ("environ", "required"),
    [({}, False), ({REQUIRE_SERVICES: "0"}, False), ({REQUIRE_SERVICES: "1"}, True)],
)
def test_services_are_required_only_when_asked(environ: dict[str, str], required: bool) -> None:
    assert services_required(environ) is required


@pytest.mark.parametrize("value", ["", "yes", "true", " 1"])
def test_a_value_other_than_0_or_1_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match=f"XOR_REQUIRE_SERVICES must be 0 or 1, got {value!r}"):
        services_required({REQUIRE_SERVICES: value})


@pytest.mark.parametrize("required", [False, True])
def test_nothing_happens_when_nothing_is_missing(required: bool) -> None:
    require("a browser", None, required=required)


def test_a_missing_service_skips_with_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"^a browser unavailable: not on PATH$"):
        require("a browser", "not on PATH", required=False)


def test_a_missing_required_service_fails_with_the_reason() -> None:
    with pytest.raises(pytest.fail.Exception) as failure:
        require("a browser", "not on PATH", required=True)
    assert str(failure.value) == (
        "a browser unavailable: not on PATH (XOR_REQUIRE_SERVICES=1: required, not skipped)"
    )


def test_a_command_is_found_or_missing() -> None:
    path = Path(require_command("sh", "part of every system", required=True))
    assert path.name == "sh" and os.access(path, os.X_OK)
    with pytest.raises(pytest.fail.Exception, match=r"^`no-such-command-xor` unavailable: .*hint"):
        require_command("no-such-command-xor", "hint", required=True)


TEST_NEEDING_A_SERVICE = """
from tests.support.requirements import require

def test_needs_a_service():
    require("a service", "it is not running")
"""


@pytest.mark.parametrize(
    ("value", "exit_code", "outcome", "message"),
    [
        (None, 0, "1 skipped", "a service unavailable: it is not running"),
        ("0", 0, "1 skipped", "a service unavailable: it is not running"),
        ("1", 1, "1 failed", "XOR_REQUIRE_SERVICES=1: required, not skipped"),
    ],
)
def test_a_pytest_run_skips_or_fails_as_the_environment_says(
    tmp_path: Path, value: str | None, exit_code: int, outcome: str, message: str
) -> None:
    # A real run with this repository's conftest, whose autouse fixture clears every XOR_*
    # variable before each test: the setting must still hold inside the test.
    test_file = tmp_path / "test_needs_a_service.py"
    test_file.write_text(TEST_NEEDING_A_SERVICE)
    environment = {k: v for k, v in os.environ.items() if k != REQUIRE_SERVICES}
    if value is not None:
        environment[REQUIRE_SERVICES] = value
    plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-q", "-rsf", str(test_file)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == exit_code, completed.stdout + completed.stderr
    assert outcome in completed.stdout and message in completed.stdout, completed.stdout
