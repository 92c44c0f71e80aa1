"""``POST /predict``: the service's own prediction API, read, validated and rendered here.

``{"inputs": [0, 1]}`` (one pair) or ``{"instances": [[0, 1], ...]}`` (a batch), JSON integers
0 and 1 only; the answer holds the version and one prediction per pair, in order.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from app.api.dependencies import Services
from app.api.hot import PredictionRequest, one_pair_response, query_items, request_header
from app.api.jsonbody import ExactForm, decode_json
from app.core.bits import (
    Batch,
    Pair,
    describe_json_type,
    one_pair_batch,
    pairs_batch,
    raise_details,
    validate_pair,
    validate_pairs,
)
from app.core.prediction import ModelOutputs
from app.core.rowgroups import group_rows
from app.errors import Detail, UnsupportedMediaType
from app.lifecycle.discovery import MAX_VERSION
from app.lifecycle.loading import LoadedModel
from modelrepo.format import label_name_problem

_UTF8 = {"utf-8", "utf8"}
_QUERY_KEYS = ("version", "label")
_VERSION = re.compile(r"[0-9]{1,19}")
_PREDICT_KEYS = ("inputs", "instances")


def require_json(request: PredictionRequest) -> None:
    """415 unless Content-Type is application/json (parameters allowed, charset UTF-8 only)."""
    raw = request_header(request.scope, b"content-type")
    if raw == "application/json":  # as nearly every client sends it
        return
    if raw is None:
        raise UnsupportedMediaType("missing Content-Type; send application/json")
    media_type, *parameters = raw.split(";")
    if media_type.strip().lower() != "application/json":
        raise UnsupportedMediaType(f"Content-Type {raw!r} is not supported; send application/json")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _UTF8:
            raise UnsupportedMediaType(f"charset in {raw!r} is not supported; send UTF-8")


async def read_predict_request(
    request: PredictionRequest, max_request_pairs: int
) -> tuple[list[Pair], Batch]:
    """The pairs of a ``/predict`` request, and their batch: body read, parsed and validated."""
    require_json(request)
    return parse_predict_body(await request.body(), max_request_pairs)


def parse_predict_body(body: bytes, max_request_pairs: int) -> tuple[list[Pair], Batch]:
    """The pairs of a ``/predict`` body, and their batch: parsed and validated."""
    document = decode_json(body)
    pairs, single = parse_predict_request(document, max_request_pairs)
    if single:
        batch = pairs_batch(pairs, where="inputs", loc=lambda _, j: f"inputs[{j}]", max_rows=1)
    else:
        batch = pairs_batch(
            pairs,
            where="instances",
            loc=lambda i, j: f"instances[{i}][{j}]",
            max_rows=max_request_pairs,
        )
    return pairs, batch


def parse_predict_request(document: Any, max_request_pairs: int) -> tuple[list[Pair], bool]:
    """The pairs of a ``/predict`` document and whether it was the single-pair form.

    ``{"inputs": [0, 1]}`` or ``{"instances": [[0, 1], ...]}``: exactly one of the two keys.
    """
    if not isinstance(document, dict):
        raise_details(
            [Detail("body", f"must be a JSON object, got {describe_json_type(document)}")]
        )
    unknown = [key for key in document if key not in _PREDICT_KEYS]
    if unknown:
        raise_details(
            [
                Detail(
                    key if len(key) <= 40 else key[:37] + "...",
                    "unknown field; only 'inputs' or 'instances' are accepted",
                )
                for key in unknown
            ]
        )
    present = [key for key in _PREDICT_KEYS if key in document]
    if len(present) != 1:
        problem = (
            "has both 'inputs' and 'instances'"
            if present
            else "has neither 'inputs' nor 'instances'"
        )
        raise_details([Detail("body", f"{problem}; give exactly one")])
    if "inputs" in document:
        return [validate_pair(document["inputs"], "inputs")], True
    return validate_pairs(document["instances"], "instances", max_request_pairs), False


def parse_pinning(pairs: list[tuple[str, str]]) -> tuple[int | None, str | None]:
    """The ``version`` or ``label`` a ``/predict`` query string pins (at most one of them,
    each at most once), validated: a version is 1 to 2**63-1 in ASCII digits, a label a
    labels.json name (``[a-z][a-z0-9-]*``, at most 63 characters)."""
    details = []
    seen: dict[str, str] = {}
    for key, value in pairs:
        shown = key if len(key) <= 40 else key[:37] + "..."
        if key not in _QUERY_KEYS:
            details.append(Detail(f"query.{shown}", "unknown parameter; only 'version' or 'label'"))
        elif key in seen:
            details.append(Detail(f"query.{key}", "given more than once"))
        else:
            seen[key] = value
    version: int | None = None
    label: str | None = None
    if "version" in seen:
        text = seen["version"]
        if _VERSION.fullmatch(text) and 1 <= int(text) <= MAX_VERSION:
            version = int(text)
        else:
            details.append(
                Detail(
                    "query.version",
                    f"must be a version number 1 to {MAX_VERSION}, got {text[:40]!r}",
                )
            )
    if "label" in seen:
        problem = label_name_problem(seen["label"])
        if problem is None:
            label = seen["label"]
        else:
            details.append(Detail("query.label", problem))
    if "version" in seen and "label" in seen:
        details.append(Detail("query", "has both 'version' and 'label'; give at most one"))
    if details:
        raise_details(details)
    return version, label


def pinned_model(request: PredictionRequest, services: Services) -> LoadedModel:
    """The model a ``/predict`` request goes to: ``?version=N``, ``?label=NAME`` or, naming
    neither, the served one (or the canary, for its share)."""
    query = request.scope.get("query_string", b"")
    if not query:
        return services.prediction.route()
    version, label = parse_pinning(query_items(request.scope))
    return services.prediction.route(version=version, label=label)


# The most common body, read without the full parse (app.api.jsonbody.ExactForm).
ONE_PAIR_BODY = ExactForm('{"inputs": [BIT, BIT]}')
# The response cache's name for /predict's rendering of a one-pair answer.
ONE_PAIR_FORM = "predict"


async def handle_predict(request: PredictionRequest, services: Services) -> Response:
    """Predict the XOR class of one pair (`inputs`) or a batch (`instances`), in one call."""
    require_json(request)
    body = await request.body()
    pair = ONE_PAIR_BODY.bits(body)
    if pair is not None:
        model = pinned_model(request, services)
        render = functools.partial(_render_one_pair, pair)
        return await one_pair_response(services, model, pair, ONE_PAIR_FORM, render)
    pairs, batch = parse_predict_body(body, services.settings.max_request_pairs)
    model = pinned_model(request, services)
    outputs = await services.prediction.predict_async(batch, model)
    return Response(render_predict_response(pairs, batch, outputs), media_type="application/json")


def _render_one_pair(pair: Pair, outputs: ModelOutputs) -> bytes:
    return render_predict_response([pair], one_pair_batch(pair), outputs)


# From this many pairs on, a response is encoded once per distinct row, not once per row.
GROUPED_RENDERING_FROM = 64


def render_predict_response(pairs: list[Pair], batch: Batch, outputs: ModelOutputs) -> bytes:
    """The JSON of a /predict response: the version and one prediction per pair, in order.

    A large batch repeats the same few rows (at most 4 distinct pairs), so each distinct row
    (same pair, class and probabilities, compared bytewise) is encoded once and the body is
    joined from those: the same bytes as encoding every row, for a fraction of the work
    (bench/NOTES.md).
    """
    class_ids = outputs["class_ids"]
    probabilities = outputs["probabilities"]
    groups = None
    if len(pairs) >= GROUPED_RENDERING_FROM:
        groups = group_rows(batch.features, class_ids, probabilities)
    if groups is None:
        predictions = [
            _prediction(pair, class_id, probability)
            for pair, class_id, probability in zip(
                pairs,
                class_ids.reshape(-1).tolist(),
                probabilities.tolist(),  # float32 -> the same Python floats as via float64
                strict=True,
            )
        ]
        return orjson.dumps({"model_version": outputs.model_version, "predictions": predictions})
    encoded = np.empty(len(groups.first), dtype=object)
    for group, row in enumerate(groups.first.tolist()):
        encoded[group] = orjson.dumps(
            _prediction(
                pairs[row],
                int(class_ids[row, 0]),
                probabilities[row].tolist(),
            )
        )
    # '{"model_version":3,"predictions":[' + the rows + ']}'
    head = orjson.dumps({"model_version": outputs.model_version, "predictions": []})[:-2]
    return head + b",".join(encoded[groups.inverse].tolist()) + b"]}"


def _prediction(pair: Pair, class_id: int, probabilities: list[float]) -> dict[str, Any]:
    # The pair tuple is encoded as a JSON array: no list per row (bench/NOTES.md).
    return {"inputs": pair, "class_id": class_id, "probabilities": probabilities}
