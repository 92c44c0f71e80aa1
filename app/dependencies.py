"""What the routes need, built by ``create_app`` and handed to them through the lifespan state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.metrics import Metrics
from app.model_store import ModelStore
from app.prediction import PredictionService


@dataclass(frozen=True)
class Services:
    settings: Settings
    metrics: Metrics
    store: ModelStore
    prediction: PredictionService


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in the threadpool (a thread hop).
    services: Services = request.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def services_of(request: Request) -> Services:
    """The same as ``ServicesDep``, as a plain call for the prediction routes: they take the
    short way through the app (``app.fastpath``), which solves no dependencies, so a
    ``@hot_path`` route takes the Request alone and calls this."""
    services: Services = request.state.services
    return services
