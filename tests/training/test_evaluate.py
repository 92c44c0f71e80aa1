from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from training.data import Dataset
from training.evaluate import compute_metrics, evaluate

LABELS = [0.0, 0.0, 1.0, 1.0]
PROBABILITIES = [0.1, 0.4, 0.35, 0.8]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


LOGITS = [logit(p) for p in PROBABILITIES]
# Per-example cross-entropy, by hand: -log(1-p) for label 0, -log(p) for label 1.
LOSSES = [-math.log(0.9), -math.log(0.6), -math.log(0.35), -math.log(0.8)]


def test_metrics_match_hand_computed_values() -> None:
    metrics = compute_metrics(LABELS, LOGITS, global_step=1234)
    assert metrics["accuracy"] == pytest.approx(0.75)  # 0.35 is misclassified
    assert metrics["accuracy_baseline"] == pytest.approx(0.5)
    assert metrics["label/mean"] == pytest.approx(0.5)
    assert metrics["prediction/mean"] == pytest.approx(sum(PROBABILITIES) / 4)
    assert metrics["average_loss"] == pytest.approx(sum(LOSSES) / 4)
    # One evaluation batch of 4 rows: the Estimator's loss is the batch's sum.
    assert metrics["loss"] == pytest.approx(sum(LOSSES))
    # ROC: 3 of the 4 (positive, negative) pairs are ordered correctly.
    assert metrics["auc"] == pytest.approx(0.75, abs=1e-3)
    # PR (Davis & Goadrich interpolation): 1/2 for recall 0..1/2 at precision 1, then
    # between (TP, FP) = (1, 1) and (2, 1): integral of TP/(TP+1) dTP/2 = (1 - ln 1.5)/2.
    assert metrics["auc_precision_recall"] == pytest.approx(0.5 + (1 - math.log(1.5)) / 2, abs=2e-3)
    assert metrics["global_step"] == 1234
    assert set(metrics) == {
        "accuracy",
        "accuracy_baseline",
        "auc",
        "auc_precision_recall",
        "average_loss",
        "loss",
        "label/mean",
        "prediction/mean",
        "global_step",
    }


def test_loss_averages_batch_sums_over_batches() -> None:
    metrics = compute_metrics(LABELS, LOGITS, global_step=0, batch_size=2)
    assert metrics["loss"] == pytest.approx((LOSSES[0] + LOSSES[1] + LOSSES[2] + LOSSES[3]) / 2)
    uneven = compute_metrics(LABELS, LOGITS, global_step=0, batch_size=3)
    assert uneven["loss"] == pytest.approx((sum(LOSSES[:3]) + LOSSES[3]) / 2)
    assert uneven["average_loss"] == pytest.approx(sum(LOSSES) / 4)


def test_baseline_is_the_majority_label_rate() -> None:
    metrics = compute_metrics([1, 1, 1, 0], [5.0, 5.0, 5.0, 5.0], global_step=0)
    assert metrics["accuracy_baseline"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["label/mean"] == pytest.approx(0.75)


def test_constant_scores_have_chance_auc() -> None:
    metrics = compute_metrics(LABELS, [0.3] * 4, global_step=0)
    assert metrics["auc"] == pytest.approx(0.5, abs=1e-3)
    assert metrics["auc_precision_recall"] == pytest.approx(0.5, abs=1e-3)


def test_perfect_separation() -> None:
    metrics = compute_metrics([0, 1, 1, 0], [-9.0, 9.0, 8.0, -8.0], global_step=0)
    assert metrics["accuracy"] == 1.0
    assert metrics["auc"] == pytest.approx(1.0)
    assert metrics["auc_precision_recall"] == pytest.approx(1.0)


def test_zero_logit_counts_as_class_zero() -> None:
    # class_ids = argmax([0, logit]) breaks the tie towards class 0.
    assert compute_metrics([0], [0.0], global_step=0)["accuracy"] == 1.0
    assert compute_metrics([1], [0.0], global_step=0)["accuracy"] == 0.0


def test_extreme_logits_do_not_overflow() -> None:
    metrics = compute_metrics([1, 0], [1000.0, -1000.0], global_step=0)
    assert metrics["average_loss"] == 0.0
    wrong = compute_metrics([0], [1000.0], global_step=0)
    assert wrong["average_loss"] == pytest.approx(1000.0)


def test_evaluate_batches_the_predict_function() -> None:
    calls: list[int] = []
    features = np.zeros((300, 2), dtype=np.float32)
    labels = np.ones((300, 1), dtype=np.float32)
    data = Dataset(path=Path("x.csv"), features=features, labels=labels, sha256="")

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return np.full((len(batch), 1), 2.0, dtype=np.float32)

    metrics = evaluate(predict, data, global_step=7)
    assert calls == [128, 128, 44]
    assert metrics["accuracy"] == 1.0
    per_example = math.log1p(math.exp(-2.0))
    assert metrics["loss"] == pytest.approx((128 + 128 + 44) * per_example / 3)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="as many logits as labels"):
        compute_metrics([0, 1], [0.5], global_step=0)
