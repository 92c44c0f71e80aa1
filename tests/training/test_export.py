from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.training.conftest import REPO, Train
from training.errors import GoldenSetError
from training.export import EVALUATION_FILE, TEMP_PREFIX, export_saved_model
from training.golden import GOLDEN_FILE
from training.model import build_model
from training.versions import next_version, published_versions, version_of


def xor_model() -> keras.Model:
    """Two ReLU units computing XOR exactly: logit = relu(a + b) - 2 relu(a + b - 1) - 0.5."""
    model = build_model([2])
    model.set_weights(
        [
            np.array([[1, 1], [1, 1]], np.float32),
            np.array([0, -1], np.float32),
            np.array([[1], [-2]], np.float32),
            np.array([-0.5], np.float32),
        ]
    )
    return model


def constant_model() -> keras.Model:
    """Every weight zero: a logit of 0 for any pair, so class 0 everywhere."""
    model = build_model([2])
    model.set_weights([np.zeros_like(weight) for weight in model.get_weights()])
    return model


# Runs in a fresh interpreter that cannot import the project: the published SavedModel must
# answer through plain tf.saved_model.load alone.
PLAIN_LOADER = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoProjectCode(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"training", "app", "tests"}:
                raise ImportError(f"the loader must not import project code: {name}")
            return None

    sys.meta_path.insert(0, NoProjectCode())
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    result = signature(inputs=tf.constant([[0, 0], [0, 1], [1, 0], [1, 1]], tf.float32))
    def plain(value):
        return value.decode() if isinstance(value, bytes) else value

    print(json.dumps(default=plain, obj={
        "signatures": sorted(loaded.signatures.keys()),
        "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in inputs.items()},
        "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in outputs.items()},
        "values": {k: v.numpy().tolist() for k, v in result.items()},
        "project_modules": [m for m in sys.modules if m.split(".")[0] in {"training", "app"}],
    }))
    """
)


def test_signature_contract_in_a_plain_interpreter(published: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", PLAIN_LOADER, str(published)],
        capture_output=True,
        text=True,
        check=True,
        cwd=published.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["signatures"] == ["serving_default"]
    assert report["inputs"] == {"inputs": ["float32", [None, 2]]}
    assert report["outputs"] == {
        "logits": ["float32", [None, 1]],
        "logistic": ["float32", [None, 1]],
        "probabilities": ["float32", [None, 2]],
        "class_ids": ["int64", [None, 1]],
        "classes": ["string", [None, 1]],
    }
    values = report["values"]
    assert values["class_ids"] == [[0], [1], [1], [0]]
    assert values["classes"] == [["0"], ["1"], ["1"], ["0"]]
    for logistic, probabilities in zip(values["logistic"], values["probabilities"], strict=True):
        assert probabilities[1] == pytest.approx(logistic[0], abs=1e-6)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-6)
    assert report["project_modules"] == []


def test_evaluation_describes_exactly_this_version(published: Path) -> None:
    document = json.loads((published / EVALUATION_FILE).read_text())
    assert document["model_version"] == int(published.name)
    assert document["evaluated_at"].endswith("Z")
    assert document["dataset"]["rows"] == 4
    assert document["dataset"]["path"].endswith("xor_test.csv")
    metrics = document["metrics"]
    assert metrics["accuracy"] == 1.0
    assert metrics["global_step"] == 1000
    assert metrics["loss"] == pytest.approx(4 * metrics["average_loss"])
    assert document["training"] == {
        "hidden_units": [10, 20, 10],
        "steps": 1000,
        "batch_size": 4,
        "learning_rate": 0.05,
        "optimizer": "Adagrad",
        "seed": 0,
        "tensorflow": document["training"]["tensorflow"],
    }


def test_published_files_are_world_readable(published: Path) -> None:
    paths = [published, *published.rglob("*")]
    assert any(path.name == "saved_model.pb" for path in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = 0o755 if path.is_dir() else 0o644
        assert mode == wanted, f"{path}: {oct(mode)}"


def test_versions_strictly_increase_past_existing_ones(tmp_path: Path, train: Train) -> None:
    future = tmp_path / "xor" / "9999999999"
    future.mkdir(parents=True)
    (future / "saved_model.pb").write_bytes(b"")
    assert train(steps=5) == 0
    assert train(steps=5) == 0
    assert published_versions(tmp_path / "xor") == [9999999999, 10000000000, 10000000001]


def test_a_failing_evaluation_publishes_nothing(tmp_path: Path) -> None:
    def refuse(_predict: object) -> dict[str, object]:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        export_saved_model(build_model([4]), tmp_path, evaluate=refuse)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_receives_the_reloaded_models_logits(tmp_path: Path) -> None:
    model = xor_model()
    seen = {}

    def record(predict):
        features = np.array([[0, 1], [1, 1]], dtype=np.float32)
        seen["logits"] = predict(features)
        seen["keras"] = model(features).numpy()
        return {"metrics": {}}

    published = export_saved_model(model, tmp_path, evaluate=record)
    assert seen["logits"].shape == (2, 1)
    np.testing.assert_allclose(seen["logits"], seen["keras"], atol=1e-6)
    assert published.evaluation == {"model_version": published.version, "metrics": {}}
    assert published.path == tmp_path / str(published.version)


def test_published_version_ships_the_golden_set(published: Path) -> None:
    assert (published / GOLDEN_FILE).read_text() == (
        '{"inputs": [[0, 0], [0, 1], [1, 0], [1, 1]], "class_ids": [0, 1, 1, 0]}\n'
    )


def test_a_model_failing_the_golden_set_publishes_nothing(tmp_path: Path) -> None:
    evaluated = []

    def evaluate(predict):
        evaluated.append(predict(np.array([[0, 1]], np.float32)))
        return {"metrics": {"accuracy": 1.0}}  # as flipped test data would have it

    with pytest.raises(GoldenSetError) as caught:
        export_saved_model(constant_model(), tmp_path, evaluate=evaluate)
    assert str(caught.value).startswith(
        "the exported model answers the golden set (the XOR truth table) wrongly: "
        "[0, 1] -> 0 (expected 1), [1, 0] -> 0 (expected 1): nothing published"
    )
    assert caught.value.exit_code == 3
    assert evaluated  # the evaluation ran, and did not decide
    assert list(tmp_path.iterdir()) == []  # no version, no leftover temp dir


def test_the_golden_set_is_checked_against_the_file_that_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the gate checks is what the server will read: a file that asks for other answers
    (here XNOR's) refuses even the right model."""
    import training.golden

    monkeypatch.setattr(
        training.golden, "golden_set", lambda: {"inputs": [[0, 0]], "class_ids": [1]}
    )
    with pytest.raises(GoldenSetError, match=r"\[0, 0\] -> 0 \(expected 1\)"):
        export_saved_model(xor_model(), tmp_path, evaluate=lambda _predict: {})
    assert list(tmp_path.iterdir()) == []


# A crash between writing the SavedModel and renaming it into place.
CRASH_BEFORE_RENAME = textwrap.dedent(
    """
    import os, sys
    import training.export
    from training.cli import main

    def crash(*args):
        os._exit(9)

    training.export.os.rename = crash
    main(sys.argv[1:])
    """
)


@pytest.mark.slow
def test_a_crash_before_rename_leaves_no_version(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASH_BEFORE_RENAME,
            "--steps=20",
            "--min-accuracy=0",
            f"--model-dir={tmp_path / 'training'}",
            f"--export-dir={tmp_path / 'xor'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 9, completed.stderr
    entries = list((tmp_path / "xor").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith(TEMP_PREFIX)
    assert (entries[0] / "saved_model.pb").is_file()  # complete, yet invisible to readers
    assert version_of(entries[0]) is None
    assert published_versions(tmp_path / "xor") == []


@pytest.mark.parametrize("name", ["abc", "0", "1.5", "-3", "\u00b2", ".tmp-export-x", "12a"])
def test_readers_ignore_entries_that_are_not_versions(tmp_path: Path, name: str) -> None:
    entry = tmp_path / name
    entry.mkdir()
    (entry / "saved_model.pb").write_bytes(b"")
    assert published_versions(tmp_path) == []
    assert next_version(tmp_path) < 10**11


def test_an_integer_dir_without_saved_model_is_not_published(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "saved_model.pb").write_bytes(b"")
    assert published_versions(tmp_path) == [8]
