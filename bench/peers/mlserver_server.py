# mypy: ignore-errors
# (runs in the mlserver venv only; our venv has no mlserver to type-check it against)
"""MLServer peer: a custom runtime (``XorRuntime``) answering V2 inference for ``xor``.

``mlserver start DIR`` in the mlserver venv, with the repository on ``PYTHONPATH``; DIR is a
temporary directory the driver writes (``bench.peers.driver.mlserver_settings``). Settings,
MLServer's defaults otherwise:

- ``settings.json``: ``http_port`` (the driver's free port), ``grpc_port`` and
  ``metrics_port`` (free ports too: MLServer has no switch to turn them off),
  ``"parallel_workers": 0``: inference in the main process. With the default (1 worker
  process) MLServer 1.7.1 does not start with the current uvloop (its workers crash with
  "There is no current event loop"); in-process is also what a KServe ``Model`` and our
  service do.
- ``model-settings.json``: name ``xor``, ``implementation`` this module's ``XorRuntime``,
  ``parameters.uri`` the SavedModel's directory; no adaptive batching (MLServer's default).
- ``predict`` decodes the first input with ``NumpyCodec``, calls ``serving_default`` once and
  answers the five outputs as our ``/v2`` does (FP32, INT64 and BYTES tensors).
- Readiness: ``GET /v2/models/xor/ready``.
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

from bench.peers.savedmodel import XorSavedModel

# Our /v2's output order.
OUTPUTS = ("logits", "logistic", "probabilities", "class_ids", "classes")


class XorRuntime(MLModel):
    async def load(self) -> bool:
        self._model = XorSavedModel(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32).reshape(-1, 2)
        outputs = self._model(rows)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                StringCodec.encode_output(
                    name, [item.decode() for item in outputs[name].reshape(-1).tolist()]
                )
                if name == "classes"
                else NumpyCodec.encode_output(name, outputs[name])
                for name in OUTPUTS
            ],
        )
