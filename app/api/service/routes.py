"""The service's own API: ``/predict``, ``/health``, ``/metrics`` and ``/model``.

Errors on these routes (and on any path no other API owns) are answered in the service's
error shape (``app.api.service.errors``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.common import json_response
from app.api.dependencies import Services, ServicesDep
from app.api.hot import HotRoute
from app.api.service.errors import render_service_error
from app.api.service.page import render_page
from app.api.service.predict import handle_predict
from app.api.service.schemas import (
    PREDICT_QUERY_PARAMETERS,
    PREDICT_REQUEST_BODY,
    HealthOk,
    HealthUnavailable,
    Liveness,
    MetricsJson,
    ModelInfo,
    PredictResponse,
    error_responses,
)
from app.metrics import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE

router = APIRouter()

HOT_ROUTES = (HotRoute("/predict", handle_predict, render_service_error),)


@router.post(
    "/predict",
    summary="Predict the XOR class of one pair or a batch of pairs",
    response_model=PredictResponse,
    responses=error_responses(400, 404, 413, 415, 422, 500, 503),
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY, "parameters": PREDICT_QUERY_PARAMETERS},
    tags=["prediction"],
)
async def predict(request: Request, services: ServicesDep) -> Response:
    """Predict the XOR class of one pair (`inputs`) or a batch (`instances`), in one call.

    Served by the `stable` label's version (the newest without labels.json), or the canary for
    its share; `?version=N` or `?label=NAME` pins a loaded version or a label."""
    return await handle_predict(request, services)


_READINESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": HealthOk, "description": "A model is loaded and warmed up"},
    503: {
        "model": HealthUnavailable,
        "description": "No model is loaded, or the server is shutting down; `reason` says which",
    },
}

# Readiness's reason once SIGTERM/SIGINT came: requests are still answered for a while
# (XOR_SHUTDOWN_DELAY_SECONDS), but a load balancer should send no more.
SHUTTING_DOWN = "shutting down"


def _readiness(services: ServicesDep) -> Response:
    store = services.store
    if store.shutting_down:
        return json_response({"status": "unavailable", "reason": SHUTTING_DOWN}, status=503)
    model = store.current
    if model is None:
        body = {"status": "unavailable", "reason": store.unavailable_reason}
        return json_response(body, status=503)
    return json_response(
        {
            "status": "ok",
            "model_version": model.version,
            "loaded_at": model.loaded_at_text,
            **labels_summary(services),
        }
    )


def labels_summary(services: Services) -> dict[str, Any]:
    """The labels' part of /health and /model: who serves each label, the canary's share,
    and what keeps labels.json from applying."""
    store = services.store
    view = store.view  # once: labels and share of the same moment
    return {
        "labels": {name: model.version for name, model in view.labels.items()},
        "canary_percent": round(view.canary_share * 100),
        "label_problems": store.label_problems,
        "labels_error": store.labels_error,
    }


@router.get(
    "/health",
    summary="Readiness (same as /health/ready)",
    response_model=HealthOk,
    responses=_READINESS_RESPONSES,
    tags=["health"],
)
async def health(services: ServicesDep) -> Response:
    """200 while a model is loaded and warmed up; 503 with the reason otherwise (also once
    the server is shutting down)."""
    return _readiness(services)


@router.get(
    "/health/ready",
    summary="Readiness",
    response_model=HealthOk,
    responses=_READINESS_RESPONSES,
    tags=["health"],
)
async def health_ready(services: ServicesDep) -> Response:
    """200 while a model is loaded and warmed up; 503 with the reason otherwise (also once
    the server is shutting down)."""
    return _readiness(services)


@router.get("/health/live", summary="Liveness", response_model=Liveness, tags=["health"])
async def health_live() -> Response:
    """200 while the process serves HTTP, loaded model or not."""
    return json_response({"status": "ok"})


def _accepted(accept: str) -> dict[str, float]:
    """The media ranges of an Accept header and their quality (1 unless ``q=`` says)."""
    ranges: dict[str, float] = {}
    for part in accept.split(","):
        media_range, *parameters = part.split(";")
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        name = media_range.strip().lower()
        if name:
            ranges[name] = max(quality, ranges.get(name, 0.0))
    return ranges


def _prefers_html(request: Request) -> bool:
    """Whether the client names HTML and prefers it to JSON, as a browser does
    (``text/html,application/xhtml+xml,...,*/*;q=0.8``). ``*/*`` alone, no Accept, or
    ``application/json`` ranked as high: JSON."""
    ranges = _accepted(request.headers.get("accept", ""))
    html = max(ranges.get("text/html", 0.0), ranges.get("application/xhtml+xml", 0.0))
    json = max(
        (ranges.get(name, 0.0) for name in ("application/json", "application/*", "*/*")),
        default=0.0,
    )
    return html > 0 and html > json


def _varies_by_accept(response: Response) -> Response:
    """``response``, saying that its representation depends on the request's Accept: a shared
    cache must not hand one client's variant (JSON, HTML, Prometheus text) to another."""
    response.headers["Vary"] = "Accept"
    return response


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(
        part.split(";")[0].strip().lower() == "application/json" for part in accept.split(",")
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics; the served model's evaluation as JSON on request",
    response_model=MetricsJson,
    responses={
        200: {
            "description": "Prometheus text format; with `Accept: application/json`, the "
            "served version's evaluation",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(503),
    },
    tags=["operations"],
)
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus text, or with `Accept: application/json` the served version's evaluation."""
    if not _wants_json(request):
        exposition = await run_in_threadpool(services.metrics.exposition)
        return _varies_by_accept(Response(exposition, media_type=PROMETHEUS_CONTENT_TYPE))
    model = services.prediction.model()
    return _varies_by_accept(
        json_response(
            {
                "model_version": model.version,
                "evaluated_at": model.evaluation.get("evaluated_at"),
                "evaluation": model.metrics,
            }
        )
    )


def request_limits(services: Services) -> dict[str, int | float]:
    """The limits part of /model (schemas.RequestLimits): what one request may be."""
    settings = services.settings
    return {
        "max_request_pairs": settings.max_request_pairs,
        "max_body_bytes": settings.max_body_bytes,
        "max_header_bytes": settings.max_header_bytes,
        "request_timeout_seconds": settings.request_timeout_seconds,
    }


@router.get(
    "/model",
    summary="The served model: version, signature, evaluation and request limits",
    response_model=ModelInfo,
    responses={
        200: {
            "description": "The served model as JSON; for a client that prefers "
            "`text/html` (a browser), the model page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **error_responses(503),
    },
    tags=["operations"],
)
async def model_info(request: Request, services: ServicesDep) -> Response:
    """The served version, its path, signature, its whole evaluation.json and the limits of one
    request; a browser gets the model page (metrics, training curve, decision surface,
    versions, a form)."""
    model = services.prediction.model()
    if _prefers_html(request):
        root = str(request.scope.get("root_path", "")).rstrip("/")
        loaded = sorted(services.store.loaded, key=lambda other: -other.version)
        page = render_page(model, loaded, labels_summary(services), predict_url=f"{root}/predict")
        return _varies_by_accept(page)
    return _varies_by_accept(
        json_response(
            {
                "model_version": model.version,
                "path": str(model.path),
                "loaded_at": model.loaded_at_text,
                "load_seconds": round(model.load_seconds, 6),
                "signature": dataclasses.asdict(model.signature_info),
                "evaluation": model.evaluation,
                "limits": request_limits(services),
                **labels_summary(services),
            }
        )
    )
