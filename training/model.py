"""The DNNClassifier equivalent: a ReLU multilayer perceptron with one logit.

``describe_model`` reads the architecture and optimizer back from the built objects, so what a
published version says about itself cannot drift from what was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras

INPUT_NAME = "inputs"
N_FEATURES = 2
HIDDEN_LAYER_PREFIX = "hiddenlayer_"


@dataclass(frozen=True)
class ModelDescription:
    """What was built: units per hidden layer and the optimizer's class name (e.g. Adagrad)."""

    hidden_units: list[int]
    optimizer: str


def build_model(hidden_units: Sequence[int]) -> keras.Model:
    """Dense ReLU layers of ``hidden_units`` and a single-logit head, as DNNClassifier builds.

    Keras' defaults (Glorot-uniform kernels, zero biases) match the Estimator's initialisers.
    Layer names follow the Estimator's variable scopes so checkpoints read familiarly.
    """
    inputs = keras.Input(shape=(N_FEATURES,), name=INPUT_NAME)
    hidden = inputs
    for index, units in enumerate(hidden_units):
        hidden = keras.layers.Dense(units, activation="relu", name=f"{HIDDEN_LAYER_PREFIX}{index}")(
            hidden
        )
    logits = keras.layers.Dense(1, name="logits")(hidden)
    return keras.Model(inputs=inputs, outputs=logits, name="dnn")


def build_optimizer(learning_rate: float) -> keras.optimizers.Optimizer:
    """Adagrad with the Estimator's initial accumulator value (0.1, also Keras' default)."""
    return keras.optimizers.Adagrad(learning_rate=learning_rate, initial_accumulator_value=0.1)


def describe_model(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> ModelDescription:
    """Describe ``model`` (as ``build_model`` makes them) and ``optimizer`` from the objects."""
    return ModelDescription(
        hidden_units=[
            int(layer.units) for layer in model.layers if layer.name.startswith(HIDDEN_LAYER_PREFIX)
        ],
        optimizer=type(optimizer).__name__,
    )
