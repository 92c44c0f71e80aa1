"""The two reference servers of the benchmark: ``python -m bench.servers ceiling|naive``.

Both read ``XOR_MODEL_DIR``, ``XOR_HOST`` and ``XOR_PORT`` like the service.

- ceiling: the service itself (same app, middleware, validation, response building, logging,
  metrics) with the model call replaced by a constant answer: what the HTTP stack alone costs.
- naive: the common tutorial way, a FastAPI handler calling Keras ``model.predict`` on the
  SavedModel (wrapped in ``keras.layers.TFSMLayer``) once per request.
"""

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import Request
from starlette.responses import Response


def ceiling() -> int:
    from app import model_store

    probability = 0.9997
    one_row: dict[str, npt.NDArray[Any]] = {
        "logits": np.array([[8.0]], dtype=np.float32),
        "logistic": np.array([[probability]], dtype=np.float32),
        "probabilities": np.array([[1 - probability, probability]], dtype=np.float32),
        "class_ids": np.array([[1]], dtype=np.int64),
        "classes": np.array([[b"1"]], dtype=object),
    }

    def constant_answer(
        self: model_store.LoadedModel, features: npt.NDArray[np.float32]
    ) -> dict[str, npt.NDArray[Any]]:
        rows = len(features)
        return {name: np.repeat(value, rows, axis=0) for name, value in one_row.items()}

    model_store.LoadedModel.run = constant_answer  # type: ignore[method-assign]
    from app import main as app_main
    from app.cli import main
    from app.fastpath import hot_path

    create_app = app_main.create_app

    def with_floor_route(settings: Any) -> Any:
        app = create_app(settings)
        # The short way, as /predict's: the floor differs from it only in what it does.
        app.add_api_route("/bench/validate", hot_path(parse_and_validate_only), methods=["POST"])
        return app

    app_main.create_app = with_floor_route
    return main([])


async def parse_and_validate_only(request: Request) -> Response:
    """The floor of a batch request: /predict's own reading, parsing and validation of the
    body, answered with the pair count (no model call, no predictions to encode)."""
    from app.dependencies import services_of
    from app.routes import json_response, read_predict_request

    _, batch = await read_predict_request(request, services_of(request).settings.max_batch_size)
    return json_response({"pairs": len(batch)})


def naive() -> int:
    import keras
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    model_dir = Path(os.environ.get("XOR_MODEL_DIR", "models/xor"))
    newest = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    inputs = keras.Input(shape=(2,), name="inputs")
    outputs = keras.layers.TFSMLayer(str(newest), call_endpoint="serving_default")(inputs)
    model = keras.Model(inputs, outputs)

    class PredictRequest(BaseModel):
        inputs: list[int] = Field(min_length=2, max_length=2)

    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
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
