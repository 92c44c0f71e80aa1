"""What the routes need, built by ``create_app`` and handed to them through the lifespan state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.core.prediction import PredictionService
from app.lifecycle.store import ModelStore
from app.metrics import Metrics


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
