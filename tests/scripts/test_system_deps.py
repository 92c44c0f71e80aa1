"""scripts/system-deps: the one list of system packages, installed only where missing."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.support import REPO

SCRIPT = REPO / "scripts" / "system-deps"


def listed_packages() -> list[str]:
    """The script's PACKAGES, as bash reads them (comments and all)."""
    read = 'eval "$(sed -n "/^PACKAGES=(/,/^)/p" "$1")"; printf "%s\\n" "${PACKAGES[@]}"'
    completed = subprocess.run(
        ["bash", "-c", read, "bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.split()


def installed(package: str) -> bool:
    query = ["dpkg-query", "--show", "--showformat=${db:Status-Status}", package]
    completed = subprocess.run(query, capture_output=True, text=True, check=False)
    return completed.stdout == "installed"


def test_the_script_is_strict_bash() -> None:
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in SCRIPT.read_text()
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_it_lists_what_the_tests_and_benchmarks_run() -> None:
    # chromium: the browser tests; wrk: make bench and make soak.
    assert {"chromium", "wrk"} <= set(listed_packages())


def test_with_everything_installed_it_does_nothing_and_says_nothing() -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: no dpkg-query")
    missing = [package for package in listed_packages() if not installed(package)]
    if missing:  # running it would install them: not a test's business
        pytest.skip(f"not installed here: {', '.join(missing)} (run scripts/system-deps)")
    start = time.monotonic()
    completed = subprocess.run([str(SCRIPT)], capture_output=True, text=True, check=False)
    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "", "")
    assert time.monotonic() - start < 5  # no apt-get update, no apt-get install
