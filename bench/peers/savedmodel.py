"""The SavedModel as every peer calls it, and its answers in the shapes of our APIs.

Each peer server loads the version with ``tf.saved_model.load`` and calls its
``serving_default`` signature once per request (no batching, no cache: none of the peers does
either by default). Runs in the peers' venvs: TensorFlow and numpy only.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from bench.peers import MODEL_DIR_VARIABLE

Outputs = dict[str, np.ndarray[Any, Any]]


class XorSavedModel:
    def __init__(self, model_dir: str | None = None) -> None:
        # The loaded object owns the variables the signature reads: keep it.
        self._loaded = tf.saved_model.load(model_dir or os.environ[MODEL_DIR_VARIABLE])
        self._signature = self._loaded.signatures["serving_default"]

    def __call__(self, rows: Any) -> Outputs:
        """The five named outputs for ``rows`` (pairs of 0/1), as numpy arrays."""
        outputs = self._signature(inputs=tf.constant(rows, dtype=tf.float32))
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def v1_predictions(outputs: Outputs) -> list[dict[str, Any]]:
    """TF Serving's row format, as our ``/v1``: one object per row, outputs by name."""
    names = sorted(outputs)
    columns = [
        [[item.decode() for item in row] for row in outputs[name].tolist()]
        if outputs[name].dtype == object
        else outputs[name].tolist()
        for name in names
    ]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def predict_predictions(pairs: list[list[int]], outputs: Outputs) -> list[dict[str, Any]]:
    """Our ``/predict`` row shape: the pair, its class and both probabilities."""
    return [
        {"inputs": pair, "class_id": class_id, "probabilities": probabilities}
        for pair, class_id, probabilities in zip(
            pairs,
            outputs["class_ids"].reshape(-1).tolist(),
            outputs["probabilities"].tolist(),
            strict=True,
        )
    ]
