"""Loading one version: the checks it must pass, plain TensorFlow only, and the model call."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from app.errors import ModelLoadError
from app.lifecycle.loading import LoadedModel, load_version
from tests.support import REPO
from tests.support.versions import BREAKERS, Breaker

PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_load_version_checks_and_describes_the_model(
    trained_version: Path, trained_version_number: int
) -> None:
    model = load_version(trained_version, trained_version_number)
    assert model.version == trained_version_number
    assert model.evaluation["model_version"] == trained_version_number
    assert model.metrics["accuracy"] == 1.0
    assert model.signature_info.inputs[0].name == "inputs"
    assert {o.name: (o.dtype, o.shape) for o in model.signature_info.outputs} == {
        "logits": ("float32", [None, 1]),
        "logistic": ("float32", [None, 1]),
        "probabilities": ("float32", [None, 2]),
        "class_ids": ("int64", [None, 1]),
        "classes": ("string", [None, 1]),
    }
    assert sorted(model.signature_defs) == ["__saved_model_init_op", "serving_default"]
    assert sorted(model.signature_defs["serving_default"].outputs) == sorted(
        o.name for o in model.signature_info.outputs
    )
    outputs = model.run(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32))
    assert outputs["class_ids"].reshape(-1).tolist() == [0, 1, 1, 0]
    assert model.load_seconds > 0


@pytest.mark.parametrize(("breaker", "message"), BREAKERS, ids=lambda v: getattr(v, "__name__", ""))
def test_load_version_rejects_a_broken_version(
    model_dir: Path, trained_version: Path, breaker: Breaker, message: str
) -> None:
    path = model_dir / "7"
    breaker(trained_version, path, 7)
    with pytest.raises(ModelLoadError, match=message):
        load_version(path, 7)


def test_app_never_imports_training_or_keras() -> None:
    for source in (REPO / "app").rglob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"training", "keras", "tf_keras"}, f"{source}: imports {name}"


def test_loads_with_plain_saved_model_load(
    monkeypatch: pytest.MonkeyPatch, trained_version: Path, trained_version_number: int
) -> None:
    calls: list[str] = []
    real_load = tf.saved_model.load

    def spy(path: str, *args: object, **kwargs: object) -> object:
        calls.append(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(tf.saved_model, "load", spy)
    load_version(trained_version, trained_version_number)
    assert calls == [str(trained_version)]


class RecordingSignature:
    """Wraps the real signature and records the batches it is called with."""

    def __init__(self, signature: Any) -> None:
        self.signature = signature
        self.batches: list[npt.NDArray[Any]] = []

    def __call__(self, **inputs: Any) -> Any:
        self.batches.append(inputs["inputs"].numpy())
        return self.signature(**inputs)


def test_the_model_is_called_on_distinct_rows_and_answers_every_row(
    loaded_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    features = rng.integers(0, 2, size=(10_000, 2)).astype(np.float32)
    recording = RecordingSignature(loaded_model._signature)
    monkeypatch.setattr(loaded_model, "_signature", recording)
    outputs = loaded_model.run(features)
    distinct = recording.batches[0]
    direct = {
        name: tensor.numpy()
        for name, tensor in recording.signature(inputs=tf.constant(distinct)).items()
    }
    loaded_model.run(np.array(PAIRS, dtype=np.float32))  # all distinct: passed through as is
    assert [len(batch) for batch in recording.batches] == [4, 4]
    assert {tuple(row) for row in distinct.tolist()} == set(PAIRS)
    np.testing.assert_array_equal(recording.batches[1], np.array(PAIRS, dtype=np.float32))
    index = {tuple(row): i for i, row in enumerate(distinct.tolist())}
    rows = [index[(a, b)] for a, b in features.tolist()]
    for name, values in outputs.items():
        assert len(values) == 10_000
        # Bit-exact: every row answered by its distinct row's outputs of that one call.
        np.testing.assert_array_equal(values, direct[name][rows])
    assert outputs["class_ids"].ravel().tolist() == [int(a) ^ int(b) for a, b in features.tolist()]
