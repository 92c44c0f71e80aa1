"""Work per distinct row: the grouping itself, the model call on distinct rows, /predict's JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from app.model_store import LoadedModel, load_version
from app.prediction import ModelOutputs, pairs_batch
from app.routes import GROUPED_RENDERING_FROM, render_predict_response
from app.rowgroups import group_rows, row_keys

PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.fixture(scope="module")
def model(trained_version: Path) -> LoadedModel:
    return load_version(trained_version, int(trained_version.name))


def test_no_groups_when_every_row_is_distinct_or_there_is_one_row() -> None:
    assert group_rows(np.array([[0, 1], [1, 0], [1, 1]], dtype=np.float32)) is None
    assert group_rows(np.array([[1, 1]], dtype=np.float32)) is None
    assert group_rows(np.zeros((0, 2), dtype=np.float32)) is None


def test_groups_point_at_first_occurrences_in_order_of_the_rows() -> None:
    rows = np.array([[1, 1], [0, 1], [1, 1], [0, 1], [0, 0]], dtype=np.float32)
    groups = group_rows(rows)
    assert groups is not None
    assert sorted(groups.first.tolist()) == [0, 1, 4]
    np.testing.assert_array_equal(rows[groups.first][groups.inverse], rows)
    assert groups.inverse[0] == groups.inverse[2] and groups.inverse[1] == groups.inverse[3]


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 1)), max_size=80))
def test_grouping_rebuilds_every_array_and_joins_only_rows_equal_in_all(
    rows: list[tuple[int, int, int]],
) -> None:
    features = np.array([[a, b] for a, b, _ in rows], dtype=np.float32).reshape(-1, 2)
    labels = np.array([[c] for *_, c in rows], dtype=np.int64).reshape(-1, 1)
    groups = group_rows(features, labels)
    distinct = len(set(rows))
    if groups is None:
        assert distinct == len(rows)
        return
    assert len(groups.first) == distinct
    for array in (features, labels):
        np.testing.assert_array_equal(array[groups.first][groups.inverse], array)
    first_seen: dict[tuple[int, int, int], int] = {}
    for index, row in enumerate(rows):
        first_seen.setdefault(row, index)
    assert sorted(groups.first.tolist()) == sorted(first_seen.values())


def test_rows_are_compared_by_their_bytes() -> None:
    # -0.0 == 0.0 as numbers but not as bytes: kept apart (each gets its own, exact, answer).
    groups = group_rows(np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0]], dtype=np.float32))
    assert groups is not None
    assert len(groups.first) == 2
    assert groups.inverse[0] == groups.inverse[2] != groups.inverse[1]


def test_rows_must_be_whole_8_byte_words() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        row_keys(np.zeros((3, 3), dtype=np.float32))
    assert len(row_keys(np.zeros((3, 4), dtype=np.float32))) == 2


class RecordingSignature:
    """Wraps the real signature and records the batches it is called with."""

    def __init__(self, signature: Any) -> None:
        self.signature = signature
        self.batches: list[npt.NDArray[Any]] = []

    def __call__(self, **inputs: Any) -> Any:
        self.batches.append(inputs["inputs"].numpy())
        return self.signature(**inputs)


def test_the_model_is_called_on_distinct_rows_and_answers_every_row(model: LoadedModel) -> None:
    rng = np.random.default_rng(1)
    features = rng.integers(0, 2, size=(10_000, 2)).astype(np.float32)
    recording = RecordingSignature(model._signature)
    model._signature = recording
    try:
        outputs = model.run(features)
        distinct = recording.batches[0]
        direct = {
            name: tensor.numpy()
            for name, tensor in recording.signature(inputs=tf.constant(distinct)).items()
        }
        model.run(np.array(PAIRS, dtype=np.float32))  # all distinct: passed through as is
    finally:
        model._signature = recording.signature
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


def _per_row_json(pairs: list[tuple[int, int]], outputs: ModelOutputs) -> bytes:
    return orjson.dumps(
        {
            "model_version": outputs.model_version,
            "predictions": [
                {
                    "inputs": list(pair),
                    "class_id": int(outputs["class_ids"][i, 0]),
                    "probabilities": outputs["probabilities"][i].astype(np.float64).tolist(),
                }
                for i, pair in enumerate(pairs)
            ],
        }
    )


@pytest.mark.parametrize(
    "size", [1, 2, GROUPED_RENDERING_FROM - 1, GROUPED_RENDERING_FROM, 1000, 10_000]
)
def test_predict_json_is_the_same_bytes_however_it_is_encoded(
    model: LoadedModel, size: int
) -> None:
    rng = np.random.default_rng(size)
    pairs = [PAIRS[i] for i in rng.integers(0, 4, size=size)]
    batch = pairs_batch(pairs, where="instances", loc=lambda i, j: "x", max_rows=10_000)
    outputs = ModelOutputs(model.version, model.run(batch.features))
    body = render_predict_response(pairs, batch, outputs)
    assert body == _per_row_json(pairs, outputs)
    document = orjson.loads(body)
    assert [p["inputs"] for p in document["predictions"]] == [list(p) for p in pairs]
    assert [p["class_id"] for p in document["predictions"]] == [a ^ b for a, b in pairs]


def test_predict_json_keeps_rows_apart_that_differ_only_in_their_outputs() -> None:
    # The same pair with two different answers (as from two versions) must not be merged.
    pairs = [(0, 1)] * GROUPED_RENDERING_FROM
    batch = pairs_batch(pairs, where="instances", loc=lambda i, j: "x", max_rows=10_000)
    probabilities = np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (len(pairs), 1))
    probabilities[7] = [0.5, 0.5]
    class_ids = np.ones((len(pairs), 1), dtype=np.int64)
    class_ids[9] = 0
    outputs = ModelOutputs(3, {"class_ids": class_ids, "probabilities": probabilities})
    body = render_predict_response(pairs, batch, outputs)
    assert body == _per_row_json(pairs, outputs)
    predictions = orjson.loads(body)["predictions"]
    assert predictions[7]["probabilities"] == [0.5, 0.5] and predictions[9]["class_id"] == 0
    assert predictions[8] == {"inputs": [0, 1], "class_id": 1, "probabilities": [0.25, 0.75]}
