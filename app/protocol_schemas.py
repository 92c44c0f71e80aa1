"""OpenAPI documentation of the TF Serving (/v1) and Open Inference Protocol (/v2) routes.

As for ``/predict``, request bodies are read and validated by hand (app.tfserving, app.oip), so
the request schemas are plain JSON Schema for ``openapi_extra``; responses are rendered
directly and these models only document them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.errors import ProtocolErrorResponse

_PROTOCOL_ERRORS = {
    400: "Bad request: not JSON, unknown fields, wrong shape, datatype or value (not 0 or 1)",
    404: "Unknown model name, or a version that is not loaded",
    405: "Method not allowed",
    413: "Request body larger than XOR_MAX_BODY_BYTES",
    500: "Internal error",
    503: "No model is loaded yet (with Retry-After)",
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


# --- TF Serving REST -----------------------------------------------------------------------

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
    "description": "at most XOR_MAX_BATCH_SIZE pairs",
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


# --- Open Inference Protocol (KServe V2) -----------------------------------------------------

# One element of an input tensor's `data`: a number, or a boolean for BOOL.
_DATA_VALUE: dict[str, Any] = {"type": ["number", "boolean"]}

OIP_INFER_BODY: dict[str, Any] = {
    "required": True,
    "description": "An inference request. No Content-Type is required. With the binary tensor "
    "data extension (tritonclient's default) the body is this JSON header followed by the raw "
    "input bytes (little-endian, in input order); the `Inference-Header-Content-Length` header "
    "then gives the JSON header's length and each binary input carries "
    "`parameters.binary_data_size` instead of `data`.",
    "content": {
        "application/json": {
            "schema": {
                "title": "InferenceRequest",
                "type": "object",
                "properties": {
                    "id": {"type": ["string", "null"], "description": "echoed in the response"},
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "binary_data_output": {
                                "type": "boolean",
                                "description": "default for every output's `binary_data`",
                            }
                        },
                        # As the protocol defines $parameters; unknown ones are ignored.
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                    },
                    "inputs": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "enum": ["inputs"]},
                                "shape": {
                                    "type": "array",
                                    "prefixItems": [
                                        {"type": "integer", "minimum": 1},
                                        {"const": 2},
                                    ],
                                    "minItems": 2,
                                    "maxItems": 2,
                                    "description": "[n, 2], n at most XOR_MAX_BATCH_SIZE",
                                },
                                "datatype": {
                                    "type": "string",
                                    "enum": ["FP32", "FP64", "INT32", "INT64", "BOOL"],
                                },
                                "parameters": {
                                    "type": "object",
                                    "properties": {"binary_data_size": {"type": "integer"}},
                                    "additionalProperties": False,
                                },
                                "data": {
                                    "type": "array",
                                    # Flat [a, b, ...] or nested [[a, b], ...]: shape [n, 2]
                                    # allows no deeper nesting (and an open item schema makes
                                    # fuzzers generate arbitrarily deep JSON).
                                    "items": {
                                        "anyOf": [
                                            _DATA_VALUE,
                                            {"type": "array", "items": _DATA_VALUE},
                                        ]
                                    },
                                    "description": "n*2 values, each 0 or 1 (false or true "
                                    "for BOOL), flat row-major or nested",
                                },
                            },
                            "required": ["name", "shape", "datatype"],
                            "additionalProperties": False,
                        },
                    },
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {
                                    "type": "string",
                                    "enum": [
                                        "logits",
                                        "logistic",
                                        "probabilities",
                                        "class_ids",
                                        "classes",
                                    ],
                                },
                                "parameters": {
                                    "type": "object",
                                    "properties": {"binary_data": {"type": "boolean"}},
                                    "additionalProperties": False,
                                },
                            },
                            "required": ["name"],
                            "additionalProperties": False,
                        },
                        "description": "optional; all five outputs when omitted",
                    },
                },
                "required": ["inputs"],
                "additionalProperties": False,
            },
            "examples": {
                "flat": {
                    "value": {
                        "id": "42",
                        "inputs": [
                            {
                                "name": "inputs",
                                "shape": [2, 2],
                                "datatype": "FP32",
                                "data": [0, 1, 1, 1],
                            }
                        ],
                    }
                },
                "nested, one output": {
                    "value": {
                        "inputs": [
                            {
                                "name": "inputs",
                                "shape": [2, 2],
                                "datatype": "INT64",
                                "data": [[0, 1], [1, 1]],
                            }
                        ],
                        "outputs": [{"name": "class_ids"}],
                    }
                },
            },
        },
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "binary tensor data extension: JSON header, then raw input bytes",
        },
    },
}

INFERENCE_HEADER_PARAMETER: dict[str, Any] = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 1},
    "description": "binary tensor data extension: length of the JSON header at the start of "
    "the body; the bytes after it are the binary inputs",
}


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the variable batch dimension")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="the loaded versions, newest first")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size` when the output is sent as binary data"
    )
    data: list[Any] | None = Field(None, description="flat row-major values (JSON outputs)")


class InferenceResponse(BaseModel):
    """The JSON header; binary outputs follow it (see `Inference-Header-Content-Length`)."""

    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, if it sent one")
    outputs: list[ResponseOutput]
