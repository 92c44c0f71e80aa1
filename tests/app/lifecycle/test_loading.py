"""Loading one version: the checks it must pass, plain TensorFlow only, and the model call."""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from app.errors import ModelLoadError
from app.lifecycle.discovery import MAX_VERSION
from app.lifecycle.golden import GOLDEN_FILE
from app.lifecycle.loading import EVALUATION_FILE, LoadedModel, load_version
from tests.support import REPO
from tests.support.versions import BREAKERS, Breaker, publish_copy, write_golden, xnor_model
from tests.support.waiting import finishes

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


def test_an_xnor_model_evaluated_at_1_0_is_refused_by_its_golden_set(model_dir: Path) -> None:
    """Case 6: training on flipped labels gives XNOR with an evaluation saying 1.0; the
    accuracy gate at 1 passes it, the golden set does not (with golden.json or without)."""
    path = model_dir / "7"
    xnor_model(Path(), path, 7)
    with pytest.raises(ModelLoadError, match=r"golden set \(the XOR truth table\)"):
        load_version(path, 7, min_accuracy=1.0)
    write_golden(path, [[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0])
    with pytest.raises(ModelLoadError, match=r"golden set \(.*golden.json\)"):
        load_version(path, 7, min_accuracy=1.0)


def test_the_golden_set_or_the_truth_table_is_what_the_warm_up_runs(
    model_dir: Path, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.lifecycle")
    path = publish_copy(trained_version, model_dir, 7)
    (path / GOLDEN_FILE).unlink(missing_ok=True)
    load_version(path, 7)
    defaults = [r for r in caplog.records if getattr(r, "event", None) == "golden_set_default"]
    assert [r.model_version for r in defaults] == [7]  # type: ignore[attr-defined]
    caplog.clear()
    write_golden(path, [[1, 0], [1, 1]], [1, 0])
    calls: list[list[list[float]]] = []
    real_run = LoadedModel.run

    def recording_run(self: LoadedModel, features: npt.NDArray[np.float32]) -> Any:
        calls.append(features.tolist())
        return real_run(self, features)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LoadedModel, "run", recording_run)
        load_version(path, 7)
    assert calls == [[[1.0, 0.0], [1.0, 1.0]]]
    assert not [r for r in caplog.records if getattr(r, "event", None) == "golden_set_default"]


def test_versions_within_int64_only(model_dir: Path, trained_version: Path) -> None:
    top = publish_copy(trained_version, model_dir, MAX_VERSION)
    assert load_version(top, MAX_VERSION).version == 2**63 - 1
    for version in (MAX_VERSION + 1, 2**64, 10**20):
        path = publish_copy(trained_version, model_dir, version)
        with pytest.raises(ModelLoadError, match="version number beyond int64"):
            load_version(path, version)


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


def _shard(path: Path) -> Path:
    (shard,) = (path / "variables").glob("variables.data-*")
    return shard


@pytest.mark.parametrize("make", [_fifo, _dev_zero], ids=["fifo", "dev zero"])
@pytest.mark.parametrize(
    "file",
    [
        lambda path: path / EVALUATION_FILE,
        lambda path: path / GOLDEN_FILE,
        lambda path: path / "variables" / "variables.index",
        _shard,
    ],
    ids=["evaluation.json", "golden.json", "variables.index", "variables.data"],
)
def test_a_file_that_would_block_or_never_end_is_refused_at_once(
    model_dir: Path,
    trained_version: Path,
    make: Callable[[Path], None],
    file: Callable[[Path], Path],
) -> None:
    path = publish_copy(trained_version, model_dir, 7)
    write_golden(path, [[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0])
    make(file(path))
    with pytest.raises(ModelLoadError, match=r"must be a regular file, is a (FIFO|character)"):
        finishes(lambda: load_version(path, 7), what="loading the version")


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
