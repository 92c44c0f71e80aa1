# mypy: ignore-errors
# (runs in the litserve venv only; our venv has no litserve to type-check it against)
"""LitServe peer: a ``LitAPI`` on LitServe's ``/predict`` taking our ``/predict`` body.

``python -m bench.peers.litserve_server PORT`` in the litserve venv, from the repository with it
on ``PYTHONPATH``, the SavedModel's directory in ``XOR_PEER_MODEL_DIR``. Settings, LitServe's
defaults otherwise:

- ``LitServer(XorAPI(), accelerator="cpu")``: one inference worker (``workers_per_device``
  default 1) fed by one API server process, no batching (``max_batch_size`` default 1);
  ``accelerator="cpu"`` only spares the device probe. ``run(host="127.0.0.1", port=PORT,
  generate_client_file=False)``: the client file would be written into the working tree.
- ``decode_request`` takes the ``inputs`` pair; ``predict`` makes one ``serving_default``
  call; ``encode_response`` answers our ``/predict`` shape ``{"predictions": [{"inputs":
  [0, 1], "class_id": 1, "probabilities": [...]}]}`` (without our ``model_version``).
- Readiness: ``GET /health`` (200 once the worker has run ``setup``).
"""

from __future__ import annotations

import sys

import litserve as ls


class XorAPI(ls.LitAPI):
    def setup(self, device):
        # Here, not at the top: the API server process imports this module too, and has no
        # use for TensorFlow.
        from bench.peers.savedmodel import XorSavedModel

        self.model = XorSavedModel()

    def decode_request(self, request):
        return request["inputs"]

    def predict(self, x):
        return x, self.model([x])

    def encode_response(self, output):
        from bench.peers.savedmodel import predict_predictions

        pair, outputs = output
        return {"predictions": predict_predictions([pair], outputs)}


if __name__ == "__main__":
    server = ls.LitServer(XorAPI(), accelerator="cpu")
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False)
