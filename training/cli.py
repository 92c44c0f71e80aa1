"""``python -m training`` / ``xor-train``: parse the flags, run the pipeline, exit with its code.

Exit codes: 0 published (or nothing to do with --if-missing), 1 failure, 2 bad settings, data
or model dir, 3 quality gate: below --min-accuracy, or the exported model answers the golden set
(the XOR truth table) wrongly (nothing published), 128+N stopped by signal N (a checkpoint was
saved first; run again to resume).
"""

from __future__ import annotations

import logging
import sys

from training import pipeline
from training.config import parse_settings
from training.errors import ConfigError, TrainingError
from xorlog.formats import LogFormat, install_root_handler
from xorlog.tfstartup import quiet_tensorflow_startup

log = logging.getLogger("training")


def _configure_logging(level: str, log_format: str) -> LogFormat:
    """Every logger to stderr, in the server's formats (text on a terminal, JSON otherwise,
    unless --log-format says); TensorFlow's Python-side INFO chatter only at DEBUG. Logging
    a host process set up already (a test runner calling main) is left as it is."""
    return install_root_handler(level, LogFormat(log_format), replace=False)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"xor-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    quiet_tensorflow_startup()
    _configure_logging(settings.log_level, settings.log_format)
    try:
        return pipeline.run(settings)
    except TrainingError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
