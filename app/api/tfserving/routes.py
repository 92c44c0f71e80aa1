"""TF Serving REST API (``/v1/models/<name>...``), as in TF Serving's ``api_rest.md``.

Model status, metadata and ``:predict``; the body format lives in ``app.api.tfserving.codec``.
Errors under ``/v1`` are answered in TF Serving's ``{"error": "..."}`` shape.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from app.api.common import (
    NotFoundMessages,
    json_response,
    path_parameters,
    protocol_error_responses,
    render_protocol_error,
    resolve_label,
    resolve_model,
)
from app.api.dependencies import Services, ServicesDep
from app.api.errors import ErrorShape
from app.api.hot import HotRoute, PredictionRequest, one_pair_response
from app.api.jsonbody import ExactForm, decode_json
from app.api.tfserving.codec import parse_predict_request, render_predictions
from app.api.tfserving.schemas import (
    TFSERVING_PREDICT_BODY,
    TFServingColumnarOutputs,
    TFServingModelMetadata,
    TFServingModelStatus,
    TFServingRowPredictions,
)
from app.core.prediction import ModelOutputs
from app.errors import NotFound
from app.lifecycle.loading import LoadedModel
from app.lifecycle.signature import SIGNATURE_KEY

PREFIX = "/v1"
router = APIRouter(prefix=f"{PREFIX}/models", tags=["TF Serving REST (v1)"])
ERROR_SHAPE = ErrorShape(prefix=PREFIX, render=render_protocol_error)


def _servable(name: str, version: str | None) -> NotFound:
    wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
    return NotFound(f"Servable not found for request: {wanted}")


_NOT_FOUND = NotFoundMessages(unknown_model=_servable, unknown_version=_servable)


def _names(request: Request) -> tuple[str, str]:
    return request.path_params["model_name"], request.path_params["version"]


def _resolve(services: Services, name: str, version: str | None) -> LoadedModel:
    return resolve_model(services, name, version, _NOT_FOUND)


def _version_status(model: LoadedModel) -> dict[str, Any]:
    return {
        "version": str(model.version),
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }


def _tensor_info_json(info: meta_graph_pb2.TensorInfo) -> dict[str, Any]:
    # Field order and defaults as TF Serving prints a TensorInfo proto (int64 as strings).
    return {
        "dtype": types_pb2.DataType.Name(info.dtype),
        "tensor_shape": {
            "dim": [{"size": str(dim.size), "name": dim.name} for dim in info.tensor_shape.dim],
            "unknown_rank": bool(info.tensor_shape.unknown_rank),
        },
        "name": info.name,
    }


def signature_defs_json(model: LoadedModel) -> dict[str, Any]:
    """The model's SignatureDefs as TF Serving's metadata shows them: ``serving_default``
    first, then the others (e.g. ``__saved_model_init_op``) by name."""
    signatures = model.signature_defs
    keys = sorted(signatures, key=lambda key: (key != SIGNATURE_KEY, key))
    return {
        key: {
            "inputs": {
                n: _tensor_info_json(signatures[key].inputs[n])
                for n in sorted(signatures[key].inputs)
            },
            "outputs": {
                n: _tensor_info_json(signatures[key].outputs[n])
                for n in sorted(signatures[key].outputs)
            },
            "method_name": signatures[key].method_name,
        }
        for key in keys
    }


def _metadata(name: str, model: LoadedModel) -> dict[str, Any]:
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": {"signature_def": signature_defs_json(model)}},
    }


def _version_from_path(request: PredictionRequest) -> str | None:
    version: str | None = request.path_params.get("version")
    return version


def _model_from_path(
    request: PredictionRequest, services: Services, *, predict: bool
) -> LoadedModel:
    """The model a /v1 URL names: by label, by version, or (neither) the served one."""
    name = request.path_params["model_name"]
    label: str | None = request.path_params.get("label")
    if label is not None:
        return resolve_label(services, name, label, _NOT_FOUND)
    return resolve_model(services, name, _version_from_path(request), _NOT_FOUND, predict=predict)


# The most common body, one row of integer bits, read without the full parse
# (app.api.jsonbody.ExactForm); its answer is kept beside the cached row under ONE_ROW_FORM.
ONE_ROW_BODY = ExactForm('{"instances": [[BIT, BIT]]}')
ONE_ROW_FORM = "tfserving-row"


def _render_row_format(outputs: ModelOutputs) -> bytes:
    return orjson.dumps(render_predictions(outputs, True))


async def handle_predict(request: PredictionRequest, services: Services) -> Response:
    """Row (`instances`) or columnar (`inputs`) format; bits as 0/1 or 0.0/1.0."""
    model = _model_from_path(request, services, predict=True)
    body = await request.body()
    pair = ONE_ROW_BODY.bits(body)
    if pair is not None:
        return await one_pair_response(services, model, pair, ONE_ROW_FORM, _render_row_format)
    document = decode_json(body)
    batch, row_format = parse_predict_request(document, services.settings.max_request_pairs)
    outputs = await services.prediction.predict_async(batch, model)
    return json_response(render_predictions(outputs, row_format))


# --- routes ---------------------------------------------------------------------------------
# ``:predict`` is part of the last path segment: Starlette matches "{model_name}:predict" with
# the colon as a literal, so these are declared like any other path.

_PREDICT = {
    "response_model": TFServingRowPredictions | TFServingColumnarOutputs,
    "responses": protocol_error_responses(400, 404, 413, 500, 503),
}


@router.post(
    "/{model_name}:predict",
    summary="TF Serving Predict on the newest loaded version",
    **_PREDICT,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": TFSERVING_PREDICT_BODY,
        "parameters": [*path_parameters("model_name")],
    },
)
async def predict(request: Request, services: ServicesDep) -> Response:
    """Row (`instances`) or columnar (`inputs`) format; bits as 0/1 or 0.0/1.0."""
    return await handle_predict(request, services)


@router.post(
    "/{model_name}/versions/{version}:predict",
    summary="TF Serving Predict on a pinned version",
    **_PREDICT,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": TFSERVING_PREDICT_BODY,
        "parameters": [*path_parameters("model_name", "version")],
    },
)
async def predict_version(request: Request, services: ServicesDep) -> Response:
    """As `:predict`, on the given loaded version (404 once it is no longer loaded)."""
    return await handle_predict(request, services)


@router.post(
    "/{model_name}/labels/{label}:predict",
    summary="TF Serving Predict on the version a label names",
    **_PREDICT,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": TFSERVING_PREDICT_BODY,
        "parameters": [*path_parameters("model_name", "label")],
    },
)
async def predict_label(request: Request, services: ServicesDep) -> Response:
    """As `:predict`, on the version serving the label (labels.json: e.g. `stable`, `canary`);
    404 for a label no loaded version serves."""
    return await handle_predict(request, services)


@router.get(
    "/{model_name}",
    summary="TF Serving model status: every loaded version",
    response_model=TFServingModelStatus,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name")},
)
async def model_status(request: Request, services: ServicesDep) -> Response:
    """The loaded versions, newest first, each AVAILABLE."""
    _resolve(services, request.path_params["model_name"], None)
    loaded = services.store.loaded
    return json_response({"model_version_status": [_version_status(m) for m in loaded]})


@router.get(
    "/{model_name}/versions/{version}",
    summary="TF Serving model status of one version",
    response_model=TFServingModelStatus,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name", "version")},
)
async def version_status(request: Request, services: ServicesDep) -> Response:
    """AVAILABLE while the version is loaded; 404 otherwise."""
    model = _resolve(services, *_names(request))
    return json_response({"model_version_status": [_version_status(model)]})


@router.get(
    "/{model_name}/labels/{label}",
    summary="TF Serving model status of the version a label names",
    response_model=TFServingModelStatus,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name", "label")},
)
async def label_status(request: Request, services: ServicesDep) -> Response:
    """AVAILABLE, for the version serving the label; 404 for a label no loaded version serves."""
    model = _model_from_path(request, services, predict=False)
    return json_response({"model_version_status": [_version_status(model)]})


@router.get(
    "/{model_name}/metadata",
    summary="TF Serving model metadata of the newest loaded version",
    response_model=TFServingModelMetadata,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name")},
)
async def metadata(request: Request, services: ServicesDep) -> Response:
    """`model_spec` and the SignatureDefs (`serving_default`: inputs, outputs, dtypes, shapes)."""
    model = _resolve(services, request.path_params["model_name"], None)
    return json_response(_metadata(request.path_params["model_name"], model))


@router.get(
    "/{model_name}/versions/{version}/metadata",
    summary="TF Serving model metadata of one version",
    response_model=TFServingModelMetadata,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name", "version")},
)
async def version_metadata(request: Request, services: ServicesDep) -> Response:
    """As `/metadata`, for the given loaded version."""
    model = _resolve(services, *_names(request))
    return json_response(_metadata(request.path_params["model_name"], model))


@router.get(
    "/{model_name}/labels/{label}/metadata",
    summary="TF Serving model metadata of the version a label names",
    response_model=TFServingModelMetadata,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name", "label")},
)
async def label_metadata(request: Request, services: ServicesDep) -> Response:
    """As `/metadata`, for the version serving the label."""
    model = _model_from_path(request, services, predict=False)
    return json_response(_metadata(request.path_params["model_name"], model))


HOT_ROUTES = (
    HotRoute(f"{PREFIX}/models/{{model_name}}:predict", handle_predict, render_protocol_error),
    HotRoute(
        f"{PREFIX}/models/{{model_name}}/versions/{{version}}:predict",
        handle_predict,
        render_protocol_error,
    ),
    HotRoute(
        f"{PREFIX}/models/{{model_name}}/labels/{{label}}:predict",
        handle_predict,
        render_protocol_error,
    ),
)
