"""``python -m app`` / ``xor-serve``: serve the published XOR model versions over HTTP.

Configured only by ``XOR_*`` environment variables (``--help`` lists them). Exit codes: 0 after
a graceful shutdown (SIGTERM/SIGINT), 1 if the server could not start (e.g. port in use),
2 for invalid settings.
"""

from __future__ import annotations

import logging
import sys

from app.config import ENV_PREFIX, RENAMED_VARIABLES, Settings, load_settings
from app.errors import ConfigError
from app.server.logging import LogFormat, configure_logging
from modelrepo.errors import UsageError
from xorlog.tfstartup import DEFAULT_MIN_LOG_LEVEL, VARIABLE, quiet_tensorflow_startup

PROG = "xor-serve"

log = logging.getLogger(__name__)


def _help() -> str:
    lines = [f"usage: {PROG}", "", (__doc__ or "").strip().splitlines()[0], "", "environment:"]
    formerly = {new: old for old, new in RENAMED_VARIABLES.items()}
    for name, field in Settings.model_fields.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        lines.append(f"  {variable:<30} {field.description} [{field.default}]")
        if variable in formerly:
            lines.append(f"  {'':<30} ({formerly[variable]}, its old name, is still read)")
    lines.append(
        f"  {VARIABLE:<30} TensorFlow's C++ log level, also applied to its start-up lines "
        f"(0 shows all, 3 only fatal errors) [{DEFAULT_MIN_LOG_LEVEL}]"
    )
    return "\n".join(lines)


def first_steps(url: str) -> str:
    """What a person who just started the server on ``url`` can try, from another terminal."""
    body = """'{"inputs": [0, 1]}'"""
    return "\n".join(
        [
            f"listening on {url} (Ctrl-C stops); try, from another terminal:",
            f"  curl -s {url}/health",
            f"  curl -s {url}/predict -H 'Content-Type: application/json' -d {body}",
            f"  curl -s {url}/metrics | grep '^xor_model_evaluation_accuracy'",
            f"  and {url}/docs in a browser",
        ]
    )


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
    quiet_tensorflow_startup()
    log_format = configure_logging(settings.log_level, settings.log_format)
    for notice in settings.deprecations:
        log.warning(notice, extra={"event": "deprecated_setting"})

    # Imported only now: it imports TensorFlow (seconds), not worth it for a bad setting.
    from app.api.dependencies import Services
    from app.main import create_app
    from app.server.access_log import AccessLogWriter
    from app.server.runner import serve

    def announce(url: str) -> None:
        # A person reading text gets the first commands to try; a machine, the address.
        message = first_steps(url) if log_format is LogFormat.TEXT else f"listening on {url}"
        log.info(message, extra={"event": "listening", "url": url})

    # The request lines in the format just set up, written off the request path.
    access_log = AccessLogWriter.if_enabled(log_format) if settings.access_log else None
    try:
        service = create_app(settings, access_log=access_log)
    except UsageError as exc:  # the S3 client's settings: an endpoint URL, a credentials file
        print(f"{PROG}: error: XOR_MODEL_SOURCE: {exc}", file=sys.stderr)
        if access_log is not None:
            access_log.close()
        return 2
    # From the first SIGTERM/SIGINT on, readiness fails (XOR_SHUTDOWN_DELAY_SECONDS).
    services: Services = service.state.services
    return serve(
        service,
        settings,
        on_listening=announce,
        on_stopping=services.store.begin_shutdown,
        # The request lines still queued are written before the last line: none is lost.
        on_stopped=access_log.close if access_log is not None else None,
        # Requests the HTTP layer refuses before any route (400, 408, 431) are counted too.
        on_refused=services.metrics.refused,
    )
