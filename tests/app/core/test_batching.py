"""Micro-batching: concurrent requests share model calls, results stay per request and ordered."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.core.batching import MicroBatcher
from app.core.prediction import Outputs
from app.lifecycle.loading import LoadedModel, load_version
from tests.support.apps import serving_client

PAIRS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


class Calls:
    """Records every model call the batcher makes (the metrics' observer interface)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.waits: list[float] = []

    def batch_finished(
        self, *, rows: int, requests: int, queue_waits: list[float], seconds: float
    ) -> None:
        assert seconds >= 0
        self.calls.append((rows, requests))
        self.waits.extend(queue_waits)


class FailsOnSeven:
    """A real model that refuses any batch holding the value 7 (to test failure isolation)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.version = model.version

    def run(self, features: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        if (features == 7).any():
            raise ValueError("seven")
        return self.model.run(features)


def requests_of(sizes: list[int]) -> list[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 2, size=(n, 2)).astype(np.float32) for n in sizes]


async def run_all(
    batcher: MicroBatcher, model: Any, requests: list[npt.NDArray[np.float32]]
) -> list[Outputs | BaseException]:
    return await asyncio.gather(
        *(batcher.run(model, features) for features in requests), return_exceptions=True
    )


def test_a_lone_request_is_sent_at_once_and_alone(loaded_model: LoadedModel) -> None:
    calls = Calls()
    batcher = MicroBatcher(max_rows=256, observer=calls)
    (result,) = asyncio.run(run_all(batcher, loaded_model, [PAIRS]))
    assert not isinstance(result, BaseException)
    assert result["class_ids"].ravel().tolist() == [0, 1, 1, 0]
    assert calls.calls == [(4, 1)]


def test_concurrent_requests_share_calls_and_get_their_own_rows(loaded_model: LoadedModel) -> None:
    calls = Calls()
    batcher = MicroBatcher(max_rows=256, observer=calls)
    requests = requests_of([1, 3, 2, 1, 5, 1, 1, 4, 2, 1] * 4)
    results = asyncio.run(run_all(batcher, loaded_model, requests))
    # The first request goes alone; the others gathered while it ran.
    assert len(calls.calls) < len(requests)
    assert sum(requests_in_call for _, requests_in_call in calls.calls) == len(requests)
    for features, result in zip(requests, results, strict=True):
        assert not isinstance(result, BaseException)
        alone = loaded_model.run(features)
        for name in ("logits", "probabilities", "class_ids", "classes"):
            assert result[name].shape == alone[name].shape
        np.testing.assert_allclose(result["probabilities"], alone["probabilities"], atol=1e-6)
        np.testing.assert_array_equal(result["class_ids"], alone["class_ids"])
        expected_xor = np.logical_xor(features[:, 0], features[:, 1]).astype(np.int64)
        np.testing.assert_array_equal(result["class_ids"].ravel(), expected_xor)


def test_calls_hold_at_most_max_rows_unless_one_request_is_larger(
    loaded_model: LoadedModel,
) -> None:
    calls = Calls()
    batcher = MicroBatcher(max_rows=8, observer=calls)
    requests = requests_of([3, 3, 3, 20, 3, 3, 1])
    results = asyncio.run(run_all(batcher, loaded_model, requests))
    assert all(not isinstance(r, BaseException) for r in results)
    assert (20, 1) in calls.calls
    assert all(rows <= 8 for rows, count in calls.calls if count > 1)
    assert sum(rows for rows, _ in calls.calls) == sum(len(r) for r in requests)


def test_a_failing_request_never_fails_its_neighbours(loaded_model: LoadedModel) -> None:
    calls = Calls()
    batcher = MicroBatcher(max_rows=256, observer=calls)
    requests = requests_of([2, 2, 2, 2, 2])
    requests[2] = np.array([[7, 7]], dtype=np.float32)
    results = asyncio.run(run_all(batcher, FailsOnSeven(loaded_model), requests))
    assert isinstance(results[2], ValueError)
    for index in (0, 1, 3, 4):
        result = results[index]
        assert not isinstance(result, BaseException)
        expected = np.logical_xor(requests[index][:, 0], requests[index][:, 1])
        np.testing.assert_array_equal(result["class_ids"].ravel(), expected.astype(np.int64))


def test_versions_are_batched_separately(loaded_model: LoadedModel, trained_version: Path) -> None:
    other = load_version(trained_version, int(trained_version.name))
    calls = Calls()
    batcher = MicroBatcher(max_rows=256, observer=calls)

    async def both() -> list[Outputs | BaseException]:
        return await asyncio.gather(
            *(batcher.run(m, PAIRS) for m in (loaded_model, other, loaded_model, other)),
            return_exceptions=True,
        )

    results = asyncio.run(both())
    assert all(not isinstance(r, BaseException) for r in results)
    assert all(requests <= 2 and rows == 4 * requests for rows, requests in calls.calls)


def test_batch_metrics_are_exported(trained_model_dir: Path) -> None:
    with serving_client(trained_model_dir) as client:
        assert client.post("/predict", json={"inputs": [1, 0]}).status_code == 200
        text = client.get("/metrics").text
    assert "xor_batch_rows_count 1.0" in text
    assert "xor_batch_requests_sum 1.0" in text
    assert "xor_batch_queue_wait_seconds_count 1.0" in text
    assert "xor_model_call_duration_seconds_count 1.0" in text


def test_batching_can_be_disabled(trained_model_dir: Path) -> None:
    with serving_client(trained_model_dir, batching=False) as client:
        response = client.post("/predict", json={"instances": [[1, 0], [1, 1]]})
        assert [p["class_id"] for p in response.json()["predictions"]] == [1, 0]
        text = client.get("/metrics").text
    assert "xor_batch_rows_count 0.0" in text
    assert "xor_model_call_duration_seconds_count 1.0" in text  # one call, not batched


def test_every_call_runs_on_the_event_loop_whatever_its_size(loaded_model: LoadedModel) -> None:
    threads: list[str] = []

    class RecordsThread:
        version = loaded_model.version

        def run(self, features: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
            threads.append(threading.current_thread().name)
            return loaded_model.run(features)

    batcher = MicroBatcher(max_rows=10_000)
    small, large = requests_of([4, 10_000])
    (small_result,) = asyncio.run(run_all(batcher, RecordsThread(), [small]))
    (large_result,) = asyncio.run(run_all(batcher, RecordsThread(), [large]))
    assert threads == [threading.main_thread().name] * 2
    for features, result in ((small, small_result), (large, large_result)):
        assert not isinstance(result, BaseException)
        expected = np.logical_xor(features[:, 0], features[:, 1]).astype(np.int64)
        np.testing.assert_array_equal(result["class_ids"].ravel(), expected)
