"""The two reference servers of the benchmark: ``python -m bench.servers ceiling|naive``.

Both read ``XOR_MODEL_DIR``, ``XOR_HOST`` and ``XOR_PORT`` like the service.

- ceiling: the service itself (same app, middleware, validation, response building, logging,
  metrics) with the model call replaced by a constant answer: what the HTTP stack alone costs.
- naive: the common tutorial way, a FastAPI handler calling Keras ``model.predict`` on the
  SavedModel (wrapped in ``keras.layers.TFSMLayer``) once per request.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from app.api.dependencies import Services

# The ceiling's parse-and-validate-only route: the floor of a batch request (bench.run).
FLOOR_PATH = "/bench/validate"


def ceiling() -> int:
    from app.api.hot import HotRoute
    from app.api.service.errors import render_service_error
    from app.config import load_settings
    from app.lifecycle.loading import LoadedModel
    from app.main import create_app
    from app.server.logging import configure_logging
    from app.server.runner import serve

    probability = 0.9997
    one_row: dict[str, npt.NDArray[Any]] = {
        "logits": np.array([[8.0]], dtype=np.float32),
        "logistic": np.array([[probability]], dtype=np.float32),
        "probabilities": np.array([[1 - probability, probability]], dtype=np.float32),
        "class_ids": np.array([[1]], dtype=np.int64),
        "classes": np.array([[b"1"]], dtype=object),
    }

    def constant_answer(
        _model: LoadedModel, features: npt.NDArray[np.float32]
    ) -> dict[str, npt.NDArray[Any]]:
        rows = len(features)
        return {name: np.repeat(value, rows, axis=0) for name, value in one_row.items()}

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    # The floor takes the plain ASGI way, as /predict does: it differs only in what it does.
    floor = HotRoute(FLOOR_PATH, parse_and_validate_only, render_service_error)
    app = create_app(settings, model_call=constant_answer, extra_hot_routes=(floor,))
    return serve(app, settings)


async def parse_and_validate_only(request: Request, services: Services) -> Response:
    """The floor of a batch request: /predict's own reading, parsing and validation of the
    body, answered with the pair count (no model call, no predictions to encode)."""
    from app.api.common import json_response
    from app.api.service.predict import read_predict_request

    _, batch = await read_predict_request(request, services.settings.max_request_pairs)
    return json_response({"pairs": len(batch)})


class NaivePredictRequest(BaseModel):
    """The naive server's request body. At module level: with postponed annotations, FastAPI
    resolves a handler's annotations in the module's namespace, and a class local to
    ``naive()`` would be taken for a query parameter (every request a 422)."""

    inputs: list[int] = Field(min_length=2, max_length=2)


def naive() -> int:
    import keras
    import uvicorn
    from fastapi import FastAPI

    model_dir = Path(os.environ.get("XOR_MODEL_DIR", "models/xor"))
    newest = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    inputs = keras.Input(shape=(2,), name="inputs")
    outputs = keras.layers.TFSMLayer(str(newest), call_endpoint="serving_default")(inputs)
    model = keras.Model(inputs, outputs)

    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(request: NaivePredictRequest) -> dict[str, Any]:
        result = model.predict(np.array([request.inputs], dtype=np.float32), verbose=0)
        return {
            "model_version": int(newest.name),
            "predictions": [
                {
                    "inputs": request.inputs,
                    "class_id": int(result["class_ids"][0][0]),
                    "probabilities": result["probabilities"][0].tolist(),
                }
            ],
        }

    host = os.environ.get("XOR_HOST", "127.0.0.1")
    uvicorn.run(app, host=host, port=int(os.environ.get("XOR_PORT", "8000")), log_level="warning")
    return 0


if __name__ == "__main__":
    servers = {"ceiling": ceiling, "naive": naive}
    if len(sys.argv) != 2 or sys.argv[1] not in servers:
        sys.exit(f"usage: python -m bench.servers {'|'.join(servers)}")
    sys.exit(servers[sys.argv[1]]())
