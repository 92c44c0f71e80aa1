"""``python -m training`` / ``xor-train``: parse the flags, run the pipeline, exit with its code.

Exit codes: 0 published (or nothing to do with --if-missing), 1 failure, 2 bad settings, data
or model dir, 3 quality gate: below --min-accuracy, or the exported model answers the golden set
(the XOR truth table) wrongly (nothing published), 128+N stopped by signal N (a checkpoint was
saved first; run again to resume).
"""

from __future__ import annotations

import logging
import os
import sys

from training import pipeline
from training.config import parse_settings
from training.errors import ConfigError, TrainingError

log = logging.getLogger("training")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # TensorFlow's own INFO chatter (absl sharding notes, "Assets written to") only on DEBUG.
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(quiet)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"xor-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    _configure_logging(settings.log_level)
    try:
        return pipeline.run(settings)
    except TrainingError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
