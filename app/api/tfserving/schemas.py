"""OpenAPI documentation of the TF Serving REST routes (``/v1``).

Request bodies are read and validated by hand (``app.api.tfserving.codec``), so the request
schema is plain JSON Schema for ``openapi_extra``; responses are rendered directly and these
models only document them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

_V1_NUMBER: dict[str, Any] = {
    "type": "number",
    "enum": [0, 1],
    "description": "0 or 1 (0.0 and 1.0 too); not true, null or a string",
}
_V1_PAIR: dict[str, Any] = {"type": "array", "items": _V1_NUMBER, "minItems": 2, "maxItems": 2}
_V1_ROWS: dict[str, Any] = {
    "type": "array",
    "items": _V1_PAIR,
    "minItems": 1,
    "description": "at most XOR_MAX_REQUEST_PAIRS pairs",
}
_SIGNATURE_NAME: dict[str, Any] = {
    "type": "string",
    "enum": ["serving_default"],
    "description": "optional; the model has only `serving_default`",
}

TFSERVING_PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "description": "TF Serving's row (`instances`) or columnar (`inputs`) format. No "
    "Content-Type is required (TF Serving clients often send none); the body must be JSON.",
    "content": {
        "application/json": {
            "schema": {
                "title": "TFServingPredictRequest",
                "type": "object",
                "properties": {
                    "signature_name": _SIGNATURE_NAME,
                    "instances": {
                        "oneOf": [
                            _V1_ROWS,
                            {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "properties": {"inputs": _V1_PAIR},
                                    "required": ["inputs"],
                                    "additionalProperties": False,
                                },
                            },
                        ]
                    },
                    "inputs": {
                        "oneOf": [
                            _V1_ROWS,
                            {
                                "type": "object",
                                "properties": {"inputs": _V1_ROWS},
                                "required": ["inputs"],
                                "additionalProperties": False,
                            },
                        ]
                    },
                },
                "additionalProperties": False,
                "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
                "description": "exactly one of `instances` and `inputs`",
            },
            "examples": {
                "row": {"value": {"instances": [[0, 1], [1, 1]]}},
                "named row": {"value": {"instances": [{"inputs": [0, 1]}, {"inputs": [1, 1]}]}},
                "columnar": {"value": {"inputs": [[0, 1], [1, 1]]}},
                "named columnar": {"value": {"inputs": {"inputs": [[0.0, 1.0], [1.0, 1.0]]}}},
            },
        }
    },
}


class VersionStatus(BaseModel):
    version: str = Field(description="the version number, as a string")
    state: str = Field(description="AVAILABLE for every loaded version")
    status: dict[str, str] = Field(description='{"error_code": "OK", "error_message": ""}')


class TFServingModelStatus(BaseModel):
    """GetModelStatusResponse: the loaded versions, newest first."""

    model_version_status: list[VersionStatus]


class TFServingModelSpec(BaseModel):
    name: str
    signature_name: str
    version: str


class TFServingModelMetadata(BaseModel):
    """GetModelMetadataResponse: the version's SignatureDefs as in its saved_model.pb."""

    model_spec: TFServingModelSpec
    metadata: dict[str, Any] = Field(
        description='{"signature_def": {"signature_def": {"serving_default": {"inputs": ..., '
        '"outputs": ..., "method_name": "tensorflow/serving/predict"}, ...}}}'
    )


class TFServingRowPredictions(BaseModel):
    """Answer to the row format: one object per instance, each output's row."""

    predictions: list[dict[str, list[Any]]]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "predictions": [
                        {
                            "class_ids": [1],
                            "classes": ["1"],
                            "logistic": [0.9997],
                            "logits": [8.2],
                            "probabilities": [0.0003, 0.9997],
                        }
                    ]
                }
            ]
        }
    }


class TFServingColumnarOutputs(BaseModel):
    """Answer to the columnar format: each output as a nested list over the batch."""

    outputs: dict[str, list[list[Any]]]
