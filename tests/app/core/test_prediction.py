"""The prediction service without HTTP: the served or a pinned version, in order, one call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pytest

from app.core.bits import Batch, Pair, pairs_batch
from app.core.prediction import OUTPUT_NAMES, Outputs, PredictionService
from app.errors import ModelUnavailable, VersionNotLoaded
from app.lifecycle.loading import LoadedModel
from app.lifecycle.store import ModelStore
from tests.support.versions import publish_copy


def batch_of(pairs: list[Pair]) -> Batch:
    return pairs_batch(pairs, where="rows", loc=lambda i, j: f"rows[{i}][{j}]", max_rows=10_000)


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


def test_the_model_call_is_a_seam(trained_model_dir: Path) -> None:
    """``model_call`` replaces the signature call (the benchmark's ceiling answers a constant)."""
    store = ModelStore(trained_model_dir)
    store.refresh()
    calls: list[tuple[int, list[list[float]]]] = []

    def constant(model: LoadedModel, features: npt.NDArray[np.float32]) -> Outputs:
        calls.append((model.version, features.tolist()))
        rows = len(features)
        zeros: dict[str, npt.NDArray[Any]] = {
            name: np.zeros((rows, 1), dtype=np.float32) for name in OUTPUT_NAMES
        }
        return {**zeros, "class_ids": np.ones((rows, 1), dtype=np.int64), "extra": zeros["logits"]}

    service = PredictionService(store, model_call=constant)
    result = service.predict(batch_of([(0, 0), (1, 1)]))
    assert calls == [(result.model_version, [[0.0, 0.0], [1.0, 1.0]])]
    assert result["class_ids"].tolist() == [[1], [1]]
    assert set(result.tensors) == set(OUTPUT_NAMES)  # only the contract's outputs


def test_pinned_versions_and_the_window(model_dir: Path, trained_version: Path) -> None:
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
