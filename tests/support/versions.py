"""Versions in a model dir: copies of the trained one, and broken ones, published as training
publishes them (a staging directory renamed into place)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

from app.lifecycle.signature import SIGNATURE_KEY


def publish_copy(source: Path, model_dir: Path, version: int) -> Path:
    """Copy a published version to ``model_dir/<version>`` as a new version (atomically)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-export-{version}"
    shutil.copytree(source, staging)
    evaluation_file = staging / "assets.extra" / "evaluation.json"
    evaluation = json.loads(evaluation_file.read_text())
    evaluation["model_version"] = version
    evaluation_file.write_text(json.dumps(evaluation))
    target = model_dir / str(version)
    os.rename(staging, target)
    return target


def write_evaluation(path: Path, version: int, accuracy: float = 1.0) -> None:
    """The smallest evaluation.json the server accepts for ``version``."""
    (path / "assets.extra").mkdir(parents=True, exist_ok=True)
    document = {"model_version": version, "metrics": {"accuracy": accuracy}}
    (path / "assets.extra" / "evaluation.json").write_text(json.dumps(document))


def save_module(module: tf.Module, path: Path, version: int, key: str = SIGNATURE_KEY) -> None:
    """Save ``module.serve`` as the signature ``key`` of a version, with its evaluation."""
    tf.saved_model.save(module, str(path), signatures={key: module.serve})
    write_evaluation(path, version)


class _WrongInput(tf.Module):  # type: ignore[misc]
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])  # type: ignore[untyped-decorator]
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": x[:, :1]}


def _binary_head(logits: tf.Tensor) -> dict[str, tf.Tensor]:
    """The contract's outputs for ``logits`` [n, 1], as the Estimator's binary head made them."""
    two = tf.concat([tf.zeros_like(logits), logits], axis=-1)
    class_ids = tf.expand_dims(tf.argmax(two, axis=-1), -1)
    return {
        "logits": logits,
        "logistic": tf.sigmoid(logits),
        "probabilities": tf.nn.softmax(two),
        "class_ids": class_ids,
        "classes": tf.strings.as_string(class_ids),
    }


class _NaNHead(tf.Module):  # type: ignore[misc]
    """The right signature, but outputs that are not finite."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="inputs")])  # type: ignore[untyped-decorator]
    def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return _binary_head(inputs[:, :1] * float("nan"))


class XnorHead(tf.Module):  # type: ignore[misc]
    """The right signature and confident, finite outputs, but the wrong function: XNOR (what
    training on flipped labels gives), so every pair is answered wrong."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="inputs")])  # type: ignore[untyped-decorator]
    def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        differ = tf.abs(inputs[:, :1] - inputs[:, 1:])
        return _binary_head(8.0 * (1.0 - 2.0 * differ))  # equal bits: class 1


# Writes a broken version ``version`` at ``path`` (inside a model dir), given the trained one.
Breaker = Callable[[Path, Path, int], None]


def garbage_saved_model(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    (path / "saved_model.pb").write_bytes(b"this is not a protobuf")


def missing_variables(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    shutil.rmtree(path / "variables")


def wrong_signature(trained: Path, path: Path, version: int) -> None:
    save_module(_WrongInput(), path, version)


def no_serving_default(trained: Path, path: Path, version: int) -> None:
    save_module(_NaNHead(), path, version, key="predict")


def non_finite_outputs(trained: Path, path: Path, version: int) -> None:
    save_module(_NaNHead(), path, version)


def xnor_model(trained: Path, path: Path, version: int) -> None:
    """An XNOR model whose evaluation.json says accuracy 1.0 (its trainer's flipped labels)."""
    save_module(XnorHead(), path, version)


def write_golden(path: Path, inputs: list[list[int]], class_ids: list[int]) -> None:
    """``assets.extra/golden.json`` of the version in ``path``."""
    (path / "assets.extra").mkdir(parents=True, exist_ok=True)
    document = {"inputs": inputs, "class_ids": class_ids}
    (path / "assets.extra" / "golden.json").write_text(json.dumps(document))


def golden_set_of_xnor(trained: Path, path: Path, version: int) -> None:
    """The trained (right) model, with a golden set it must fail."""
    publish_copy(trained, path.parent, version)
    write_golden(path, [[0, 0], [0, 1], [1, 0], [1, 1]], [1, 0, 0, 1])


def golden_set_malformed(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    write_golden(path, [[0, 0], [0, 2]], [0, 1])


def evaluation_of_another_version(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    write_evaluation(path, version - 1)


def evaluation_missing(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    (path / "assets.extra" / "evaluation.json").unlink()


def accuracy_not_a_number(trained: Path, path: Path, version: int) -> None:
    publish_copy(trained, path.parent, version)
    document = {"model_version": version, "metrics": {"accuracy": "perfect"}}
    (path / "assets.extra" / "evaluation.json").write_text(json.dumps(document))


# Each way a version can be broken, and what the refusal says.
BREAKERS: list[tuple[Breaker, str]] = [
    (garbage_saved_model, "not a loadable SavedModel"),
    (missing_variables, "not a loadable SavedModel"),
    (wrong_signature, "must take exactly 'inputs'"),
    (no_serving_default, "no 'serving_default' signature"),
    (non_finite_outputs, "not finite"),
    (evaluation_of_another_version, "model_version is"),
    (evaluation_missing, "evaluation.json: missing"),
    (accuracy_not_a_number, "metrics.accuracy must be a number"),
    (xnor_model, "answers 4 of the 4 pairs of its golden set"),
    (golden_set_of_xnor, "answers 4 of the 4 pairs of its golden set"),
    (golden_set_malformed, r"inputs\[1\] must be a pair of the integers 0 or 1"),
]


def publish_verified_copy(source: Path, model_dir: Path, version: int) -> Path:
    """:func:`publish_copy` with a MANIFEST.json of its own files (the trained version's
    manifest names the trained number and its evaluation.json's bytes): a version that
    verifies, as training publishes one."""
    from modelrepo.manifest import build_manifest, write_manifest

    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-verified-{version}"
    copied = publish_copy(source, staging, version)
    (copied / "MANIFEST.json").unlink(missing_ok=True)
    write_manifest(copied, build_manifest(copied, version))
    target = model_dir / str(version)
    os.rename(copied, target)
    staging.rmdir()
    return target
