"""Open Inference Protocol V2 (KServe / Triton) under ``/v2``, with binary tensor data.

Health, server and model metadata, and ``infer``; the wire format lives in
``app.api.oip.codec``. Errors under ``/v2`` are answered in the protocol's
``{"error": "..."}`` shape.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.common import (
    NotFoundMessages,
    check_model_name,
    json_response,
    path_parameters,
    protocol_error_responses,
    render_protocol_error,
    resolve_model,
    version_number,
)
from app.api.dependencies import Services, ServicesDep
from app.api.errors import ErrorShape
from app.api.hot import HotRoute, PredictionRequest, one_pair_response, request_header
from app.api.jsonbody import ExactForm
from app.api.oip.codec import (
    HEADER_LENGTH,
    InferRequest,
    parse_infer_request,
    render_infer_response,
    split_body,
)
from app.api.oip.schemas import (
    INFERENCE_HEADER_PARAMETER,
    OIP_INFER_BODY,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
)
from app.core.bits import Pair, one_pair_batch
from app.core.prediction import OUTPUT_NAMES, ModelOutputs
from app.errors import NotFound
from app.lifecycle.loading import LoadedModel

PREFIX = "/v2"
router = APIRouter(prefix=PREFIX, tags=["Open Inference Protocol (v2)"])
ERROR_SHAPE = ErrorShape(prefix=PREFIX, render=render_protocol_error)

SERVER_NAME = "xor-model-server"
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "tensorflow_savedmodel"
# As ASGI servers give header names: lower-case bytes.
_HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode("latin-1")
_TF_TO_OIP = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}


def _names(request: Request) -> tuple[str, str]:
    return request.path_params["model_name"], request.path_params["model_version"]


def _unknown_model(name: str, _version: str | None) -> NotFound:
    return NotFound(f"Request for unknown model: {name[:64]!r} is not found")


def _unknown_version(name: str, version: str) -> NotFound:
    return NotFound(f"Request for unknown model: {name!r} version {version[:20]!r} is not found")


_NOT_FOUND = NotFoundMessages(unknown_model=_unknown_model, unknown_version=_unknown_version)


def _resolve(services: Services, name: str, version: str | None) -> LoadedModel:
    return resolve_model(services, name, version, _NOT_FOUND)


def _tensor_metadata(name: str, dtype: str, shape: list[int | None]) -> dict[str, Any]:
    datatype = "BYTES" if dtype == "string" else _TF_TO_OIP.get(dtype, dtype.upper())
    return {"name": name, "datatype": datatype, "shape": [-1 if s is None else s for s in shape]}


def _model_metadata(services: Services, model: LoadedModel) -> dict[str, Any]:
    info = model.signature_info
    outputs = {o.name: o for o in info.outputs}
    return {
        "name": services.settings.model_name,
        "versions": [str(m.version) for m in services.store.loaded],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(i.name, i.dtype, i.shape) for i in info.inputs],
        "outputs": [
            _tensor_metadata(name, outputs[name].dtype, outputs[name].shape)
            for name in OUTPUT_NAMES
        ],
    }


_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "true (empty body)", "content": None},
    400: {"description": "false (empty body), as the protocol asks: 4xx means not ready"},
}


def _health(ready: bool) -> Response:
    return Response(status_code=200 if ready else 400)


def _model_ready(services: Services, name: str, version: str | None) -> Response:
    check_model_name(services, name, version, _NOT_FOUND)
    if version is None:
        return _health(services.store.current is not None)
    number = version_number(version)
    if number is None:
        raise _unknown_version(name, version)
    return _health(services.store.get(number) is not None)


@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata(request: Request) -> Response:
    """Name, version and the protocol extensions supported (`binary_tensor_data`)."""
    return json_response(
        {"name": SERVER_NAME, "version": request.app.version, "extensions": list(EXTENSIONS)}
    )


@router.get("/health/live", summary="Server live", responses=_HEALTH_RESPONSES)
async def live() -> Response:
    """200 while the process serves HTTP."""
    return _health(True)


@router.get("/health/ready", summary="Server ready", responses=_HEALTH_RESPONSES)
async def ready(services: ServicesDep) -> Response:
    """200 while a model is loaded; 400 (not ready) otherwise."""
    return _health(services.store.current is not None)


@router.get(
    "/models/{model_name}",
    summary="Model metadata of the newest loaded version",
    response_model=ModelMetadata,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name")},
)
async def model_metadata(request: Request, services: ServicesDep) -> Response:
    """Name, loaded versions, platform, and the input and outputs with datatypes and shapes."""
    model = _resolve(services, request.path_params["model_name"], None)
    return json_response(_model_metadata(services, model))


@router.get(
    "/models/{model_name}/versions/{model_version}",
    summary="Model metadata of one loaded version",
    response_model=ModelMetadata,
    responses=protocol_error_responses(404, 503),
    openapi_extra={"parameters": path_parameters("model_name", "model_version")},
)
async def version_metadata(request: Request, services: ServicesDep) -> Response:
    """As the model metadata, for the given loaded version (404 if it is not loaded)."""
    model = _resolve(services, *_names(request))
    return json_response(_model_metadata(services, model))


@router.get(
    "/models/{model_name}/ready",
    summary="Model ready",
    responses={**_HEALTH_RESPONSES, **protocol_error_responses(404)},
    openapi_extra={"parameters": path_parameters("model_name")},
)
async def model_ready(request: Request, services: ServicesDep) -> Response:
    """200 while a version of the model is loaded; 400 (not ready) otherwise."""
    return _model_ready(services, request.path_params["model_name"], None)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    summary="Model version ready",
    responses={**_HEALTH_RESPONSES, **protocol_error_responses(404)},
    openapi_extra={"parameters": path_parameters("model_name", "model_version")},
)
async def version_ready(request: Request, services: ServicesDep) -> Response:
    """200 while the version is loaded; 400 (not ready) otherwise."""
    return _model_ready(services, *_names(request))


_INFER: dict[str, Any] = {
    "response_model": InferenceResponse,
    "responses": {
        200: {
            "description": "The inference response; with binary outputs, the JSON header "
            "followed by the output bytes (`Inference-Header-Content-Length` gives its length)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        **protocol_error_responses(400, 404, 413, 500, 503),
    },
}


def _infer_openapi(*names: str) -> dict[str, Any]:
    parameters = [*path_parameters(*names), INFERENCE_HEADER_PARAMETER]
    return {"requestBody": OIP_INFER_BODY, "parameters": parameters}


# The most common body, one pair in a numeric tensor in the order protocol clients write its
# fields, read without the full parse (app.api.jsonbody.ExactForm): it asks for every output
# as JSON, so its answer is kept beside the cached row under ONE_PAIR_FORM.
ONE_PAIR_BODY = ExactForm(
    '{"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": DATATYPE, "data": [BIT, BIT]}]}',
    {"DATATYPE": ('"FP32"', '"FP64"', '"INT32"', '"INT64"')},
)
ONE_PAIR_FORM = "oip"
_ALL_AS_JSON = [(output, False) for output in OUTPUT_NAMES]


def _render_one_pair(model_name: str, pair: Pair, outputs: ModelOutputs) -> bytes:
    infer_request = InferRequest(None, one_pair_batch(pair), _ALL_AS_JSON)
    return bytes(render_infer_response(model_name, infer_request, outputs).body)


async def handle_infer(request: PredictionRequest, services: Services) -> Response:
    """One input tensor `inputs` [n, 2] (FP32, FP64, INT32, INT64 or BOOL; 0/1 values)."""
    version: str | None = request.path_params.get("model_version")
    name = request.path_params["model_name"]
    model = resolve_model(services, name, version, _NOT_FOUND, predict=True)
    body = await request.body()
    header_length = request_header(request.scope, _HEADER_LENGTH_KEY)
    pair = ONE_PAIR_BODY.bits(body) if header_length is None else None
    if pair is not None:  # the URL's name is the model's (resolve_model): one form for all
        render = functools.partial(_render_one_pair, services.settings.model_name, pair)
        return await one_pair_response(services, model, pair, ONE_PAIR_FORM, render)
    header, binary = split_body(body, header_length)
    infer_request = parse_infer_request(header, binary, services.settings.max_request_pairs)
    outputs = await services.prediction.predict_async(infer_request.batch, model)
    return render_infer_response(services.settings.model_name, infer_request, outputs)


@router.post(
    "/models/{model_name}/infer",
    summary="Inference on the newest loaded version",
    openapi_extra=_infer_openapi("model_name"),
    **_INFER,
)
async def infer(request: Request, services: ServicesDep) -> Response:
    """One input tensor `inputs` [n, 2] (FP32, FP64, INT32, INT64 or BOOL; 0/1 values)."""
    return await handle_infer(request, services)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    summary="Inference on a pinned version",
    **_INFER,
    openapi_extra=_infer_openapi("model_name", "model_version"),
)
async def infer_version(request: Request, services: ServicesDep) -> Response:
    """As `infer`, on the given loaded version (404 once it is no longer loaded)."""
    return await handle_infer(request, services)


HOT_ROUTES = (
    HotRoute(f"{PREFIX}/models/{{model_name}}/infer", handle_infer, render_protocol_error),
    HotRoute(
        f"{PREFIX}/models/{{model_name}}/versions/{{model_version}}/infer",
        handle_infer,
        render_protocol_error,
    ),
)
