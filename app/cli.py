"""``python -m app`` / ``xor-serve``: serve the published XOR model versions over HTTP.

Configured only by ``XOR_*`` environment variables (``--help`` lists them). Exit codes: 0 after
a graceful shutdown (SIGTERM/SIGINT), 1 if the server could not start (e.g. port in use),
2 for invalid settings.
"""

from __future__ import annotations

import os
import sys

from app.config import ENV_PREFIX, Settings, load_settings
from app.errors import ConfigError
from app.server.logging import configure_logging

PROG = "xor-serve"


def _help() -> str:
    lines = [f"usage: {PROG}", "", (__doc__ or "").strip().splitlines()[0], "", "environment:"]
    for name, field in Settings.model_fields.items():
        lines.append(f"  {ENV_PREFIX}{name.upper():<26} {field.description} [{field.default}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(_help())
        return 0
    if args:
        print(f"{PROG}: error: no arguments expected (got {args!r}); see --help", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_logging(settings.log_level, settings.log_format)

    # Imported only now: it imports TensorFlow (seconds), not worth it for a bad setting.
    from app.main import create_app
    from app.server.runner import serve

    return serve(create_app(settings), settings)
