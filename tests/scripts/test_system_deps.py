"""scripts/system-deps: the one list of system packages, installed only where missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

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


def test_it_lists_promtools_package() -> None:
    # tests/monitoring: promtool checks and unit-tests the alerts and the dashboard's queries.
    assert "prometheus" in listed_packages()


FAKE_APT_GET = """#!/bin/sh
# Records each call, and what policy-rc.d answers about starting a service during an install.
echo "apt-get $*" >>"$FAKE_RECORD"
case " $* " in *" install "*)
  if [ -x "$SYSTEM_DEPS_POLICY_RC_D" ]; then
    "$SYSTEM_DEPS_POLICY_RC_D" prometheus start
    echo "policy-rc.d says $?" >>"$FAKE_RECORD"
  else
    echo "no policy-rc.d" >>"$FAKE_RECORD"
  fi
  exit "${FAKE_INSTALL_STATUS:-0}";;
esac
"""


@pytest.fixture
def fake_system(tmp_path: Path) -> dict[str, str]:
    """An environment where nothing is installed and apt-get, update-rc.d and sudo are fakes
    that record their calls: the script runs its install path without touching the machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "apt-get": FAKE_APT_GET,
        "dpkg-query": "#!/bin/sh\nexit 1\n",  # nothing installed
        "update-rc.d": '#!/bin/sh\necho "update-rc.d $*" >>"$FAKE_RECORD"\n',
        "sudo": '#!/bin/sh\nexec "$@"\n',
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_RECORD": str(tmp_path / "record"),
        "SYSTEM_DEPS_POLICY_RC_D": str(tmp_path / "policy-rc.d"),
    }


def run_faked(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT)],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def record(environment: dict[str, str]) -> list[str]:
    return Path(environment["FAKE_RECORD"]).read_text().splitlines()


def test_no_service_starts_during_the_install_nor_at_the_next_boot(
    fake_system: dict[str, str],
) -> None:
    completed = run_faked(fake_system)
    assert completed.returncode == 0, completed.stderr
    packages = " ".join(listed_packages())
    assert completed.stderr == f"system-deps: installing {packages}\n"
    assert record(fake_system) == [
        "apt-get update -qq",
        f"apt-get install -y -qq --no-install-recommends {packages}",
        "policy-rc.d says 101",  # invoke-rc.d and deb-systemd-invoke: start denied
        "update-rc.d prometheus disable",
    ]
    # The script's own policy-rc.d is gone: services may start again once it is done.
    assert not Path(fake_system["SYSTEM_DEPS_POLICY_RC_D"]).exists()


def test_a_policy_rc_d_already_there_is_left_alone(fake_system: dict[str, str]) -> None:
    policy = Path(fake_system["SYSTEM_DEPS_POLICY_RC_D"])
    text = "#!/bin/sh\n# a container image's\nexit 101\n"
    policy.write_text(text)
    policy.chmod(0o755)
    completed = run_faked(fake_system)
    assert completed.returncode == 0, completed.stderr
    assert "policy-rc.d says 101" in record(fake_system)
    assert policy.read_text() == text


def test_a_failed_install_shows_its_output_and_leaves_no_policy_rc_d(
    fake_system: dict[str, str],
) -> None:
    completed = run_faked({**fake_system, "FAKE_INSTALL_STATUS": "100"})
    assert completed.returncode == 1
    assert "error: could not install" in completed.stderr
    assert "update-rc.d prometheus disable" not in record(fake_system)
    assert not Path(fake_system["SYSTEM_DEPS_POLICY_RC_D"]).exists()
