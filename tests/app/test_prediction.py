"""The prediction core without HTTP: request parsing, validation and the service contract."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from app.errors import InvalidInput, ModelUnavailable
from app.model_store import ModelStore
from app.prediction import INLINE_MAX_PAIRS, PredictionService, parse_predict_request


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
        service.predict([(0, 1)])
    assert raised.value.headers == {"Retry-After": "3"}
    assert raised.value.status == 503


@pytest.mark.parametrize("size", [1, INLINE_MAX_PAIRS, INLINE_MAX_PAIRS + 1, 5000])
def test_predictions_are_in_order_inline_or_threaded(trained_model_dir: Path, size: int) -> None:
    store = ModelStore(trained_model_dir)
    model = store.refresh()
    assert model is not None
    service = PredictionService(store)
    pairs = [((i >> 1) & 1, i & 1) for i in range(size)]

    async def run() -> list[int]:
        result = await service.predict_async(pairs)
        assert result.model_version == model.version
        assert [p.inputs for p in result.predictions] == pairs
        return [p.class_id for p in result.predictions]

    assert anyio.run(run) == [a ^ b for a, b in pairs]
