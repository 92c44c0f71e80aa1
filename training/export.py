"""Publishing a trained model as ``<export_dir>/<version>/``: a SavedModel, its evaluation and
its golden set.

Publishing is atomic: everything is written into a temporary directory inside ``export_dir``
whose name is not an integer, checked by loading it back (evaluated, and made to answer the
golden set through its serving signature), made world-readable, synced to disk, and then
renamed to the version number. Readers never see a half-written version, nor one that fails
the golden set.

Beside the evaluation, ``assets.extra/training_history.json`` holds the training curve (the
model dir's ``history.jsonl``, downsampled to at most ``MAX_HISTORY_POINTS`` points and at most
``MAX_HISTORY_BYTES``), ending at the evaluation's ``global_step``; the model page of the
server plots it. Without a curve that ends there (a model dir trained before the curve was
recorded, resumed with no further step) the version is published without the file.

The export dir is a model repository (``modelrepo``): the version's ``MANIFEST.json`` (every
file's path, size and sha256) is written last into the staging directory, after the golden set
and the evaluation, and once the version is renamed into place the repository's ``index.json``
is rewritten (under the repository's lock). ``point_label`` then moves a label to it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from modelrepo.errors import ModelRepoError
from modelrepo.manifest import build_manifest, write_manifest
from modelrepo.operations import promote, refresh_index
from modelrepo.repository import LocalRepository
from training.errors import ExportError
from training.golden import PredictClassIds, check_golden_set, write_golden_set
from training.model import INPUT_NAME, N_FEATURES
from training.train import HistoryPoint
from training.versions import next_version

log = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"
EVALUATION_FILE = Path("assets.extra") / "evaluation.json"
HISTORY_FILE = Path("assets.extra") / "training_history.json"
# A curve for a page: a few hundred points draw it, and the server reads the file whole.
MAX_HISTORY_POINTS = 500
MAX_HISTORY_BYTES = 64 * 1024
TEMP_PREFIX = ".tmp-export-"
_RENAME_ATTEMPTS = 20
# Longer than any export takes (seconds); see remove_stale_staging.
STALE_STAGING_SECONDS = 3600

PredictLogits = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
# Given the exported model's logits function, returns the evaluation document (without
# "model_version", which export adds) or raises to stop the publication.
Evaluator = Callable[[PredictLogits], dict[str, Any]]


class ServingModule(tf.Module):  # type: ignore[misc]
    """The exported object: the model behind an Estimator-style ``serving_default`` signature."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__(name="xor_classifier")
        self.model = model

    @tf.function(  # type: ignore[untyped-decorator]
        input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32, name=INPUT_NAME)]
    )
    def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = self.model(inputs, training=False)
        # The binary head scores class 0 with a constant 0 logit, so ties go to class 0.
        two_class_logits = tf.concat([tf.zeros_like(logits), logits], axis=-1)
        class_ids = tf.expand_dims(tf.argmax(two_class_logits, axis=-1), axis=-1)
        return {
            "logits": logits,
            "logistic": tf.sigmoid(logits),
            "probabilities": tf.nn.softmax(two_class_logits),
            "class_ids": class_ids,
            "classes": tf.strings.as_string(class_ids),
        }


@dataclass(frozen=True)
class PublishedVersion:
    version: int
    path: Path
    evaluation: dict[str, Any]


def _make_readable_and_durable(root: Path) -> None:
    """chmod a+rX (mkdtemp makes 0700 dirs) and fsync every file and directory under ``root``."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            os.chmod(path, 0o644)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(directory))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_staging(
    export_dir: Path, older_than_seconds: float = STALE_STAGING_SECONDS
) -> None:
    """Remove temporary export dirs left by killed runs (untouched for ``older_than_seconds``).

    A run killed during its export leaves its ``.tmp-export-*`` dir behind; readers ignore it,
    but nothing else would ever remove it. A young one may belong to a run exporting right now
    into the same export dir, so only old ones go.
    """
    cutoff = time.time() - older_than_seconds
    for entry in export_dir.glob(f"{TEMP_PREFIX}*"):
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry)
                log.info("removed %s, left by an interrupted export", entry)
        except OSError as exc:
            log.warning("cannot remove %s: %s", entry, exc)


def _write_evaluation(staging: Path, document: dict[str, Any]) -> None:
    path = staging / EVALUATION_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def downsample(points: Sequence[HistoryPoint], at_most: int) -> list[HistoryPoint]:
    """At most ``at_most`` points spread evenly over ``points``, the first and last kept."""
    if len(points) <= at_most:
        return list(points)
    if at_most < 2:
        return list(points[-1:])
    indices = np.unique(np.linspace(0, len(points) - 1, at_most).round().astype(int))
    return [points[int(index)] for index in indices]


def history_document(points: Sequence[HistoryPoint], global_step: int) -> bytes | None:
    """``training_history.json`` for a model trained to ``global_step``, or None when
    ``points`` do not end there. Downsampled until it fits ``MAX_HISTORY_BYTES``."""
    if not points or points[-1].step != global_step:
        return None
    at_most = MAX_HISTORY_POINTS
    while True:
        kept = downsample(points, at_most)
        document = {
            "global_step": global_step,
            "loss_of": "training loss per step (summed over the batch), mean over the steps "
            "since the previous point",
            "accuracy_of": "training batch: the share of training examples classified right "
            "over the steps since the previous point",
            "recorded_points": len(points),
            "points": [point.to_json() for point in kept],
        }
        data = (json.dumps(document) + "\n").encode("utf-8")
        if len(data) <= MAX_HISTORY_BYTES or len(kept) == 1:
            return data
        at_most = len(kept) // 2


def _write_history(
    staging: Path, history: Sequence[HistoryPoint], evaluation: dict[str, Any]
) -> None:
    global_step = evaluation.get("metrics", {}).get("global_step")
    data = history_document(history, global_step) if isinstance(global_step, int) else None
    if data is None:
        last = history[-1].step if history else None
        log.warning(
            "no training curve ends at global step %s (the model dir's ends at %s): "
            "publishing without %s",
            global_step,
            last,
            HISTORY_FILE,
        )
        return
    path = staging / HISTORY_FILE
    path.parent.mkdir(exist_ok=True)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write the training curve: {exc.strerror}") from exc


def _load_signature_outputs(path: Path) -> tuple[PredictLogits, PredictClassIds]:
    """The written SavedModel's ``logits`` and ``class_ids``, through ``serving_default``."""
    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE_KEY]

    def predict_logits(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        logits: npt.NDArray[np.float32] = signature(**{INPUT_NAME: tf.constant(features)})[
            "logits"
        ].numpy()
        return logits

    def predict_class_ids(features: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        class_ids: npt.NDArray[np.int64] = signature(**{INPUT_NAME: tf.constant(features)})[
            "class_ids"
        ].numpy()
        return class_ids

    return predict_logits, predict_class_ids


def export_saved_model(
    model: keras.Model,
    export_dir: str | Path,
    *,
    evaluate: Evaluator,
    at_least: int = 1,
    history: Sequence[HistoryPoint] = (),
) -> PublishedVersion:
    """Publish ``model`` as the next version in ``export_dir``, evaluated by ``evaluate``.

    The version number is above every version in ``export_dir`` and at least ``at_least``
    (one above the newest version of the repository it is uploaded to next, if any).

    ``evaluate`` receives the logits function of the SavedModel as written (loaded back from
    disk), so the evaluation describes exactly what is published. If it raises, for example at
    a quality gate, nothing is published and the exception propagates. Then the same SavedModel
    must answer the golden set it ships with, or GoldenSetError is raised and nothing published.

    ``history`` is the model's training curve; written as ``training_history.json`` if it ends
    at the evaluation's ``global_step``.
    """
    export_dir = Path(export_dir)
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(export_dir)
        staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=export_dir))
    except OSError as exc:
        raise ExportError(f"{export_dir}: cannot write versions here: {exc.strerror}") from exc
    try:
        module = ServingModule(model)
        try:
            tf.saved_model.save(module, str(staging), signatures={SIGNATURE_KEY: module.serve})
        except (tf.errors.OpError, OSError) as exc:  # e.g. a full disk
            reason = getattr(exc, "message", None) or str(exc)
            raise ExportError(
                f"{export_dir}: cannot write the SavedModel: "
                f"{reason.rsplit(';', 1)[-1].strip() or reason}"
            ) from exc
        try:
            write_golden_set(staging)
        except OSError as exc:
            raise ExportError(f"{export_dir}: cannot write the golden set: {exc.strerror}") from exc
        predict_logits, predict_class_ids = _load_signature_outputs(staging)
        evaluation = evaluate(predict_logits)
        check_golden_set(predict_class_ids, staging)
        _write_history(staging, history, evaluation)
        published = _publish(staging, export_dir, evaluation, at_least)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("Exported version %d to %s", published.version, published.path)
    return published


def _write_manifest(staging: Path, version: int) -> None:
    """MANIFEST.json, last: every other file of the version is written by now."""
    try:
        write_manifest(staging, build_manifest(staging, version))
    except ModelRepoError as exc:
        raise ExportError(f"cannot write the manifest: {exc}") from exc


def _publish(
    staging: Path, export_dir: Path, evaluation: dict[str, Any], at_least: int
) -> PublishedVersion:
    for _ in range(_RENAME_ATTEMPTS):
        own = next_version(export_dir)
        version = max(own, at_least)  # the repository's newest may be above this dir's
        document = {"model_version": version, **evaluation}
        try:
            _write_evaluation(staging, document)
            _write_manifest(staging, version)
            _make_readable_and_durable(staging)
            target = export_dir / str(version)
            # rename(2) fails if a non-empty directory took the name meanwhile: pick again.
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise ExportError(f"{export_dir}: cannot publish version: {exc}") from exc
        _fsync_dir(export_dir)
        if version > own:
            log.info(
                "version %d, not %d: above the newest version (%d) of the repository it goes to",
                version,
                own,
                at_least - 1,
            )
        _refresh_index(export_dir, version)
        return PublishedVersion(version, target, document)
    raise ExportError(f"{export_dir}: no free version number after {_RENAME_ATTEMPTS} attempts")


def _refresh_index(export_dir: Path, version: int) -> None:
    """Rewrite the repository's index.json. The version is published (and served) whatever
    happens here, and the next publish or ``xor-models gc`` rewrites the index from a listing:
    a failure is a warning, not a failed export."""
    try:
        refresh_index(LocalRepository(export_dir))
    except ModelRepoError as exc:
        log.warning("version %d published, but index.json was not rewritten: %s", version, exc)


def point_label(export_dir: Path, version: int, label: str) -> None:
    """Point ``label`` at the published ``version`` (its previous value kept in its history),
    as ``xor-models promote`` does: the version's files are checked against its manifest."""
    try:
        change = promote(LocalRepository(export_dir), version, label)
    except ModelRepoError as exc:
        raise ExportError(f"version {version} published, but label {label} not set: {exc}") from exc
    previous = change.before.labels.get(label)
    log.info(
        "label %s -> version %d%s",
        label,
        version,
        f" (was {previous})" if previous is not None and previous != version else "",
    )
