"""In-process apps: settings for a model dir, and a TestClient of the app they configure.

``app`` is imported when first used, so that the training tests (which share the root
conftest) do not depend on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns (once, at import) with httpx;
    # the dev lock has httpx. Ignored by message, so any other warning still fails the run.
    warnings.filterwarnings(
        "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient

if TYPE_CHECKING:
    from app.api.hot import ServiceApp
    from app.config import Settings

__all__ = ["WAYS", "TestClient", "served_app", "serving_client", "serving_settings"]

# The two ways a prediction request may take: the plain ASGI routes, or FastAPI's own.
WAYS = ("plain", "fastapi")


def serving_settings(model_dir: Path, **overrides: Any) -> Settings:
    """Settings serving ``model_dir``, polled every 60 s (not in a test's time) by default."""
    from app.config import Settings

    return Settings(model_dir=model_dir, **{"poll_interval_seconds": 60, **overrides})


@contextmanager
def serving_client(model_dir: Path, **overrides: Any) -> Iterator[TestClient]:
    """A client of ``create_app(serving_settings(model_dir, **overrides))``, lifespan run."""
    from app.main import create_app

    with TestClient(create_app(serving_settings(model_dir, **overrides))) as client:
        yield client


def served_app(model_dir: Path, way: str, **overrides: Any) -> ServiceApp:
    """An app on ``model_dir`` with its newest version loaded, its prediction requests taking
    ``way`` (one of WAYS); no lifespan (nothing polls), for tests that drive it by hand."""
    from app.main import create_app

    app = create_app(
        serving_settings(model_dir, **overrides), plain_prediction_routes=way == "plain"
    )
    app.state.services.store.refresh()
    assert app.state.services.store.current is not None
    return app
