"""Errors of the model server: what went wrong, in domain terms.

AppError                        anything app/ raises on purpose
├── ConfigError                 an invalid XOR_* setting (the CLI prints it and exits 2)
├── ModelLoadError              a version directory that cannot be served (logged, skipped)
└── ApiError                    an error a client is answered with: carries ``status`` and ``code``
    ├── MalformedRequest        400 malformed_request: not JSON, not UTF-8, NaN/Infinity
    ├── NotFound                404 not_found
    │   ├── VersionNotLoaded    404 version_not_loaded: a pinned version outside the window
    │   └── LabelNotFound       404 label_not_found: a pinned label no loaded version serves
    ├── MethodNotAllowed        405 method_not_allowed
    ├── RequestTimeout          408 request_timeout: headers not received in time (HTTP layer)
    ├── PayloadTooLarge         413 payload_too_large (checked before anything is parsed)
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── InvalidInput            422 invalid_input, with one detail per offending location
    ├── HeadersTooLarge         431 headers_too_large (HTTP layer)
    ├── ModelUnavailable        503 model_unavailable, with Retry-After
    ├── Overloaded              503 overloaded: XOR_MAX_IN_FLIGHT predictions already running
    └── InternalError           500 internal_error (a bug; logged with its traceback)

How an error looks on the wire is each API's business (``app.api``): the service's own routes
answer ``{"error": {"code", "message", "details"}}``, the TF Serving and Open Inference Protocol
routes their protocols' ``{"error": "..."}``. The same errors are raised everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class AppError(Exception):
    """Base class of every error app/ raises on purpose."""


class ConfigError(AppError):
    """Invalid settings; the message names each offending XOR_* variable."""


class ModelLoadError(AppError):
    """A version directory that cannot be served: unreadable, wrong signature, bad evaluation."""


@dataclass(frozen=True)
class Detail:
    """One offending location in a request, e.g. ``instances[3][1]``."""

    loc: str
    msg: str


class ApiError(AppError):
    """An error answered over HTTP with ``status`` and the JSON error shape."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: list[Detail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = dict(headers or {})


class MalformedRequest(ApiError):
    status = 400
    code = "malformed_request"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class VersionNotLoaded(NotFound):
    code = "version_not_loaded"


class LabelNotFound(NotFound):
    code = "label_not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(ApiError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class InvalidInput(ApiError):
    status = 422
    code = "invalid_input"


class HeadersTooLarge(ApiError):
    status = 431
    code = "headers_too_large"


class ModelUnavailable(ApiError):
    status = 503
    code = "model_unavailable"


class Overloaded(ApiError):
    status = 503
    code = "overloaded"


class InternalError(ApiError):
    status = 500
    code = "internal_error"
