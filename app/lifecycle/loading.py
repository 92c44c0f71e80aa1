"""Loading one version: evaluation.json, the SavedModel, its signature, its golden set.

A version is served only after all of these passed (in the store's background thread):

1. its number is within int64 (``MAX_VERSION``), as TF Serving's and the protocols' are;
2. ``assets.extra/evaluation.json`` is an object whose ``model_version`` is the directory's
   number and whose ``metrics.accuracy`` is a finite number, at least the serving gate;
3. every file of the version is a regular file (``app.lifecycle.files``: nothing that blocks
   the poller or never ends), and ``tf.saved_model.load`` (plain TensorFlow: no Keras, no
   project code) succeeds;
4. its ``serving_default`` signature is the contract's (``app.lifecycle.signature``);
5. a warm-up call on its golden set (``app.lifecycle.golden``) returns finite, well-shaped
   outputs whose class_ids are the golden ones.

Then, for the model page, what the version learned is read and computed once, here on the
loading thread (never on a request, never through the response cache): its decision surface
(P(class 1) on a ``SURFACE_POINTS`` x ``SURFACE_POINTS`` grid over [0, 1]², one signature call)
and its training curve (``assets.extra/training_history.json``). Neither refuses a version: a
version without them is served, and the page says why they are missing.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from app.core.rowgroups import group_rows
from app.errors import ModelLoadError
from app.lifecycle.discovery import MAX_VERSION
from app.lifecycle.files import MissingFile, check_regular_files, read_json_file
from app.lifecycle.golden import GoldenSet, check_answers, read_golden_set
from app.lifecycle.signature import (
    EXPECTED_OUTPUTS,
    INPUT_NAME,
    SIGNATURE_KEY,
    SignatureInfo,
    check_signature,
    read_signature_defs,
)

log = logging.getLogger(__name__)

EVALUATION_FILE = Path("assets.extra") / "evaluation.json"
HISTORY_FILE = Path("assets.extra") / "training_history.json"
# Training writes at most 64 KiB (500 points); a curve for a page, read whole.
MAX_HISTORY_BYTES = 64 * 1024
SURFACE_POINTS = 50
SURFACE_DIGITS = 4


@dataclass(frozen=True)
class DecisionSurface:
    """P(class 1) over [0, 1]²: ``probability[i][j]`` at x1 = ``axis[i]``, x2 = ``axis[j]``."""

    axis: tuple[float, ...]
    probability: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class TrainingHistory:
    """A version's training curve, as ``training_history.json`` holds it (checked)."""

    points: tuple[tuple[int, float, float], ...]  # (step, loss, accuracy), steps increasing
    accuracy_of: str | None
    loss_of: str | None


class LoadedModel:
    """One loaded, checked and warmed-up version; immutable, and usable from any thread.

    Self-contained, so several versions can be held at once (version pinning).
    """

    def __init__(
        self,
        *,
        version: int,
        path: Path,
        root: Any,
        signature: Any,
        signature_info: SignatureInfo,
        signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
        evaluation: dict[str, Any],
        load_seconds: float,
    ) -> None:
        self.version = version
        self.path = path
        # The loaded object owns the variables the signature reads: keep it alive.
        self._root = root
        self._signature = signature
        self.signature_info = signature_info
        # The SavedModel's SignatureDefs (protobuf), for protocols that describe a model by them.
        self.signature_defs = signature_defs
        self.evaluation = evaluation
        self.load_seconds = load_seconds
        self.loaded_at = dt.datetime.now(dt.UTC)
        # What the model page shows, set once while loading (None: the *_problem says why).
        self.surface: DecisionSurface | None = None
        self.surface_problem: str | None = None
        self.history: TrainingHistory | None = None
        self.history_problem: str | None = None

    @property
    def loaded_at_text(self) -> str:
        return self.loaded_at.strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{self.loaded_at.microsecond // 1000:03d}Z"
        )

    @property
    def metrics(self) -> dict[str, float | int]:
        """The evaluation's numeric metrics, as written (global_step stays an integer)."""
        return _numeric_metrics(self.evaluation["metrics"])

    def run(self, features: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """The serving signature's outputs for a float32 [n, 2] batch, row i answering row i.

        One signature call on the batch's distinct rows; a repeated row shares the outputs of
        its first occurrence. The model is a pure function of a row, so nothing changes but
        the cost: a batch of bits has at most 4 distinct rows, and a 10,000-pair request is a
        4-row call, not a 10,000-row one (whose string output alone is 10,000 Python objects),
        and equal pairs of a batch get bit-identical answers. (A row's last float bit may
        still depend on how many rows the call had, as matrix kernels round by batch shape.)
        """
        groups = group_rows(features)
        rows = features if groups is None else features[groups.first]
        outputs = self._signature(**{INPUT_NAME: tf.constant(rows, dtype=tf.float32)})
        if groups is None:
            return {name: tensor.numpy() for name, tensor in outputs.items()}
        return {name: tensor.numpy()[groups.inverse] for name, tensor in outputs.items()}

    def call_signature(self, rows: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """One call of the serving signature on ``rows`` as they are (no grouping: for rows
        known to be distinct, such as the decision surface's grid)."""
        outputs = self._signature(**{INPUT_NAME: tf.constant(rows, dtype=tf.float32)})
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def _numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    return {
        name: value
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def read_evaluation(path: Path, version: int, min_accuracy: float = 0.0) -> dict[str, Any]:
    """The version's evaluation.json, checked: model_version matches, accuracy is a number
    of at least ``min_accuracy`` (the serving gate)."""
    file = path / EVALUATION_FILE
    document = read_json_file(file)
    if not isinstance(document, dict):
        raise ModelLoadError(f"{file}: must be a JSON object")
    declared = document.get("model_version")
    if type(declared) is not int or declared != version:
        raise ModelLoadError(
            f"{file}: model_version is {declared!r}, but the directory is version {version}"
        )
    metrics = document.get("metrics")
    if not isinstance(metrics, dict):
        raise ModelLoadError(f"{file}: 'metrics' must be an object")
    accuracy = metrics.get("accuracy")
    if (
        not isinstance(accuracy, int | float)
        or isinstance(accuracy, bool)
        or not math.isfinite(accuracy)
    ):
        raise ModelLoadError(f"{file}: metrics.accuracy must be a number, got {accuracy!r}")
    if accuracy < min_accuracy:
        raise ModelLoadError(
            f"{file}: accuracy {accuracy} is below the serving gate "
            f"(min_accuracy {min_accuracy}): refused"
        )
    return document


def warm_up(model: LoadedModel, golden: GoldenSet) -> None:
    """Run the golden set once through the signature: outputs must be finite and shaped as
    the contract says, and the class_ids the golden ones."""
    try:
        outputs = model.run(golden.inputs)
    except Exception as exc:
        raise ModelLoadError(f"{model.path}: warm-up call failed: {exc}") from exc
    rows = len(golden.inputs)
    for name, (_, shape) in EXPECTED_OUTPUTS.items():
        expected = (rows, *shape[1:])
        if outputs[name].shape != expected:
            raise ModelLoadError(
                f"{model.path}: warm-up output {name!r} has shape {outputs[name].shape}, "
                f"expected {expected}"
            )
    for name in ("logits", "logistic", "probabilities"):
        if not np.all(np.isfinite(outputs[name])):
            raise ModelLoadError(f"{model.path}: warm-up output {name!r} is not finite")
    if not np.allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-3):
        raise ModelLoadError(f"{model.path}: warm-up probabilities do not sum to 1")
    if not np.all(np.isin(outputs["class_ids"], (0, 1))):
        raise ModelLoadError(f"{model.path}: warm-up class_ids are not 0 or 1")
    check_answers(golden, outputs["class_ids"], model.path)


def compute_surface(model: LoadedModel, points: int = SURFACE_POINTS) -> DecisionSurface:
    """P(class 1) (``probabilities[:, 1]``) on a ``points`` x ``points`` grid over [0, 1]²
    (corners included), in one call of the loaded signature: not through the prediction
    service, so no response cache row and no request metric comes of it."""
    axis = np.linspace(0.0, 1.0, points, dtype=np.float32)
    x1, x2 = np.meshgrid(axis, axis, indexing="ij")
    grid = np.stack([x1.ravel(), x2.ravel()], axis=1).astype(np.float32)
    probability = model.call_signature(grid)["probabilities"][:, 1].astype(np.float64)
    if probability.shape != (points * points,) or not np.all(np.isfinite(probability)):
        raise ValueError("probabilities on the grid are not finite [n, 2] values")
    rounded = np.round(probability, SURFACE_DIGITS).reshape(points, points)
    return DecisionSurface(
        axis=tuple(round(float(value), SURFACE_DIGITS) for value in axis),
        probability=tuple(tuple(float(value) for value in row) for row in rounded),
    )


def _finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite JSON number, else None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float
        return None
    return number if math.isfinite(number) else None


def read_history(path: Path, global_step: Any) -> TrainingHistory:
    """The version's training_history.json, checked: points of an integer step (increasing),
    finite loss and accuracy, the last at the evaluation's ``global_step``. ModelLoadError
    (MissingFile when there is none) says what is wrong."""
    file = path / HISTORY_FILE
    document = read_json_file(file, MAX_HISTORY_BYTES)
    points = document.get("points") if isinstance(document, dict) else None
    if not isinstance(points, list) or not points:
        raise ModelLoadError(f"{file}: must be an object with a non-empty list 'points'")
    checked: list[tuple[int, float, float]] = []
    for index, point in enumerate(points):
        step = point.get("step") if isinstance(point, dict) else None
        loss = _finite(point.get("loss")) if isinstance(point, dict) else None
        accuracy = _finite(point.get("accuracy")) if isinstance(point, dict) else None
        if type(step) is not int or loss is None or accuracy is None:
            raise ModelLoadError(
                f"{file}: points[{index}] must have an integer step and finite loss and accuracy"
            )
        if checked and step <= checked[-1][0]:
            raise ModelLoadError(f"{file}: points[{index}]: steps must increase")
        checked.append((step, loss, accuracy))
    if checked[-1][0] != global_step:
        raise ModelLoadError(
            f"{file}: ends at step {checked[-1][0]}, but the evaluation's global_step is "
            f"{global_step!r}"
        )
    texts = {
        key: value if isinstance(value, str) else None
        for key in ("accuracy_of", "loss_of")
        for value in [document.get(key)]
    }
    return TrainingHistory(tuple(checked), texts["accuracy_of"], texts["loss_of"])


def describe(model: LoadedModel) -> None:
    """Compute the model page's surface and read its training curve, once, while loading."""
    try:
        model.surface = compute_surface(model)
    except Exception as exc:  # the page shows the reason; the version still serves
        model.surface_problem = f"the decision surface could not be computed: {exc}"
        log.warning("%s: %s", model.path, model.surface_problem)
    try:
        model.history = read_history(model.path, model.evaluation["metrics"].get("global_step"))
    except MissingFile:
        model.history_problem = (
            f"this version has no {HISTORY_FILE} (exported before training recorded its "
            "curve, or by a run that trained no step)"
        )
    except ModelLoadError as exc:
        model.history_problem = f"its training curve is unusable: {exc}"
        log.warning("%s", model.history_problem)


def load_version(path: Path, version: int, min_accuracy: float = 0.0) -> LoadedModel:
    """Load, check and warm up one version directory, or raise ModelLoadError.

    A version whose number, evaluation (accuracy below ``min_accuracy``), golden set or files
    are wrong is refused before TensorFlow reads anything.
    """
    start = time.perf_counter()
    if not 0 < version <= MAX_VERSION:
        raise ModelLoadError(f"{path}: version number beyond int64 (at most {MAX_VERSION})")
    evaluation = read_evaluation(path, version, min_accuracy)
    golden = read_golden_set(path, version)
    check_regular_files(path)
    try:
        root = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a loadable SavedModel: {exc}") from exc
    signatures = getattr(root, "signatures", {})
    if SIGNATURE_KEY not in signatures:
        raise ModelLoadError(f"{path}: no {SIGNATURE_KEY!r} signature (has {sorted(signatures)})")
    signature = signatures[SIGNATURE_KEY]
    info = check_signature(signature, path)
    model = LoadedModel(
        version=version,
        path=path,
        root=root,
        signature=signature,
        signature_info=info,
        signature_defs=read_signature_defs(path),
        evaluation=evaluation,
        load_seconds=0.0,
    )
    warm_up(model, golden)
    describe(model)
    model.load_seconds = time.perf_counter() - start
    return model
