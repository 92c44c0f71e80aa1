"""Response models and the request schema, as documented in OpenAPI.

Request bodies are read and validated by hand (``app.api.service.predict``) to control status
codes and messages, so the request schema is plain JSON Schema given to ``openapi_extra``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.api.service.errors import ErrorResponse

_BIT: dict[str, Any] = {"type": "integer", "enum": [0, 1]}
_PAIR: dict[str, Any] = {
    "type": "array",
    "items": _BIT,
    "minItems": 2,
    "maxItems": 2,
    "description": 'two bits, each the JSON integer 0 or 1 (not 1.0, true or "1")',
}

PREDICT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "title": "PredictRequest",
                "oneOf": [
                    {
                        "title": "One pair",
                        "type": "object",
                        "properties": {"inputs": _PAIR},
                        "required": ["inputs"],
                        "additionalProperties": False,
                    },
                    {
                        "title": "Batch of pairs",
                        "type": "object",
                        "properties": {
                            "instances": {
                                "type": "array",
                                "items": _PAIR,
                                "minItems": 1,
                                "description": "at most XOR_MAX_REQUEST_PAIRS pairs (default "
                                "10000), answered in order",
                            }
                        },
                        "required": ["instances"],
                        "additionalProperties": False,
                    },
                ],
            },
            "examples": {
                "one pair": {"value": {"inputs": [0, 1]}},
                "batch": {"value": {"instances": [[0, 0], [0, 1], [1, 0], [1, 1]]}},
            },
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries in the error shape for ``statuses``."""
    descriptions = {
        400: "Malformed request: not JSON, not UTF-8, NaN/Infinity, duplicate keys",
        404: "Not found",
        413: "Request body larger than XOR_MAX_BODY_BYTES",
        415: "Content-Type is not application/json",
        422: "Valid JSON, invalid request; `details` names each offending location",
        500: "Internal error",
        503: "`model_unavailable`: no model is loaded yet; `overloaded`: XOR_MAX_IN_FLIGHT "
        "predictions are in flight (both with Retry-After)",
    }
    return {
        status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses
    }


class PredictionItem(BaseModel):
    inputs: list[int] = Field(description="the pair, as sent")
    class_id: int = Field(description="predicted XOR class, 0 or 1")
    probabilities: list[float] = Field(description="[P(class 0), P(class 1)]")


class PredictResponse(BaseModel):
    model_version: int = Field(description="version that computed every prediction")
    predictions: list[PredictionItem] = Field(description="one per pair, in request order")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "model_version": 1764230400,
                    "predictions": [
                        {"inputs": [0, 1], "class_id": 1, "probabilities": [0.0003, 0.9997]}
                    ],
                }
            ]
        }
    }


# The labels' part of /health and /model (routes.labels_summary), declared once for both.
LabelVersions = Annotated[
    dict[str, int],
    Field(
        default_factory=dict,
        description="labels.json's labels, each with the version serving it (a label whose "
        "version cannot be served stays on the one that served it); empty without labels.json",
    ),
]
CanaryPercent = Annotated[
    int,
    Field(
        default=0, description="share of requests naming no version served by the `canary` label"
    ),
]
LabelProblems = Annotated[
    dict[str, str],
    Field(
        default_factory=dict,
        description="labels not served by the version labels.json names, and why",
    ),
]
LabelsError = Annotated[
    str | None,
    Field(
        default=None,
        description="why labels.json cannot be used (the last good labels apply), or null",
    ),
]


class HealthOk(BaseModel):
    status: Literal["ok"]
    model_version: int
    loaded_at: str = Field(description="when the served version was swapped in (UTC, ...Z)")
    labels: LabelVersions
    canary_percent: CanaryPercent
    label_problems: LabelProblems
    labels_error: LabelsError

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "status": "ok",
                    "model_version": 1764230400,
                    "loaded_at": "2026-11-27T05:00:01.234Z",
                }
            ]
        }
    }


class HealthUnavailable(BaseModel):
    status: Literal["unavailable"]
    reason: str = Field(
        description="why the server is not ready: why no model is served, or `shutting down` "
        "(SIGTERM received: requests are still answered for `XOR_SHUTDOWN_DELAY_SECONDS`)"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [{"status": "unavailable", "reason": "no version published in models/xor"}]
        }
    }


class Liveness(BaseModel):
    status: Literal["ok"]


class TensorInfoModel(BaseModel):
    name: str
    dtype: str
    shape: list[int | None]


class SignatureModel(BaseModel):
    key: str
    inputs: list[TensorInfoModel]
    outputs: list[TensorInfoModel]


class RequestLimits(BaseModel):
    """What this server accepts in one request (its configuration), for clients to size their
    requests by instead of learning it from a 4xx."""

    max_request_pairs: int = Field(
        description="most pairs one prediction request may carry, whatever the API "
        "(`XOR_MAX_REQUEST_PAIRS`): 422 beyond"
    )
    max_body_bytes: int = Field(
        description="largest request body accepted (`XOR_MAX_BODY_BYTES`): 413 beyond"
    )
    max_header_bytes: int = Field(
        description="most bytes of request line and headers (`XOR_MAX_HEADER_BYTES`): 431 beyond"
    )
    request_timeout_seconds: float = Field(
        description="a request must arrive whole within this many seconds of its first byte "
        "(`XOR_REQUEST_TIMEOUT_SECONDS`): 408 beyond, or the connection closed if its body "
        "stalls"
    )


class ModelInfo(BaseModel):
    model_version: int
    path: str
    loaded_at: str
    load_seconds: float
    signature: SignatureModel
    evaluation: dict[str, Any] = Field(description="the version's evaluation.json, verbatim")
    limits: RequestLimits
    labels: LabelVersions
    canary_percent: CanaryPercent
    label_problems: LabelProblems
    labels_error: LabelsError


class MetricsJson(BaseModel):
    model_version: int
    evaluated_at: str | None
    evaluation: dict[str, float] = Field(description="every numeric metric of evaluation.json")


PREDICT_QUERY_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "version",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
        "description": "pin a loaded version (404 `version_not_loaded` otherwise); not with "
        "`label`",
    },
    {
        "name": "label",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"},
        "description": "pin the version serving a label of labels.json, e.g. `stable` or "
        "`canary` (404 `label_not_found` if none does); not with `version`",
    },
]
