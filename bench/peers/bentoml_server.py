# mypy: ignore-errors
# (runs in the bentoml venv only; our venv has no bentoml to type-check it against)
"""BentoML peer: a service ``Xor`` with a ``/predict`` API taking our ``/predict`` body.

``bentoml serve bench.peers.bentoml_server:Xor --host 127.0.0.1 --port PORT`` in the bentoml
venv, from the repository with it on ``PYTHONPATH``, the SavedModel's directory in
``XOR_PEER_MODEL_DIR``. Settings, BentoML's defaults otherwise:

- ``@bentoml.service()`` with no options: one worker process (BentoML's default ``workers``),
  behind BentoML's own HTTP server and process supervisor; ``BENTOML_DO_NOT_TRACK=true`` (no
  usage reports: nothing outside is reachable here) and ``BENTOML_HOME`` in a temporary
  directory, set by the driver.
- ``predict`` is a synchronous ``@bentoml.api`` (BentoML runs it in its thread pool): the JSON
  field ``inputs`` is its parameter; one ``serving_default`` call per request, answered in our
  ``/predict`` shape ``{"predictions": [{"inputs": [0, 1], "class_id": 1, "probabilities":
  [...]}]}`` (without our ``model_version``: the service has no versions).
- Readiness: ``GET /readyz``.
"""

from __future__ import annotations

import bentoml

from bench.peers.savedmodel import XorSavedModel, predict_predictions


@bentoml.service()
class Xor:
    def __init__(self) -> None:
        self.model = XorSavedModel()

    @bentoml.api
    def predict(self, inputs: list[int]) -> dict:
        return {"predictions": predict_predictions([inputs], self.model([inputs]))}
