from __future__ import annotations

import keras

from training.model import ModelDescription, build_model, build_optimizer, describe_model


def test_description_is_read_from_the_built_objects() -> None:
    model = build_model([3, 5, 7])
    optimizer = keras.optimizers.RMSprop(learning_rate=0.1)
    assert describe_model(model, optimizer) == ModelDescription([3, 5, 7], "RMSprop")


def test_the_default_optimizer_is_described_as_the_estimators() -> None:
    description = describe_model(build_model([10, 20, 10]), build_optimizer(0.05))
    assert description == ModelDescription([10, 20, 10], "Adagrad")
