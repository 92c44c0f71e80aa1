"""The reference servers of the benchmark: ``python -m bench.servers floor|fastapi|ceiling|naive``.

All read ``XOR_HOST`` and ``XOR_PORT`` like the service (ceiling and naive ``XOR_MODEL_DIR``).

- floor: a bare ASGI callable on the service's uvicorn settings (httptools, uvloop, no server
  header, no access log) reading the request and answering a constant body of ``/predict``'s
  shape: the Python HTTP floor, what no Python server on this stack can beat.
- fastapi: a plain FastAPI + pydantic app answering a constant: where a typical FastAPI
  service starts before it does any work.
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
from starlette.responses import Response

if TYPE_CHECKING:
    from app.api.dependencies import Services
    from app.api.hot import PredictionRequest

# The ceiling's parse-and-validate-only route: the floor of a batch request (bench.run).
FLOOR_PATH = "/bench/validate"
# What the floor and the fastapi servers answer to every /predict: the service's answer to one
# pair, as the service writes it.
CONSTANT_PREDICTION: dict[str, Any] = {
    "model_version": 1,
    "predictions": [
        {"inputs": [0, 1], "class_id": 1, "probabilities": [0.0002233, 0.9997767]},
    ],
}


def _uvicorn_settings() -> dict[str, Any]:
    """The service's own uvicorn settings (app.server.runner), for the reference servers."""
    return {
        "host": os.environ.get("XOR_HOST", "127.0.0.1"),
        "port": int(os.environ.get("XOR_PORT", "8000")),
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "server_header": False,
        "log_level": "warning",
    }


def floor() -> int:
    import json

    import uvicorn

    body = json.dumps(CONSTANT_PREDICTION, separators=(",", ":")).encode()
    health = b'{"status":"ok"}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:  # the whole request is read, as any server must
            more = (await receive()).get("more_body", False)
        answer = body if scope["path"] == "/predict" else health
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(app, **_uvicorn_settings())
    return 0


class PlainPredictRequest(BaseModel):
    """The fastapi server's request body (module level: see NaivePredictRequest)."""

    inputs: list[int] = Field(min_length=2, max_length=2)


def plain_fastapi() -> int:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: PlainPredictRequest) -> dict[str, Any]:
        return CONSTANT_PREDICTION

    uvicorn.run(app, **_uvicorn_settings())
    return 0


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


async def parse_and_validate_only(request: PredictionRequest, services: Services) -> Response:
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
    servers = {"floor": floor, "fastapi": plain_fastapi, "ceiling": ceiling, "naive": naive}
    if len(sys.argv) != 2 or sys.argv[1] not in servers:
        sys.exit(f"usage: python -m bench.servers {'|'.join(servers)}")
    sys.exit(servers[sys.argv[1]]())
