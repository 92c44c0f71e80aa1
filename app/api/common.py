"""What the wire-compatible APIs (TF Serving ``/v1``, Open Inference Protocol ``/v2``) share.

Both name a model and optionally a version in the URL, answer errors in the
``{"error": "<message>"}`` shape their clients expect (400 where the service says 422: both
protocols answer bad input with 400), and render JSON bodies directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.api.dependencies import Services
from app.errors import ApiError, InvalidInput, LabelNotFound, NotFound
from app.lifecycle.discovery import MAX_VERSION
from app.lifecycle.loading import LoadedModel
from modelrepo.format import label_name_problem

# A version in a URL: digits only ("²" is not one), at most int64's 19; MAX_VERSION bounds it.
_VERSION = re.compile(r"[0-9]{1,19}")


def json_response(document: Any, status: int = 200) -> Response:
    """``document`` as a JSON response (orjson), rendered directly: a route's
    ``response_model`` only documents it and does not re-validate every row."""
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")


def render_protocol_error(error: ApiError) -> Response:
    """``error`` as the protocols answer it: ``{"error": "<message>"}``."""
    status = 400 if isinstance(error, InvalidInput) else error.status
    # The stdlib's ASCII-escaped JSON: the message may echo a client's non-ASCII text.
    body = json.dumps({"error": error.message}, separators=(",", ":")).encode()
    return Response(
        body,
        status_code=status,
        headers=error.headers,
        media_type="application/json",
    )


def version_number(version: str) -> int | None:
    """The version a URL segment names (within int64, as the store's are), or None."""
    if not _VERSION.fullmatch(version):
        return None
    number = int(version)
    return number if number <= MAX_VERSION else None


@dataclass(frozen=True)
class NotFoundMessages:
    """How a protocol says "no such model" and "no such version" (its clients match on them)."""

    unknown_model: Callable[[str, str | None], NotFound]
    unknown_version: Callable[[str, str], NotFound]


def check_model_name(
    services: Services, name: str, version: str | None, messages: NotFoundMessages
) -> None:
    """404 unless ``name`` is the served model's name (XOR_MODEL_NAME)."""
    if name != services.settings.model_name:
        raise messages.unknown_model(name, version)


def resolve_model(
    services: Services,
    name: str,
    version: str | None,
    messages: NotFoundMessages,
    *,
    predict: bool = False,
) -> LoadedModel:
    """The model a URL names. 404 for another name or a version that is not a number,
    VersionNotLoaded (404) for a version outside the loaded window, ModelUnavailable (503)
    while nothing is loaded. Naming no version: the served one, or for a prediction
    (``predict``) the canary for its share of requests."""
    check_model_name(services, name, version, messages)
    if version is None:
        return services.prediction.route() if predict else services.prediction.model()
    number = version_number(version)
    if number is None:
        raise messages.unknown_version(name, version)
    return services.prediction.model(number)


def resolve_label(
    services: Services, name: str, label: str, messages: NotFoundMessages
) -> LoadedModel:
    """The model serving the label a URL names: 404 for another model name, and
    LabelNotFound (404) for a label that is malformed or that no loaded version serves."""
    check_model_name(services, name, None, messages)
    if label_name_problem(label) is not None:
        services.prediction.model()  # 503 while nothing is loaded, as for every request
        raise LabelNotFound(f"label {label[:64]!r} is not served by any loaded version")
    return services.prediction.route(label=label)


class ProtocolErrorResponse(BaseModel):
    """The body of every 4xx/5xx of the TF Serving (/v1) and Open Inference (/v2) routes."""

    error: str = Field(description="what was wrong, naming the offending location and value")

    model_config = {
        "json_schema_extra": {"examples": [{"error": "instances[1][1]: must be 0 or 1, got 2"}]}
    }


_PROTOCOL_ERRORS = {
    400: "Bad request: not JSON, unknown fields, wrong shape, datatype or value (not 0 or 1)",
    404: "Unknown model name, a version that is not loaded, or a label no loaded version serves",
    405: "Method not allowed",
    413: "Request body larger than XOR_MAX_BODY_BYTES",
    500: "Internal error",
    503: "No model is loaded yet, or XOR_MAX_IN_FLIGHT predictions are in flight (with "
    "Retry-After)",
}


def protocol_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries in the protocols' ``{"error": "..."}`` shape."""
    return {
        status: {"model": ProtocolErrorResponse, "description": _PROTOCOL_ERRORS[status]}
        for status in statuses
    }


def path_parameters(*names: str) -> list[dict[str, Any]]:
    """OpenAPI path parameters read from ``request.path_params`` by hand.

    Declared this way rather than as handler arguments, so that FastAPI does not document a 422
    validation error these routes never answer.
    """
    described = {
        "model_name": "the model's name (XOR_MODEL_NAME, default `xor`)",
        "version": "a loaded version number",
        "model_version": "a loaded version number",
        "label": "a version label of labels.json (e.g. `stable`, `canary`) that a loaded "
        "version serves",
    }
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": described[name],
        }
        for name in names
    ]
