"""The model store: discovery, checks on load, fallback, retries and swaps (real TensorFlow)."""

from __future__ import annotations

import ast
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.errors import ModelLoadError
from app.model_store import ModelStore, find_versions, fingerprint, load_version
from tests.app.conftest import publish_copy

APP = Path(__file__).resolve().parents[2] / "app"


class CountingObserver:
    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0

    def load_finished(self, *, success: bool, seconds: float) -> None:
        assert seconds >= 0
        if success:
            self.successes += 1
        else:
            self.failures += 1


def _write_evaluation(path: Path, version: int) -> None:
    (path / "assets.extra").mkdir(parents=True, exist_ok=True)
    document = {"model_version": version, "metrics": {"accuracy": 1.0}}
    (path / "assets.extra" / "evaluation.json").write_text(json.dumps(document))


class _WrongInput(tf.Module):  # type: ignore[misc]
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])  # type: ignore[untyped-decorator]
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": x[:, :1]}


class _NaNHead(tf.Module):  # type: ignore[misc]
    """The right signature, but outputs that are not finite."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="inputs")])  # type: ignore[untyped-decorator]
    def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = inputs[:, :1] * float("nan")
        two = tf.concat([tf.zeros_like(logits), logits], axis=-1)
        class_ids = tf.expand_dims(tf.argmax(two, axis=-1), -1)
        return {
            "logits": logits,
            "logistic": tf.sigmoid(logits),
            "probabilities": tf.nn.softmax(two),
            "class_ids": class_ids,
            "classes": tf.strings.as_string(class_ids),
        }


def _save(module: tf.Module, path: Path, key: str = "serving_default") -> None:
    tf.saved_model.save(module, str(path), signatures={key: module.serve})


Breaker = Callable[[Path, Path, int], None]


def garbage_saved_model(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    (path / "saved_model.pb").write_bytes(b"this is not a protobuf")


def missing_variables(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    shutil.rmtree(path / "variables")


def wrong_signature(trained: Path, path: Path, version: int) -> None:
    _save(_WrongInput(), path)
    _write_evaluation(path, version)


def no_serving_default(trained: Path, path: Path, version: int) -> None:
    module = _NaNHead()
    _save(module, path, key="predict")
    _write_evaluation(path, version)


def non_finite_outputs(trained: Path, path: Path, version: int) -> None:
    _save(_NaNHead(), path)
    _write_evaluation(path, version)


def evaluation_of_another_version(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    _write_evaluation(path, version - 1)


def evaluation_missing(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    (path / "assets.extra" / "evaluation.json").unlink()


def accuracy_not_a_number(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    document = {"model_version": version, "metrics": {"accuracy": "perfect"}}
    (path / "assets.extra" / "evaluation.json").write_text(json.dumps(document))


BREAKERS: list[tuple[Breaker, str]] = [
    (garbage_saved_model, "not a loadable SavedModel"),
    (missing_variables, "not a loadable SavedModel"),
    (wrong_signature, "must take exactly 'inputs'"),
    (no_serving_default, "no 'serving_default' signature"),
    (non_finite_outputs, "not finite"),
    (evaluation_of_another_version, "model_version is"),
    (evaluation_missing, "evaluation.json: missing"),
    (accuracy_not_a_number, "metrics.accuracy must be a number"),
]


def test_find_versions_ignores_everything_but_complete_integer_versions(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 3)
    publish_copy(trained_version, model_dir, 12)
    for name in (".tmp-export-abc", "abc", "1.5", "²", "0", "-4", "١٢"):
        (model_dir / name).mkdir()
        (model_dir / name / "saved_model.pb").write_bytes(b"")
    (model_dir / "20").mkdir()  # no saved_model.pb: still being written
    (model_dir / "30").write_text("a file, not a directory")
    assert [v for v, _ in find_versions(model_dir)] == [12, 3]
    assert find_versions(model_dir / "missing") == []


def test_fingerprint_changes_with_the_files(model_dir: Path, trained_version: Path) -> None:
    path = publish_copy(trained_version, model_dir, 5)
    before = fingerprint(path)
    assert before == fingerprint(path)
    assert any(name == "saved_model.pb" for name, _, _ in before)
    (path / "saved_model.pb").write_bytes(b"other")
    assert fingerprint(path) != before


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


def test_startup_falls_back_past_broken_versions(model_dir: Path, trained_version: Path) -> None:
    publish_copy(trained_version, model_dir, 10)
    for offset, (breaker, _) in enumerate(BREAKERS, start=11):
        breaker(trained_version, model_dir / str(offset), offset)
    observer = CountingObserver()
    store = ModelStore(model_dir, observer)
    served = store.refresh()
    assert served is not None and served.version == 10
    assert (observer.successes, observer.failures) == (1, len(BREAKERS))
    # Unchanged broken versions are not retried.
    store.refresh()
    assert (observer.successes, observer.failures) == (1, len(BREAKERS))


def test_broken_version_is_retried_only_after_it_changes(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 1)
    observer = CountingObserver()
    store = ModelStore(model_dir, observer)
    assert store.refresh() is not None
    garbage_saved_model(trained_version, model_dir / "2", 2)
    for _ in range(3):
        served = store.refresh()
        assert served is not None and served.version == 1
    assert observer.failures == 1
    shutil.copy2(trained_version / "saved_model.pb", model_dir / "2" / "saved_model.pb")
    served = store.refresh()
    assert served is not None and served.version == 2
    assert (observer.successes, observer.failures) == (2, 1)


def test_newer_version_is_swapped_in_and_older_ones_ignored(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 5)
    store = ModelStore(model_dir)
    first = store.refresh()
    assert first is not None and first.version == 5
    publish_copy(trained_version, model_dir, 3)
    assert store.refresh() is first
    publish_copy(trained_version, model_dir, 6)
    second = store.refresh()
    assert second is not None and second.version == 6
    # The old object still works for a request that grabbed it before the swap.
    assert first.run(np.array([[1, 0]], dtype=np.float32))["class_ids"].tolist() == [[1]]


def test_no_version_gives_a_reason(tmp_path: Path, model_dir: Path, trained_version: Path) -> None:
    missing = ModelStore(tmp_path / "missing")
    assert missing.refresh() is None
    assert "does not exist" in missing.unavailable_reason
    empty = ModelStore(model_dir)
    assert empty.refresh() is None
    assert "no version published" in empty.unavailable_reason
    garbage_saved_model(trained_version, model_dir / "4", 4)
    assert empty.refresh() is None
    assert "version 4" in empty.unavailable_reason


def test_polling_picks_up_a_new_version(model_dir: Path, trained_version: Path) -> None:
    from tests.app.conftest import wait_for

    store = ModelStore(model_dir)
    store.start_polling(0.05)
    try:
        publish_copy(trained_version, model_dir, 8)
        wait_for(lambda: store.current is not None)
        assert store.current is not None and store.current.version == 8
    finally:
        store.stop_polling(timeout=5)


def test_app_never_imports_training_or_keras() -> None:
    for source in APP.rglob("*.py"):
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
