"""The response cache: per version, keyed by a row's bytes, bit-identical answers, bounded,
dropped with its version; and the prediction service answering from it."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pytest

from app.core.bits import Batch, one_pair_batch, pairs_batch
from app.core.prediction import OUTPUT_NAMES, ModelOutputs, Outputs, PredictionService
from app.core.response_cache import (
    MAX_ANSWERS_PER_ROW,
    Answer,
    ResponseCache,
    row_key,
    row_keys,
)
from app.lifecycle.loading import LoadedModel
from app.lifecycle.store import ModelStore
from app.metrics import Metrics
from tests.support.versions import publish_copy

PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def batch_of(pairs: list[tuple[int, int]]) -> Batch:
    return pairs_batch(pairs, where="rows", loc=lambda i, j: f"rows[{i}][{j}]", max_rows=10_000)


class Version:
    """Stands for a loaded version: the cache only holds it weakly, by identity."""


def counting_call(calls: list[list[list[float]]]) -> Any:
    def call(features: npt.NDArray[np.float32]) -> Outputs:
        calls.append(features.tolist())
        ones = (features[:, :1] != features[:, 1:]).astype(np.int64)
        return {"class_ids": ones, "logistic": features.sum(axis=1, keepdims=True) / 2}

    return call


def through(cache: ResponseCache, version: Version, features: npt.NDArray[np.float32]) -> Outputs:
    found = cache.lookup(version, features)  # type: ignore[arg-type]
    if found.outputs is not None:
        return found.outputs
    computed = CALL(found.unknown_rows(features))
    return cache.complete(version, found, computed)  # type: ignore[arg-type]


CALLS: list[list[list[float]]] = []
CALL = counting_call(CALLS)


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def test_row_keys_are_a_rows_exact_bytes() -> None:
    features = np.array([[0, 1], [0, 1], [1, 0], [-0.0, 0]], dtype=np.float32)
    keys = row_keys(features)
    assert keys.shape == (4,)
    assert keys[0] == keys[1] != keys[2]
    assert keys[3] != row_keys(np.array([[0.0, 0.0]], dtype=np.float32))[0]  # -0.0 is not 0.0
    assert [k.tobytes() for k in keys] == [row.tobytes() for row in features]


def test_unknown_rows_go_to_the_model_once_each_then_come_from_the_cache() -> None:
    cache, version = ResponseCache(16), Version()
    features = np.array([[0, 1], [1, 1], [0, 1], [0, 0], [1, 1]], dtype=np.float32)
    first = through(cache, version, features)
    assert CALLS == [[[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]]
    found = cache.lookup(version, features)  # type: ignore[arg-type]
    assert found.outputs is not None and found.missing == ()
    again = through(cache, version, features)
    assert len(CALLS) == 1
    for name in first:
        assert again[name].tobytes() == first[name].tobytes()
    assert again["class_ids"].ravel().tolist() == [1, 0, 1, 0, 0]
    # One known row and one unknown: only the unknown one is computed.
    mixed = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    found = cache.lookup(version, mixed)  # type: ignore[arg-type]
    assert found.missed_rows() == 2
    assert through(cache, version, mixed)["class_ids"].ravel().tolist() == [1, 1, 1]
    assert CALLS[1:] == [[[1.0, 0.0]]]


def test_cached_rows_are_read_only() -> None:
    cache, version = ResponseCache(4), Version()
    out = through(cache, version, np.array([[0, 1]], dtype=np.float32))
    with pytest.raises(ValueError, match="read-only"):
        out["class_ids"][0, 0] = 7


def test_the_cache_is_bounded_oldest_row_out() -> None:
    cache, version = ResponseCache(2), Version()
    for pair in PAIRS[:3]:
        through(cache, version, np.array([pair], dtype=np.float32))
    rows = cache.version(version).rows  # type: ignore[arg-type]
    assert len(rows) == 2
    assert set(rows) == set(row_keys(np.array(PAIRS[1:3], dtype=np.float32)).tolist())
    # A batch larger than the bound is still answered whole.
    out = through(cache, version, np.array(PAIRS, dtype=np.float32))
    assert out["class_ids"].ravel().tolist() == [0, 1, 1, 0]
    assert len(rows) == 2


def test_each_version_has_its_own_cache_dropped_with_it() -> None:
    cache = ResponseCache(8)
    old, new = Version(), Version()
    through(cache, old, np.array([[0, 1]], dtype=np.float32))
    through(cache, new, np.array([[0, 1]], dtype=np.float32))
    assert len(CALLS) == 2  # the new version computes its own answer
    assert len(cache) == 2
    del old
    gc.collect()
    assert len(cache) == 1


def test_no_cache_of_zero_rows() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ResponseCache(0)


def answers(service: PredictionService, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        result = await service.predict_async(batch_of(pairs))
        return dict(result.tensors)

    return anyio.run(run)


def test_with_the_cache_a_row_gets_the_same_bits_whatever_its_batch(
    trained_model_dir: Path,
) -> None:
    store = ModelStore(trained_model_dir)
    store.refresh()
    metrics = Metrics()
    cached = PredictionService(store, metrics=metrics, response_cache=ResponseCache(1024))
    plain = PredictionService(store)
    alone = {pair: answers(cached, [pair]) for pair in PAIRS}
    batches = [PAIRS * 3, [(1, 1)] * 7 + [(0, 1)], list(reversed(PAIRS)) * 50]
    for pairs in batches:
        with_cache = answers(cached, pairs)
        without = answers(plain, pairs)
        for i, pair in enumerate(pairs):
            for name in OUTPUT_NAMES:
                row = with_cache[name][i : i + 1]
                assert row.tobytes() == alone[pair][name].tobytes(), (pair, name)
                if name != "classes":
                    np.testing.assert_allclose(row, without[name][i : i + 1], rtol=0, atol=1e-6)
                else:
                    assert row.tolist() == without[name][i : i + 1].tolist()
    rows = sum(len(pairs) for pairs in batches)
    text = metrics.exposition().decode()
    assert "xor_response_cache_misses_total 4.0" in text
    assert f"xor_response_cache_hits_total {float(rows)}" in text


def test_a_new_version_answers_from_its_own_cache(model_dir: Path, trained_version: Path) -> None:
    publish_copy(trained_version, model_dir, 1)
    store = ModelStore(model_dir, keep=1)
    store.refresh()
    calls: list[int] = []

    def counting(model: LoadedModel, features: npt.NDArray[np.float32]) -> Outputs:
        calls.append(model.version)
        return model.run(features)

    cache = ResponseCache(1024)
    service = PredictionService(store, model_call=counting, response_cache=cache)
    assert answers(service, [(0, 1)])["class_ids"].tolist() == [[1]]
    assert answers(service, [(0, 1)])["class_ids"].tolist() == [[1]]
    publish_copy(trained_version, model_dir, 2)
    store.refresh()
    assert answers(service, [(0, 1)])["class_ids"].tolist() == [[1]]
    assert calls == [1, 2]
    gc.collect()
    assert len(cache) == 1  # version 1 was unloaded (keep=1): its cache went with it


def test_an_answer_lives_beside_its_row_and_goes_with_it() -> None:
    cache, version = ResponseCache(2), Version()
    rows = cache.version(version)  # type: ignore[arg-type]
    first, second, third = (row_key(np.array([pair], dtype=np.float32)) for pair in PAIRS[:3])
    rows.keep_answer(first, "form", Answer(b"early", 1))
    assert rows.answers == {}  # no row, no answer
    for pair in PAIRS[:2]:
        through(cache, version, np.array([pair], dtype=np.float32))
    rows.keep_answer(first, "form", Answer(b"a", 0))
    rows.keep_answer(second, "form", Answer(b"b", 1))
    assert rows.answers[first]["form"] == Answer(b"a", 0)
    through(cache, version, np.array([PAIRS[2]], dtype=np.float32))  # evicts the first row
    assert first not in rows.rows and first not in rows.answers
    assert rows.answers[second]["form"].body == b"b" and third not in rows.answers


def test_a_row_keeps_a_bounded_number_of_answer_forms() -> None:
    cache, version = ResponseCache(4), Version()
    through(cache, version, np.array([[0, 1]], dtype=np.float32))
    rows = cache.version(version)  # type: ignore[arg-type]
    key = row_key(np.array([[0, 1]], dtype=np.float32))
    for form in range(MAX_ANSWERS_PER_ROW + 5):
        rows.keep_answer(key, form, Answer(str(form).encode(), 1))
    assert len(rows.answers[key]) == MAX_ANSWERS_PER_ROW
    assert list(rows.answers[key]) == list(range(5, MAX_ANSWERS_PER_ROW + 5))  # oldest out
    assert row_key(np.array([[0, 1]], dtype=np.float32)) == int(
        row_keys(np.array([[0, 1]], dtype=np.float32))[0]
    )


def answer_once(
    service: PredictionService, pair: tuple[int, int], renders: list[int], form: str = "f"
) -> bytes:
    async def run() -> bytes:
        def render(outputs: ModelOutputs) -> bytes:
            renders.append(1)
            return f"{outputs.model_version}:{outputs['probabilities'].tobytes().hex()}".encode()

        model = service.model()
        return await service.answer_one(one_pair_batch(pair), model, form, render)

    return anyio.run(run)


def test_a_one_row_answer_is_rendered_once_per_row_and_form(trained_model_dir: Path) -> None:
    store = ModelStore(trained_model_dir)
    store.refresh()
    metrics = Metrics()
    service = PredictionService(store, metrics=metrics, response_cache=ResponseCache(1024))
    renders: list[int] = []
    bodies = [answer_once(service, pair, renders) for pair in PAIRS * 5]
    assert len(renders) == 4  # each pair rendered once, then answered from the cache
    assert bodies[:4] == bodies[4:8] == bodies[16:]
    # What it renders is the cached row's outputs: the same as predict_async gives.
    for pair, body in zip(PAIRS, bodies, strict=False):
        outputs = answers(service, [pair])
        assert body.endswith(outputs["probabilities"].tobytes().hex().encode())
    answer_once(service, (0, 1), renders, form="other")
    assert len(renders) == 5  # another form is another rendering
    text = metrics.exposition().decode()
    # Counted as predict_async counts: 20 + 4 + 1 rows, 4 misses, one instance each.
    assert "xor_response_cache_misses_total 4.0" in text
    assert "xor_response_cache_hits_total 21.0" in text
    assert "xor_prediction_instances_count 25.0" in text
    # (0, 1) and (1, 0) are class 1: five times each, once more each through predict_async,
    # and (0, 1) once more in the other form.
    ones = 2 * 5 + 2 + 1
    assert f'xor_predictions_total{{class_id="1"}} {float(ones)}' in text


def test_without_the_cache_a_one_row_answer_is_rendered_each_time(
    trained_model_dir: Path,
) -> None:
    store = ModelStore(trained_model_dir)
    store.refresh()
    service = PredictionService(store)
    renders: list[int] = []
    assert answer_once(service, (1, 0), renders) == answer_once(service, (1, 0), renders)
    assert len(renders) == 2


def test_an_answer_from_outputs_the_cache_did_not_keep_is_not_kept(
    trained_model_dir: Path,
) -> None:
    """Two requests of one unknown row both computed it: the cache keeps the first one's
    outputs, so an answer rendered from the second's may not stand for the row."""
    store = ModelStore(trained_model_dir)
    store.refresh()
    cache = ResponseCache(1024)
    service = PredictionService(store, response_cache=cache)
    model = service.model()
    key = row_key(one_pair_batch((0, 1)).features)

    async def run() -> None:
        outputs = await service.predict_async(one_pair_batch((0, 1)), model)
        cached = cache.version(model).rows[key]
        cache.version(model).rows[key] = {name: value.copy() for name, value in cached.items()}
        assert outputs["class_ids"] is not cache.version(model).rows[key]["class_ids"]

    anyio.run(run)
    # The row is cached (not by these arrays), so a fresh answer renders from the cached row.
    renders: list[int] = []
    answer_once(service, (0, 1), renders)
    assert key in cache.version(model).answers
    cache.version(model).answers.clear()

    real_predict = service.predict_async

    async def other_outputs(batch: Batch, model: LoadedModel | None = None) -> ModelOutputs:
        result = await real_predict(batch, model)
        return ModelOutputs(
            result.model_version, {name: value.copy() for name, value in result.tensors.items()}
        )

    service.predict_async = other_outputs  # type: ignore[method-assign]
    answer_once(service, (0, 1), renders)
    assert key not in cache.version(model).answers
