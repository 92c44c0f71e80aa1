"""The prediction core without HTTP: request parsing, validation and the service contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from app.errors import InvalidInput, ModelUnavailable, VersionNotLoaded
from app.model_store import ModelStore
from app.prediction import (
    OUTPUT_NAMES,
    Batch,
    PredictionService,
    pairs_batch,
    parse_predict_request,
    validate_bits,
)


def loc(i: int, j: int) -> str:
    return f"rows[{i}][{j}]"


def batch_of(pairs: list[tuple[int, int]]) -> Batch:
    return pairs_batch(pairs, where="rows", loc=loc, max_rows=10_000)


def test_parse_single_and_batch() -> None:
    assert parse_predict_request({"inputs": [1, 0]}, 10) == ([(1, 0)], True)
    assert parse_predict_request({"instances": [[0, 0], [1, 1]]}, 10) == ([(0, 0), (1, 1)], False)


def test_batch_size_limit_is_a_parameter() -> None:
    assert len(parse_predict_request({"instances": [[0, 1]] * 3}, 3)[0]) == 3
    with pytest.raises(InvalidInput) as raised:
        parse_predict_request({"instances": [[0, 1]] * 4}, 3)
    assert raised.value.details[0].msg == "holds 4 pairs, at most 3 allowed"


def test_details_are_capped_but_counted() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_predict_request({"instances": [[2, 2]] * 100}, 1000)
    assert len(raised.value.details) == 20
    assert raised.value.message.startswith("instances[0][0]: must be 0 or 1, got 2 (and ")


def test_no_model_is_unavailable(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.refresh()
    service = PredictionService(store, retry_after_seconds=3)
    with pytest.raises(ModelUnavailable) as raised:
        service.predict(batch_of([(0, 1)]))
    assert raised.value.headers == {"Retry-After": "3"}
    assert raised.value.status == 503


@pytest.mark.parametrize("size", [1, 2, 5, 64, 5000])
def test_predictions_are_in_order_whatever_the_batch_size(
    trained_model_dir: Path, size: int
) -> None:
    store = ModelStore(trained_model_dir)
    model = store.refresh()
    assert model is not None
    service = PredictionService(store)
    pairs = [((i >> 1) & 1, i & 1) for i in range(size)]

    async def run() -> list[int]:
        result = await service.predict_async(batch_of(pairs))
        assert result.model_version == model.version
        assert set(result.tensors) == set(OUTPUT_NAMES)
        for name in OUTPUT_NAMES:
            assert result[name].shape[0] == size
        return [int(c) for c in result["class_ids"].reshape(-1)]

    assert anyio.run(run) == [a ^ b for a, b in pairs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_])
def test_validate_bits_accepts_any_numeric_array_of_bits(dtype: type) -> None:
    values: np.ndarray[Any, Any] = np.array([[0, 1], [1, 1]]).astype(dtype)
    batch = validate_bits(values, max_rows=2, where="rows", loc=loc)
    assert batch.features.dtype == np.float32
    assert batch.features.tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert len(batch) == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([[0.0, 2.0]]), "rows[0][1]: must be 0 or 1, got 2.0"),
        (np.array([[0, 1], [-1, 0]]), "rows[1][0]: must be 0 or 1, got -1"),
        (np.array([[np.nan, 1.0]]), "rows[0][0]: must be 0 or 1, got nan"),
        (np.array([[np.inf, 1.0]]), "rows[0][0]: must be 0 or 1, got Infinity"),
        (np.array([[0.5, 1.0]]), "rows[0][0]: must be 0 or 1, got 0.5"),
        (
            np.array([[2, 2]], dtype=np.uint8),
            "rows[0][0]: must be 0 or 1, got 2 (and 1 more problem)",
        ),
        (np.zeros((0, 2)), "rows: must hold at least one pair"),
        (np.zeros((4, 2)), "rows: holds 4 pairs, at most 3 allowed"),
        (np.zeros((2, 3)), "rows: must be a batch of pairs, shape [n, 2]; got shape [2x3]"),
        (np.zeros(4), "rows: must be a batch of pairs, shape [n, 2]; got shape [4]"),
        (np.array([["0", "1"]]), "rows: must hold numbers, got <U1"),
    ],
)
def test_validate_bits_rejects(values: np.ndarray[Any, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_bits(values, max_rows=3, where="rows", loc=loc)
    assert raised.value.message == message


def test_pinned_versions_and_the_window(model_dir: Path, trained_version: Path) -> None:
    from tests.app.conftest import publish_copy

    for version in (1, 2):
        publish_copy(trained_version, model_dir, version)
    store = ModelStore(model_dir, keep=2)
    store.refresh()
    service = PredictionService(store)
    assert service.model().version == 2
    assert service.model(1).version == 1
    assert service.predict(batch_of([(1, 0)]), service.model(1)).model_version == 1
    publish_copy(trained_version, model_dir, 3)
    store.refresh()
    assert [m.version for m in store.loaded] == [3, 2]
    with pytest.raises(VersionNotLoaded) as raised:
        service.model(1)
    assert raised.value.status == 404
    assert "loaded versions: 3, 2" in raised.value.message
