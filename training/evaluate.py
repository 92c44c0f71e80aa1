"""The Estimator binary-classification head's evaluation metrics, computed from logits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from training.data import Dataset

# numpy_input_fn's default batch size: the Estimator's "loss" metric depends on it.
EVAL_BATCH_SIZE = 128
# tf.metrics.auc's default, which the Estimator head used for both curves.
AUC_THRESHOLDS = 200

Floats = npt.NDArray[np.float64]
PredictLogits = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def _per_example_loss(labels: Floats, logits: Floats) -> Floats:
    # Sigmoid cross-entropy in its overflow-free form, as tf.nn.sigmoid_cross_entropy_with_logits.
    loss: Floats = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    return loss


def _auc(labels: Floats, probabilities: Floats, curve: str) -> float:
    import keras

    metric = keras.metrics.AUC(
        num_thresholds=AUC_THRESHOLDS, curve=curve, summation_method="interpolation"
    )
    metric.update_state(labels, probabilities)
    return float(metric.result())


def compute_metrics(
    labels: npt.ArrayLike,
    logits: npt.ArrayLike,
    *,
    global_step: int,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, float | int]:
    """Metric set of the Estimator's binary head for ``labels`` (0/1) and model ``logits``.

    ``loss`` is the Estimator's reported loss: per-example losses summed within each batch of
    ``batch_size`` rows, then averaged over batches. ``average_loss`` is the plain mean.
    ``auc`` and ``auc_precision_recall`` use 200 thresholds, as ``tf.metrics.auc`` did.
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if y.shape != z.shape or y.size == 0:
        raise ValueError(f"need as many logits as labels (>0), got {z.size} and {y.size}")
    losses = _per_example_loss(y, z)
    batch_sums = [
        float(losses[start : start + batch_size].sum()) for start in range(0, y.size, batch_size)
    ]
    probabilities = np.exp(-np.logaddexp(0.0, -z))  # sigmoid without overflow
    # class_ids = argmax([0, logit]): ties go to class 0, so class 1 needs a positive logit.
    predicted = (z > 0).astype(np.float64)
    label_mean = float(y.mean())
    return {
        "accuracy": float((predicted == y).mean()),
        "accuracy_baseline": max(label_mean, 1.0 - label_mean),
        "auc": _auc(y, probabilities, "ROC"),
        "auc_precision_recall": _auc(y, probabilities, "PR"),
        "average_loss": float(losses.mean()),
        "loss": float(np.mean(batch_sums)),
        "label/mean": label_mean,
        "prediction/mean": float(probabilities.mean()),
        "global_step": int(global_step),
    }


def evaluate(
    predict_logits: PredictLogits,
    data: Dataset,
    *,
    global_step: int,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, float | int]:
    """Run ``predict_logits`` over ``data`` in batches and compute the head's metrics."""
    logits = np.concatenate(
        [
            np.asarray(predict_logits(data.features[start : start + batch_size]))
            for start in range(0, data.rows, batch_size)
        ]
    )
    return compute_metrics(data.labels, logits, global_step=global_step, batch_size=batch_size)
