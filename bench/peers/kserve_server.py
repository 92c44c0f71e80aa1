# mypy: ignore-errors
# (runs in the kserve venv only; our venv has no kserve to type-check it against)
"""KServe peer: a ``kserve.Model`` answering the V1 protocol for ``xor``.

``python -m bench.peers.kserve_server --http_port PORT --enable_grpc false`` in the kserve venv,
the SavedModel's directory in ``XOR_PEER_MODEL_DIR``. Settings, KServe's defaults otherwise:

- ``ModelServer()`` reads its options from the command line (``kserve.model_server.parser``,
  parsed by the package at import): ``--http_port`` is the driver's free port, gRPC is off
  (``--enable_grpc false``: only REST is loaded), one worker (``--workers`` default 1), access
  log as KServe configures it by default.
- ``predict`` is a plain (synchronous) method, which KServe calls on its event loop (as our
  service calls the model): one ``serving_default`` call per request, answered in our ``/v1``
  row format, ``{"predictions": [{"class_ids": [1], "classes": ["1"], "logistic": [...],
  "logits": [...], "probabilities": [...]}]}``. KServe's latency logging stays on (default).
- Readiness: ``GET /v1/models/xor`` answers 200 once ``load`` has set ``ready``.
"""

from __future__ import annotations

from kserve import Model, ModelServer

from bench.peers import MODEL_NAME
from bench.peers.savedmodel import XorSavedModel, v1_predictions


class XorModel(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.model = None
        self.load()

    def load(self) -> bool:
        self.model = XorSavedModel()
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        return {"predictions": v1_predictions(self.model(payload["instances"]))}


if __name__ == "__main__":
    ModelServer().start([XorModel(MODEL_NAME)])
