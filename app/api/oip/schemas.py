"""OpenAPI documentation of the Open Inference Protocol routes (``/v2``).

Request bodies are read and validated by hand (``app.api.oip.codec``), so the request schema
is plain JSON Schema for ``openapi_extra``; responses are rendered directly and these models
only document them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

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
                                    "description": "[n, 2], n at most XOR_MAX_REQUEST_PAIRS",
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
