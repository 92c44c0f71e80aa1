"""TensorFlow's start-up notices: silenced by default, an explicit level honoured, nothing real
hidden, and the numerics switch (TF_ENABLE_ONEDNN_OPTS) never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.support import REPO
from xorlog.tfstartup import (
    VARIABLE,
    _FilteredImport,
    min_log_level,
    quiet_tensorflow_startup,
    stderr_through_filter,
)

NOTICE = "All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = "oneDNN custom operations are on"


def without_tf_variables() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "XOR_"))}


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


IMPORT_QUIETLY = """
    import os
    from xorlog.tfstartup import quiet_tensorflow_startup

    print("level", quiet_tensorflow_startup())
    import tensorflow as tf

    # The module's loader is TensorFlow's own: the filter left no trace on it.
    print("loader", type(tf.__loader__).__name__, tf.__spec__.loader is tf.__loader__)
    print("onednn", os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    print("sum", float(tf.reduce_sum(tf.constant([1.0, 2.0]))))
"""


def test_importing_tensorflow_prints_nothing_by_default() -> None:
    completed = python(IMPORT_QUIETLY, without_tf_variables())
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "level 2",
        "loader SourceFileLoader True",
        "onednn None",
        "sum 3.0",
    ]
    assert completed.stderr == ""


def test_an_explicit_level_is_honoured_and_shows_both_libraries_notices() -> None:
    """At 0 everything shows: the notice comes once per library that carries its own absl
    (libtensorflow_framework.so.2 and the profiler plugin), so twice; oneDNN stays on."""
    completed = python(IMPORT_QUIETLY, {**without_tf_variables(), VARIABLE: "0"})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[0] == "level 0"
    assert completed.stderr.count(NOTICE) == 2
    assert completed.stderr.count(ONEDNN) == 2


@pytest.mark.parametrize(
    ("value", "level"), [("2", 2), (" 3", 3), ("1abc", 1), ("abc", 0), ("", 0), ("-1", -1)]
)
def test_the_level_is_read_as_tensorflow_reads_it(value: str, level: int) -> None:
    assert min_log_level(value) == level


@pytest.mark.parametrize(("value", "kept"), [(None, "2"), ("", "2"), ("  ", "2"), ("0", "0")])
def test_the_default_is_2_unless_the_user_set_a_value(
    monkeypatch: pytest.MonkeyPatch, value: str | None, kept: str
) -> None:
    if value is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, value)
    quiet_tensorflow_startup()
    assert os.environ[VARIABLE] == kept


def test_nothing_is_installed_once_tensorflow_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow  # noqa: F401  (imported: the hook could no longer see the import)

    monkeypatch.setenv(VARIABLE, "2")
    quiet_tensorflow_startup()
    assert not any(isinstance(finder, _FilteredImport) for finder in sys.meta_path)


ABSL_INFO = "I0000 00:00:1796029456.034827    5420 port.cc:153] oneDNN custom operations are on."
ABSL_ERROR = "E0000 00:00:1796029456.034827    5420 loader.cc:1] a real error"


def test_inside_the_filter_real_errors_and_python_output_pass_in_order(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with stderr_through_filter(2):
        os.write(2, f"WARNING: {NOTICE}\n{ABSL_INFO}\n".encode())
        print("from python", file=sys.stderr)
        os.write(2, f"{ABSL_ERROR}\n".encode())
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == f"from python\n{ABSL_ERROR}\nafter\n"


def test_a_crash_inside_the_filter_still_shows_what_was_written() -> None:
    """An abort while TensorFlow loads (a CPU it was not built for, say) must not take its
    message with it: the filter is another process, and passes on what it got."""
    completed = python(
        f"""
        import os
        from xorlog.tfstartup import stderr_through_filter

        with stderr_through_filter(2):
            os.write(2, b"{ABSL_INFO}\\n")
            os.write(2, b"F0000 00:00:1.000000 1 cpu_feature_guard.cc:1] Check failed: AVX\\n")
            os.abort()
        """,
        without_tf_variables(),
    )
    assert completed.returncode == -signal.SIGABRT
    assert "Check failed: AVX" in completed.stderr
    assert "oneDNN" not in completed.stderr


def test_without_a_stderr_the_filter_steps_aside() -> None:
    completed = python(
        """
        import os
        from xorlog.tfstartup import stderr_through_filter

        os.close(2)
        with stderr_through_filter(2):
            print("ran")
        """,
        without_tf_variables(),
    )
    assert completed.returncode == 0
    assert completed.stdout == "ran\n"
