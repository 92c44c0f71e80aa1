"""Copy stdin to stdout line by line, leaving out absl log lines below a TF_CPP_MIN_LOG_LEVEL.

Run as a script by :mod:`xorlog.tfstartup` (``python -I -S stderr_filter.py LEVEL``, standard
library only) while TensorFlow is being imported, with the process's stderr as its stdin and
the real stderr as its stdout. It exits when its stdin closes: when the import is over, or when
the importing process died, after passing on everything that process wrote first.

What it leaves out is exactly what ``TF_CPP_MIN_LOG_LEVEL`` means for TensorFlow's own C++
logging (0 everything, 1 no INFO, 2 no WARNING either, 3 no ERROR either), applied to the lines
in absl's format (``I0000 00:00:1796029456.034827    5420 port.cc:153] ...``), which the
copies of absl inside TensorFlow's libraries print without reading that variable. absl's
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR" notice
counts as the WARNING it says it is. FATAL lines and everything else pass unchanged.
"""

from __future__ import annotations

import re
import signal
import sys
from typing import BinaryIO

# absl's prefix: severity, MMDD, time, thread id, file:line. Before its time zone is known the
# time reads 00:00:<seconds since the epoch>, as in the lines above.
_ABSL_LINE = re.compile(rb"([IWE])\d{4} \d\d:\d\d:\d+\.\d{6} +\d+ [^\s:\]]+:\d+\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2}
ABSL_NOTICE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)


def dropped(line: bytes, min_level: int) -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL ``min_level`` silences ``line`` (one line, any ending)."""
    if line.rstrip(b"\r\n") == ABSL_NOTICE:
        return min_level > _SEVERITY[b"W"]
    match = _ABSL_LINE.match(line)
    return match is not None and _SEVERITY[match[1]] < min_level


def copy_lines(source: BinaryIO, sink: BinaryIO, min_level: int) -> None:
    """Each line of ``source`` that is not dropped, to ``sink`` as soon as it is complete."""
    for line in source:
        if not dropped(line, min_level):
            sink.write(line)
            sink.flush()


def main(argv: list[str]) -> int:
    # Ctrl-C or a SIGTERM to the whole process group must not end the copy before the importing
    # process has finished writing: the end of stdin ends it, whatever the importer's fate.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        copy_lines(sys.stdin.buffer, sys.stdout.buffer, int(argv[1]))
    except OSError:  # the real stderr is gone: nothing is left to show
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
