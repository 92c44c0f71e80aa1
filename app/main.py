"""``create_app(settings)``: assembles the service. Nothing is loaded before the lifespan runs."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from app.api.dependencies import Services
from app.api.docs import add_docs
from app.api.errors import ErrorShapes, exception_handler
from app.api.hot import HotRoute, PredictionRoutes, ServiceApp
from app.api.oip import routes as oip_routes
from app.api.service import routes as service_routes
from app.api.service.errors import render_service_error
from app.api.tfserving import routes as tfserving_routes
from app.config import Settings
from app.core.batching import MicroBatcher
from app.core.prediction import ModelCall, PredictionService, call_model
from app.core.response_cache import ResponseCache
from app.errors import ApiError
from app.lifecycle.store import ModelStore
from app.lifecycle.sync import REASONS, ModelSync
from app.metrics import Metrics
from app.server.access_log import AccessLogWriter
from app.server.fused import FusedPredictionPath
from app.server.middleware import (
    BodyLimitMiddleware,
    InFlightLimit,
    InFlightLimitMiddleware,
    MatchRoute,
    RequestContextMiddleware,
    RequestRecord,
)
from modelrepo.s3 import S3Repository, parse_s3_url

log = logging.getLogger(__name__)

# An unreachable object store must not hold the poller for long: it is retried next poll.
SYNC_CONNECT_TIMEOUT = timedelta(seconds=2)


def build_services(settings: Settings, *, model_call: ModelCall = call_model) -> Services:
    """The metrics, model store and prediction service ``settings`` describe."""
    metrics = Metrics()
    sync: ModelSync | None = None
    if settings.model_source:
        # The model dir is a cache of the S3 repository, filled on the poller's thread.
        sync = ModelSync(
            S3Repository(
                parse_s3_url(settings.model_source),
                connect_timeout=SYNC_CONNECT_TIMEOUT,
                max_retries=0,  # the sync retries with its own backoff, the poller never waits
            ),
            settings.model_dir,
            keep=settings.loaded_versions,
            poll_interval_seconds=settings.poll_interval_seconds,
            loaded=lambda: frozenset(model.version for model in store.loaded),
            observer=metrics,
        )
        metrics.watch_sync(REASONS)
    store = ModelStore(
        settings.model_dir,
        observer=metrics,
        keep=settings.loaded_versions,
        min_accuracy=settings.min_accuracy,
        label_observer=metrics,
        require_manifest=sync is not None,
        before_scan=sync.sync if sync is not None else None,
    )
    metrics.watch(lambda: store.current)

    def labels_now() -> tuple[dict[str, int], int]:
        view = store.view  # once: the versions and the share of the same moment
        versions = {name: model.version for name, model in view.labels.items()}
        return versions, round(view.canary_share * 100)

    metrics.watch_labels(labels_now)
    metrics.watch_files(lambda: store.file_problems)
    batcher = (
        MicroBatcher(max_rows=settings.batch_max_pairs, observer=metrics, model_call=model_call)
        if settings.batching
        else None
    )
    prediction = PredictionService(
        store,
        metrics=metrics,
        retry_after_seconds=math.ceil(settings.poll_interval_seconds),
        batcher=batcher,
        model_call=model_call,
        response_cache=(
            ResponseCache(settings.response_cache_rows) if settings.response_cache_rows else None
        ),
    )
    return Services(settings=settings, metrics=metrics, store=store, prediction=prediction)


def create_app(
    settings: Settings,
    *,
    model_call: ModelCall = call_model,
    extra_hot_routes: Sequence[HotRoute] = (),
    plain_prediction_routes: bool = True,
    access_log: AccessLogWriter | None = None,
) -> ServiceApp:
    """The service, configured by ``settings``; models load when its lifespan starts.

    The keywords are seams for the benchmark and the tests: ``model_call`` replaces the
    signature call (the benchmark's ceiling answers a constant), ``extra_hot_routes`` adds
    prediction-like routes to the plain ASGI way (the benchmark's parse-only floor), and
    ``plain_prediction_routes=False`` leaves the prediction routes to FastAPI, to check that
    both ways answer alike (``extra_hot_routes`` are then not served). ``access_log`` writes
    the request lines off the request path (the server process passes one, having set up the
    log format); without one they go through ``logging``.
    """
    services = build_services(settings, model_call=model_call)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        try:
            # Blocking TensorFlow work: in a worker thread, never on the event loop.
            await anyio.to_thread.run_sync(services.store.refresh)
        except Exception:  # e.g. an unreadable model dir: start anyway, the poller retries
            log.exception("initial scan of %s failed", settings.model_dir)
        if services.store.current is None:
            log.warning(
                "not ready: %s; waiting for a version",
                services.store.unavailable_reason,
                extra={"event": "not_ready", "model_dir": str(settings.model_dir)},
            )
        services.store.start_polling(settings.poll_interval_seconds)
        try:
            yield {"services": services}
        finally:
            await anyio.to_thread.run_sync(lambda: services.store.stop_polling(timeout=1.0))

    api = FastAPI(
        title="XOR model server",
        summary="Serves the XOR DNNClassifier's published SavedModel versions.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from app.api.docs, with no CDN
        redoc_url=None,
    )
    for module in (service_routes, tfserving_routes, oip_routes):
        api.include_router(module.router)
    add_docs(api)
    shapes = ErrorShapes(
        default=render_service_error,
        shapes=[tfserving_routes.ERROR_SHAPE, oip_routes.ERROR_SHAPE],
    )
    handler = exception_handler(shapes)
    for exception_type in (ApiError, HTTPException, RequestValidationError):
        api.add_exception_handler(exception_type, handler)
    # The same middleware on both ways, innermost first: the body limit, the cap on
    # predictions in flight (one count for both ways), then the request context, which sees
    # every response (the 413s and 503s too).
    in_flight = InFlightLimit(settings.max_in_flight, services.metrics)
    services.metrics.watch_in_flight(lambda: in_flight.in_flight)
    hot_routes = (*service_routes.HOT_ROUTES, *tfserving_routes.HOT_ROUTES, *oip_routes.HOT_ROUTES)
    Layer = tuple[Any, dict[str, Any]]  # a middleware class and its options
    body_limit: Layer = (BodyLimitMiddleware, {"max_body_bytes": settings.max_body_bytes})
    record = RequestRecord(services.metrics, access_log=settings.access_log, writer=access_log)
    context: Layer = (RequestContextMiddleware, {"record": record})

    def cap(match: MatchRoute | None) -> Layer:
        return InFlightLimitMiddleware, {"limit": in_flight, "match": match}

    api.state.services = services  # for tests and tools; routes use the lifespan state
    if not plain_prediction_routes:
        # FastAPI answers the prediction routes too: its cap picks them out by method and path
        # before FastAPI routes them, so that a refused request's body is not read either.
        routes = PredictionRoutes(hot_routes, services)

        def prediction_route(method: str, path: str) -> HotRoute | None:
            found = routes.route_for(method, path)
            return None if found is None else found[0]

        for middleware_class, options in (body_limit, cap(prediction_route), context):
            api.add_middleware(middleware_class, render_error=shapes.render, **options)
        return ServiceApp(api, None, None)
    # No prediction request reaches FastAPI: its stack has nothing to cap.
    for middleware_class, options in (body_limit, context):
        api.add_middleware(middleware_class, render_error=shapes.render, **options)
    predictions = PredictionRoutes((*hot_routes, *extra_hot_routes), services)
    chain: ASGIApp = predictions
    for middleware_class, options in (body_limit, cap(None), context):
        chain = middleware_class(chain, render_error=shapes.render, **options)
    # The common case in one frame, the chain for the rest (app.server.fused).
    fused = FusedPredictionPath(
        chain,
        services=services,
        limit=in_flight,
        max_body_bytes=settings.max_body_bytes,
        record=record,
        render_error=shapes.render,
    )
    return ServiceApp(api, predictions, fused)
