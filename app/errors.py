"""Errors of the model server, and the one JSON shape every HTTP error is rendered in.

AppError                        anything app/ raises on purpose
├── ConfigError                 an invalid XOR_* setting (the CLI prints it and exits 2)
├── ModelLoadError              a version directory that cannot be served (logged, skipped)
└── ApiError                    an HTTP error: carries ``status`` and ``code``
    ├── MalformedRequest        400 malformed_request: not JSON, not UTF-8, NaN/Infinity
    ├── NotFound                404 not_found
    │   └── VersionNotLoaded    404 version_not_loaded: a pinned version outside the window
    ├── MethodNotAllowed        405 method_not_allowed
    ├── PayloadTooLarge         413 payload_too_large (checked before anything is parsed)
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── InvalidInput            422 invalid_input, with one detail per offending location
    ├── ModelUnavailable        503 model_unavailable, with Retry-After
    └── InternalError           500 internal_error (a bug; logged with its traceback)

Every 4xx/5xx of the service's own routes has the body
``{"error": {"code": ..., "message": ..., "details": [{"loc": ..., "msg": ...}]}}``;
Starlette's own 404/405 are translated by :func:`http_exception_to_api_error`.

The wire-compatible routes (TF Serving REST under ``/v1/``, Open Inference Protocol under
``/v2``) keep their protocol's error shape instead: ``{"error": "<message>"}``, with 400 where
the service says 422 (both protocols answer bad input with 400). The same errors are raised
everywhere; :func:`error_response` picks the rendering by the request path, so the one
exception handler and both middlewares render every family correctly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response


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

    def body(self) -> bytes:
        """The response body in the one error shape."""
        document = {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": [{"loc": d.loc, "msg": d.msg} for d in self.details],
            }
        }
        return json.dumps(document, separators=(",", ":")).encode()


class MalformedRequest(ApiError):
    status = 400
    code = "malformed_request"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class VersionNotLoaded(NotFound):
    code = "version_not_loaded"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class InvalidInput(ApiError):
    status = 422
    code = "invalid_input"


class ModelUnavailable(ApiError):
    status = 503
    code = "model_unavailable"


class InternalError(ApiError):
    status = 500
    code = "internal_error"


def http_exception_to_api_error(exc: StarletteHTTPException) -> ApiError:
    """Starlette's routing errors (unknown path, wrong method) in our hierarchy."""
    if exc.status_code == 404:
        return NotFound("no such endpoint", headers=exc.headers)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"method not allowed; allowed: {allowed}", headers=exc.headers)
    error = ApiError(str(exc.detail), headers=exc.headers)
    # An HTTP status we do not raise ourselves: keep it, with a generic code.
    error.status = exc.status_code
    error.code = "http_error"
    return error


# The error shape as pydantic models: used only to document it in OpenAPI.


class ErrorDetailModel(BaseModel):
    loc: str = Field(description="where in the request, e.g. instances[3][1]")
    msg: str = Field(description="what is wrong there, naming the offending value")


class ErrorBodyModel(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. invalid_input")
    message: str = Field(description="human-readable summary")
    details: list[ErrorDetailModel] = Field(description="one entry per offending location")


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx response of the service."""

    error: ErrorBodyModel

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "error": {
                        "code": "invalid_input",
                        "message": "1 invalid value in the request",
                        "details": [{"loc": "instances[3][1]", "msg": "must be 0 or 1, got 2"}],
                    }
                }
            ]
        }
    }


class ProtocolErrorResponse(BaseModel):
    """The body of every 4xx/5xx of the TF Serving (/v1) and Open Inference (/v2) routes."""

    error: str = Field(description="what was wrong, naming the offending location and value")

    model_config = {
        "json_schema_extra": {"examples": [{"error": "instances[1][1]: must be 0 or 1, got 2"}]}
    }


class ErrorStyle(Enum):
    SERVICE = "service"  # {"error": {"code", "message", "details"}}
    PROTOCOL = "protocol"  # {"error": "<message>"}, as TF Serving and KServe/Triton answer


def error_style(path: str) -> ErrorStyle:
    """The error shape of the route family ``path`` belongs to (matched routes or not)."""
    if path in ("/v1", "/v2") or path.startswith(("/v1/", "/v2/")):
        return ErrorStyle.PROTOCOL
    return ErrorStyle.SERVICE


def _protocol_body(error: ApiError) -> tuple[int, bytes]:
    status = 400 if isinstance(error, InvalidInput) else error.status
    return status, json.dumps({"error": error.message}, separators=(",", ":")).encode()


def error_response(error: ApiError, path: str) -> Response:
    """The one rendering of an error: status, headers and the error shape of ``path``'s family."""
    if error_style(path) is ErrorStyle.PROTOCOL:
        status, body = _protocol_body(error)
    else:
        status, body = error.status, error.body()
    return Response(
        content=body, status_code=status, headers=error.headers, media_type="application/json"
    )
