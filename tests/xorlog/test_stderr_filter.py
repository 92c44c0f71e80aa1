"""The stderr filter: TF_CPP_MIN_LOG_LEVEL applied to absl's lines, everything else untouched."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from xorlog import stderr_filter
from xorlog.stderr_filter import ABSL_NOTICE, copy_lines, dropped

# As TensorFlow 2.21 prints them (before absl knows the time zone), and as absl does later.
INFO = (
    b"I0000 00:00:1796029456.034827    5420 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results due to floating-point round-off errors "
    b"from different computation orders. To turn them off, set the environment variable "
    b"`TF_ENABLE_ONEDNN_OPTS=0`.\n"
)
WARNING = b"W1114 09:32:22.280168   13509 loader.cc:12] a warning\n"
ERROR = b"E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN\n"
FATAL = b"F0000 00:00:1758131045.203198 3722035 cpu_feature_guard.cc:1] Check failed: AVX\n"
NOTICE = ABSL_NOTICE + b"\n"
OTHER = [
    b"Traceback (most recent call last):\n",
    b"2026-11-30 09:04:15,642 INFO training.pipeline: train data\n",
    b'{"ts":"2026-11-30T09:07:20.601Z","message":"I0000 00:00:1.000000 1 a.cc:1] x"}\n',
    b"  I0000 00:00:1796029456.034827    5420 port.cc:153] indented, so not absl's\n",
    b"no newline at the end",
]


@pytest.mark.parametrize(
    ("level", "gone"),
    [
        (0, []),
        (1, [INFO]),
        (2, [INFO, WARNING, NOTICE]),
        (3, [INFO, WARNING, NOTICE, ERROR]),
    ],
)
def test_each_level_drops_what_tensorflow_drops_from_its_own_logging(
    level: int, gone: list[bytes]
) -> None:
    for line in (INFO, WARNING, NOTICE, ERROR, FATAL, *OTHER):
        assert dropped(line, level) == (line in gone), (level, line)


def test_copy_keeps_order_and_bytes() -> None:
    source = io.BytesIO(b"".join([NOTICE, INFO, b"caf\xc3\xa9\r\n", ERROR, FATAL, OTHER[-1]]))
    sink = io.BytesIO()
    copy_lines(source, sink, 2)
    assert sink.getvalue() == b"caf\xc3\xa9\r\n" + ERROR + FATAL + OTHER[-1]


def test_the_script_passes_on_what_it_keeps_and_ends_with_its_input() -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-S", stderr_filter.__file__, "2"],
        input=NOTICE + INFO + WARNING + ERROR + b"plain\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0
    assert completed.stdout == ERROR + b"plain\n"
    assert completed.stderr == b""
