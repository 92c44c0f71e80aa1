"""The service's own error shape: ``{"error": {"code", "message", "details"}}``.

Every 4xx/5xx of ``/predict``, ``/health``, ``/metrics``, ``/model`` and of any path outside the
protocols' prefixes is rendered here; the pydantic models document it in OpenAPI.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field
from starlette.responses import Response

from app.errors import ApiError


def error_body(error: ApiError) -> bytes:
    """``error`` in the service's JSON error shape."""
    document = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": [{"loc": d.loc, "msg": d.msg} for d in error.details],
        }
    }
    # The stdlib's ASCII-escaped JSON: the message may echo a client's non-ASCII text.
    return json.dumps(document, separators=(",", ":")).encode()


def render_service_error(error: ApiError) -> Response:
    """``error`` as the service answers it: its status, headers and JSON error shape."""
    return Response(
        error_body(error),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


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
