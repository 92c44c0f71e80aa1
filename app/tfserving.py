"""TF Serving REST API (``/v1/models/<name>...``), as in TF Serving's ``api_rest.md``.

Only the wire format lives here: model status, metadata and ``:predict`` in the row
(``instances``) and columnar (``inputs``) formats are translated to and from the shared
prediction core. Errors are rendered in TF Serving's ``{"error": "..."}`` shape by
:func:`app.errors.error_response` (chosen by the ``/v1/`` path prefix).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request
from starlette.responses import Response

from app.dependencies import Services, ServicesDep, services_of
from app.errors import Detail, NotFound
from app.fastpath import hot_path
from app.jsonbody import decode_json
from app.model_store import SIGNATURE_KEY, LoadedModel
from app.prediction import (
    OUTPUT_NAMES,
    Batch,
    Locator,
    ModelOutputs,
    describe_json_type,
    invalid,
    raise_details,
    validate_bits,
)
from app.protocol_schemas import (
    TFSERVING_PREDICT_BODY,
    TFServingColumnarOutputs,
    TFServingModelMetadata,
    TFServingModelStatus,
    TFServingRowPredictions,
    path_parameters,
    protocol_error_responses,
)
from app.routes import json_response

router = APIRouter(prefix="/v1/models", tags=["TF Serving REST (v1)"])

_VERSION = re.compile(r"[0-9]{1,18}")
_KEYS = ("signature_name", "instances", "inputs")
# TF Serving lists a row's outputs by name.
_SORTED_OUTPUTS = tuple(sorted(OUTPUT_NAMES))
_INT64 = 2**63


def _names(request: Request) -> tuple[str, str]:
    return request.path_params["model_name"], request.path_params["version"]


def _check_name(services: Services, name: str, version: str | None = None) -> None:
    if name != services.settings.model_name:
        wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        raise NotFound(f"Servable not found for request: {wanted}")


def _version_number(services: Services, name: str, version: str) -> int:
    _check_name(services, name, version)
    if not _VERSION.fullmatch(version):
        raise NotFound(f"Servable not found for request: Specific({name}, {version})")
    return int(version)


def _resolve(services: Services, name: str, version: str | None) -> LoadedModel:
    """The model a URL names: 404 for another name or an unloaded version, 503 for none."""
    if version is None:
        _check_name(services, name)
        return services.prediction.model()
    return services.prediction.model(_version_number(services, name, version))


# --- request parsing ------------------------------------------------------------------------


def _number_rows(rows: Any, where: str, loc: Locator, max_rows: int) -> npt.NDArray[Any]:
    """A JSON list of [number, number] rows as float64 [n, 2]; type and shape checked here.

    Values are the core's to check (0 or 1); JSON booleans, strings and null are not numbers.
    """
    if type(rows) is not list:
        invalid(where, f"must be a list of pairs, got {describe_json_type(rows)}")
    if not rows:
        invalid(where, "must hold at least one pair")
    if len(rows) > max_rows:
        invalid(where, f"holds {len(rows)} pairs, at most {max_rows} allowed")
    details: list[Detail] = []
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != 2:
            problem = (
                f"must hold exactly 2 numbers, got {len(row)}"
                if type(row) is list
                else f"must be a pair [x1, x2], got {describe_json_type(row)}"
            )
            details.append(Detail(loc(i, -1), problem))
            continue
        for j, value in enumerate(row):
            if type(value) not in (int, float):
                details.append(
                    Detail(loc(i, j), f"must be the number 0 or 1, got {describe_json_type(value)}")
                )
            elif type(value) is int and not -_INT64 <= value < _INT64:
                details.append(Detail(loc(i, j), f"must be 0 or 1, got {value}"))
        if len(details) > 20:
            break
    if details:
        raise_details(details)
    array: npt.NDArray[Any] = np.array(rows)  # int64 if every value is an integer
    return array


def _row_locator(prefix: str) -> Locator:
    return lambda i, j: f"{prefix}[{i}]" if j < 0 else f"{prefix}[{i}][{j}]"


def parse_predict_request(document: Any, max_rows: int) -> tuple[Batch, bool]:
    """The batch of a ``:predict`` body and whether it used the row format (``instances``)."""
    if not isinstance(document, dict):
        invalid("body", f"must be a JSON object, got {describe_json_type(document)}")
    for key in document:
        if key not in _KEYS:
            invalid(
                key[:40],
                "unknown field; expected 'instances' or 'inputs' (and optionally 'signature_name')",
            )
    signature = document.get("signature_name", SIGNATURE_KEY)
    if signature != SIGNATURE_KEY:
        invalid(
            "signature_name",
            f"serving signature {str(signature)[:40]!r} not found; only {SIGNATURE_KEY!r} exists",
        )
    present = [key for key in ("instances", "inputs") if key in document]
    if len(present) != 1:
        problem = "has both" if present else "has neither"
        invalid("body", f"{problem} 'instances' and 'inputs'; give exactly one")
    if "instances" in document:
        return _parse_rows(document["instances"], max_rows), True
    return _parse_columns(document["inputs"], max_rows), False


def _parse_rows(instances: Any, max_rows: int) -> Batch:
    if type(instances) is list and instances and isinstance(instances[0], dict):
        # Named row format: each instance maps the one input name to its row.
        rows = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or set(instance) != {"inputs"}:
                invalid(f"instances[{i}]", "must be an object with exactly the key 'inputs'")
            rows.append(instance["inputs"])

        def named(i: int, j: int) -> str:
            return f"instances[{i}].inputs" if j < 0 else f"instances[{i}].inputs[{j}]"

        values = _number_rows(rows, "instances", named, max_rows)
        return validate_bits(values, max_rows=max_rows, where="instances", loc=named)
    loc = _row_locator("instances")
    values = _number_rows(instances, "instances", loc, max_rows)
    return validate_bits(values, max_rows=max_rows, where="instances", loc=loc)


def _parse_columns(inputs: Any, max_rows: int) -> Batch:
    where = "inputs"
    if isinstance(inputs, dict):
        if set(inputs) != {"inputs"}:
            names = ", ".join(repr(name[:40]) for name in inputs) or "none"
            invalid("inputs", f"must name exactly the input 'inputs', got {names}")
        inputs, where = inputs["inputs"], "inputs.inputs"
    loc = _row_locator(where)
    values = _number_rows(inputs, where, loc, max_rows)
    return validate_bits(values, max_rows=max_rows, where=where, loc=loc)


# --- response rendering ---------------------------------------------------------------------


def _output_lists(outputs: ModelOutputs) -> dict[str, list[list[Any]]]:
    lists: dict[str, list[list[Any]]] = {}
    for name in _SORTED_OUTPUTS:
        tensor = outputs[name]
        if tensor.dtype == object:  # DT_STRING: bytes
            lists[name] = [[item.decode() for item in row] for row in tensor.tolist()]
        else:  # float32 values become the same Python floats float64 ones would
            lists[name] = tensor.tolist()
    return lists


def render_predictions(outputs: ModelOutputs, row_format: bool) -> dict[str, Any]:
    lists = _output_lists(outputs)
    if not row_format:
        return {"outputs": lists}
    columns = [lists[name] for name in _SORTED_OUTPUTS]
    return {
        "predictions": [
            dict(zip(_SORTED_OUTPUTS, row, strict=True)) for row in zip(*columns, strict=True)
        ]
    }


def _version_status(model: LoadedModel) -> dict[str, Any]:
    return {
        "version": str(model.version),
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }


def _metadata(name: str, model: LoadedModel) -> dict[str, Any]:
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": {"signature_def": model.signature_defs}},
    }


async def _predict(
    request: Request, services: Services, name: str, version: str | None
) -> Response:
    model = _resolve(services, name, version)
    document = decode_json(await request.body())
    batch, row_format = parse_predict_request(document, services.settings.max_batch_size)
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
@hot_path
async def predict(request: Request) -> Response:
    """Row (`instances`) or columnar (`inputs`) format; bits as 0/1 or 0.0/1.0."""
    services = services_of(request)  # not Depends: hot path, see services_of
    return await _predict(request, services, request.path_params["model_name"], None)


@router.post(
    "/{model_name}/versions/{version}:predict",
    summary="TF Serving Predict on a pinned version",
    **_PREDICT,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": TFSERVING_PREDICT_BODY,
        "parameters": [*path_parameters("model_name", "version")],
    },
)
@hot_path
async def predict_version(request: Request) -> Response:
    """As `:predict`, on the given loaded version (404 once it is no longer loaded)."""
    services = services_of(request)  # not Depends: hot path, see services_of
    return await _predict(request, services, *_names(request))


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
