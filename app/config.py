"""Server settings from ``XOR_*`` environment variables, validated in one place at startup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError
from modelrepo.errors import UsageError
from modelrepo.s3 import parse_s3_url
from xorlog.formats import LogFormat, parse_log_format

__all__ = ["ENV_PREFIX", "RENAMED_VARIABLES", "LogFormat", "Settings", "load_settings"]

ENV_PREFIX = "XOR_"

# Variables renamed so that the two batch limits read apart: old name -> new name. The old
# names are still read, each with one deprecation warning at start-up (Settings.deprecations).
RENAMED_VARIABLES = {
    "XOR_MAX_BATCH_SIZE": "XOR_MAX_REQUEST_PAIRS",
    "XOR_BATCH_MAX_SIZE": "XOR_BATCH_MAX_PAIRS",
}
_OLD_NAMES = {new: old for old, new in RENAMED_VARIABLES.items()}


def _new_or_old(new: str) -> AliasChoices:
    """The variable ``new``, or the old name it replaced (``new`` wins the lookup)."""
    return AliasChoices(new, _OLD_NAMES[new])


class Settings(BaseSettings):
    """Settings of the model server; each field is the environment variable ``XOR_<NAME>``."""

    # populate_by_name: code passes field names (max_request_pairs=...), the environment the
    # variables' names.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", populate_by_name=True)
    # Set by _renamed_variables: which old variable names are in use.
    _deprecations: tuple[str, ...] = PrivateAttr(())

    model_dir: Path = Field(
        Path("models/xor"),
        description="Directory holding the published versions (`<dir>/<integer version>/`).",
    )
    model_source: str = Field(
        "",
        description="`s3://BUCKET/PREFIX` of a model repository on object storage: "
        "`XOR_MODEL_DIR` is then kept as a local cache of it (created if missing), endpoint "
        "and credentials from the standard AWS variables. Empty: serve `XOR_MODEL_DIR` as is.",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address the HTTP server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port the HTTP server listens on.")
    poll_interval_seconds: float = Field(
        2.0,
        gt=0,
        allow_inf_nan=False,
        description="How often the model directory is scanned for a newer version.",
    )
    model_name: str = Field(
        "xor",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=64,
        description="Model name in the TF Serving (`/v1/models/<name>`) and Open Inference "
        "Protocol (`/v2/models/<name>`) URLs.",
    )
    loaded_versions: int = Field(
        2,
        ge=1,
        description="How many of the newest valid versions are kept loaded: the newest serves "
        "unpinned requests, older ones answer requests pinned to `/versions/<n>`.",
    )
    max_request_pairs: int = Field(
        10_000,
        gt=0,
        validation_alias=_new_or_old("XOR_MAX_REQUEST_PAIRS"),
        description="Most pairs one prediction request may carry, whatever the API; a request "
        "with more is refused.",
    )
    min_accuracy: float = Field(
        0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Versions whose evaluated accuracy is below this are refused (0: off; "
        "match training's --min-accuracy to refuse weaker versions dropped in by hand).",
    )
    response_cache_rows: int = Field(
        1024,
        ge=0,
        le=1_000_000,
        description="Rows the response cache keeps per loaded version: a row the served "
        "version answered before is answered again from it, bit for bit, without a model call; "
        "0 turns it off. Requests are bit pairs, so 4 distinct rows exist: the default leaves "
        "room for a model with a wider input at ~1 KB a row (the oldest row makes room once "
        "full). Dropped with its version.",
    )
    batching: bool = Field(
        True,
        description="Run concurrent prediction requests together in one model call "
        "(no added wait when idle); false: one call per request.",
    )
    batch_max_pairs: int = Field(
        256,
        gt=0,
        validation_alias=_new_or_old("XOR_BATCH_MAX_PAIRS"),
        description="Most pairs one combined model call gathers from concurrent requests "
        "(a single larger request still runs, alone).",
    )
    request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="A request must arrive whole (headers and body) within this many seconds "
        "of its first byte: 408 or a closed connection otherwise.",
    )
    max_header_bytes: int = Field(
        65_536, gt=0, description="Most bytes of request line and headers accepted: 431 beyond."
    )
    max_body_bytes: int = Field(
        1_048_576,
        gt=0,
        description="Largest request body accepted (bytes); larger bodies get 413 unread.",
    )
    max_in_flight: int = Field(
        64,
        ge=1,
        description="Most prediction requests (any API) served at once; beyond it they are "
        "answered 503 `overloaded` with Retry-After at once, their bodies unread. Health, "
        "metrics and documentation are not counted.",
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: LogFormat = Field(
        LogFormat.AUTO,
        description="Log line format: `text` (readable lines), `json` (one object per line), "
        "or `auto`: text when stderr is a terminal, JSON otherwise.",
    )
    access_log: bool = Field(
        True,
        description="One INFO line per request (logger `app.request`), written off the request "
        "path by a thread (none lost at shutdown). Turn it off when a proxy in front logs "
        "requests already. Errors (5xx) and clients that went away (499) are logged either "
        "way, and the HTTP metrics count every request.",
    )
    shutdown_timeout_seconds: int = Field(
        20,
        ge=1,
        description="On SIGTERM/SIGINT the process stops accepting connections, lets in-flight "
        "requests finish and exits within this many seconds: requests still running after "
        "all but the last 3 seconds (at least 1 s) are cancelled.",
    )
    shutdown_delay_seconds: float = Field(
        0.0,
        ge=0,
        le=300,
        allow_inf_nan=False,
        description="On SIGTERM/SIGINT readiness (`/health`, `/health/ready`) answers 503 "
        "`shutting down` at once, while requests are still served for this many seconds "
        "(with `connection: close`), so that load balancers stop sending any first; then the "
        "drain of `XOR_SHUTDOWN_TIMEOUT_SECONDS` begins. Liveness stays 200; a second signal "
        "ends the delay. The orchestrator's grace period (compose `stop_grace_period`, "
        "Kubernetes `terminationGracePeriodSeconds`) must cover both. 0: drain at once.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            return value.upper()
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {value!r}")

    @field_validator("model_source")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        if "@" in value:  # never echo what may be credentials written into the URL
            raise ValueError("must be s3://BUCKET/PREFIX, without credentials in it")
        try:
            return parse_s3_url(value).url
        except UsageError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return parse_log_format(value)

    @model_validator(mode="wrap")
    @classmethod
    def _renamed_variables(
        cls, data: Any, handler: ModelWrapValidatorHandler[Settings]
    ) -> Settings:
        """Note each old variable name in use; refuse an old and a new name set apart.

        pydantic-settings reads either name (AliasChoices) but hands the value over under the
        new one whichever it found, so the environment itself says which names are set. Both
        set to different values is refused rather than settled: one of the two limits the
        operator wrote down would silently not apply. Both set alike only earns the warning.
        """
        notices = []
        for old, new in RENAMED_VARIABLES.items():
            old_value = _environment_value(old)
            if old_value is None:
                continue
            new_value = _environment_value(new)
            if new_value is None:
                notices.append(f"{old} is deprecated: rename it {new} (same meaning)")
            elif new_value.strip() != old_value.strip():
                raise ValueError(
                    f"{new}={new_value!r} and the deprecated {old}={old_value!r} are both "
                    f"set, to different values: remove {old}"
                )
            else:
                notices.append(f"{old} is deprecated and repeats {new}: remove it")
        settings = handler(data)
        settings._deprecations = tuple(notices)
        return settings

    @property
    def deprecations(self) -> tuple[str, ...]:
        """One message per deprecated variable name in use, for the start-up log."""
        return self._deprecations


def _environment_value(name: str) -> str | None:
    """The variable ``name`` as pydantic-settings would read it (case-insensitively)."""
    return next((value for key, value in os.environ.items() if key.upper() == name), None)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"]:
            # A field's name, or a variable's for one read by alias (RENAMED_VARIABLES); an
            # old name the user set is named as such.
            name = str(item["loc"][0]).upper()
            if not name.startswith(ENV_PREFIX):
                name = ENV_PREFIX + name
            old = _OLD_NAMES.get(name)
            if old and _environment_value(name) is None and _environment_value(old) is not None:
                name = f"{old} (the deprecated name of {name})"
            shown = "(not shown)" if "credentials" in message else repr(item.get("input"))
            lines.append(f"{name}: {message} (got {shown})")
        else:
            lines.append(message)
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (``overrides`` win); ConfigError names each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
