"""Apps serving the trained version on both ways a prediction request may take, driven by
hand (``tests.support.asgi``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api.hot import ServiceApp
from tests.support.apps import WAYS, served_app


@pytest.fixture(scope="module", params=WAYS)
def app_of_either_way(request: pytest.FixtureRequest, trained_model_dir: Path) -> ServiceApp:
    """The trained version served with default settings."""
    return served_app(trained_model_dir, request.param)


@pytest.fixture(scope="module", params=WAYS)
def capped_app(request: pytest.FixtureRequest, trained_model_dir: Path) -> ServiceApp:
    """The trained version served with one prediction request in flight at most."""
    return served_app(trained_model_dir, request.param, max_in_flight=1)
