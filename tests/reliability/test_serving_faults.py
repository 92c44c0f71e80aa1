"""Faults while serving: the served files vanish or change, bad versions are dropped in by hand.

The served model lives in memory: the api keeps answering with it and stays ready, and says in
its log (and, once wired, its metrics) that the version would not load after a restart. A new
version that is broken in any way is refused and counted, and the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from app.config import Settings
from app.lifecycle.store import ModelStore
from app.main import create_app
from tests.support.versions import publish_copy, save_module
from tests.support.waiting import wait_for
from training.export import ServingModule
from training.model import build_model

FIRST = 1000


@pytest.fixture
def serving(tmp_path: Path, trained_version: Path) -> Iterator[tuple[TestClient, Path]]:
    model_dir = tmp_path / "xor"
    publish_copy(trained_version, model_dir, FIRST)
    settings = Settings(model_dir=model_dir, poll_interval_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["model_version"] == FIRST
        yield client, model_dir


def _still_serving(client: TestClient, version: int = FIRST) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["model_version"] == version
    for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)):
        response = client.post("/predict", json={"inputs": [a, b]})
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == version
        assert response.json()["predictions"][0]["class_id"] == a ^ b


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def _load_failures(client: TestClient) -> float:
    text = client.get("/metrics").text
    (line,) = [x for x in text.splitlines() if x.startswith('xor_model_loads_total{outcome="f')]
    return float(line.split()[-1])


def test_served_version_deleted_keeps_serving_and_says_so(
    serving: tuple[TestClient, Path], caplog: pytest.LogCaptureFixture
) -> None:
    client, model_dir = serving
    caplog.set_level(logging.INFO, logger="app.lifecycle.store")
    shutil.rmtree(model_dir / str(FIRST))
    wait_for(lambda: bool(_events(caplog, "model_files_missing")), timeout=10)
    _still_serving(client)
    store = client.app.state.services.store  # type: ignore[attr-defined]
    assert "files of the loaded version are gone" in store.file_problems[FIRST]
    (record,) = _events(caplog, "model_files_missing")  # logged once, not every poll
    assert record.levelno == logging.WARNING
    assert "would not load after a restart" in record.getMessage()

    # The whole model dir vanishing is the same story.
    shutil.rmtree(model_dir)
    time.sleep(0.3)  # several polls of a missing model dir
    _still_serving(client)
    assert len(_events(caplog, "model_files_missing")) == 1
    assert not _events(caplog, "scan_failed")


def test_served_version_corrupted_keeps_serving_and_says_so(
    serving: tuple[TestClient, Path], caplog: pytest.LogCaptureFixture
) -> None:
    client, model_dir = serving
    caplog.set_level(logging.INFO, logger="app.lifecycle.store")
    for file in (model_dir / str(FIRST) / "variables").iterdir():
        file.write_bytes(b"\0" * 64)
    (model_dir / str(FIRST) / "saved_model.pb").write_bytes(b"garbage")
    wait_for(lambda: bool(_events(caplog, "model_files_changed")), timeout=10)
    _still_serving(client)
    assert _load_failures(client) == 0  # nothing was reloaded from the broken files


def test_served_version_deleted_shows_in_metrics(serving: tuple[TestClient, Path]) -> None:
    client, model_dir = serving
    shutil.rmtree(model_dir / str(FIRST))
    wait_for(lambda: "xor_model_files_problem" in client.get("/metrics").text, timeout=1)


class _WrongSignature(tf.Module):  # type: ignore[misc]
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="inputs")])  # type: ignore[untyped-decorator]
    def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": inputs}


def wrong_signature(staging: Path, version: int, trained: Path) -> None:
    save_module(_WrongSignature(), staging, version)


def nan_weights(staging: Path, version: int, trained: Path) -> None:
    model = build_model([10, 20, 10])
    model.set_weights([np.full(w.shape, np.nan, dtype=np.float32) for w in model.get_weights()])
    save_module(ServingModule(model), staging, version)


def truncated_variables(staging: Path, version: int, trained: Path) -> None:
    shutil.copytree(trained, staging)
    (data,) = (staging / "variables").glob("variables.data-*")
    data.write_bytes(data.read_bytes()[:10])
    evaluation = staging / "assets.extra" / "evaluation.json"
    document = json.loads(evaluation.read_text())
    evaluation.write_text(json.dumps({**document, "model_version": version}))


BAD_VERSIONS: list[tuple[Callable[[Path, int, Path], None], str]] = [
    (wrong_signature, "signature has no output 'logits'"),
    (nan_weights, "warm-up output 'logits' is not finite"),
    (truncated_variables, "not a loadable SavedModel"),
]


@pytest.mark.parametrize(
    ("make", "reason"), BAD_VERSIONS, ids=[m.__name__ for m, _ in BAD_VERSIONS]
)
def test_bad_version_dropped_in_by_hand_is_refused_and_counted(
    serving: tuple[TestClient, Path],
    trained_version: Path,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[Path, int, Path], None],
    reason: str,
) -> None:
    client, model_dir = serving
    staging = model_dir.parent / "staging"
    make(staging, FIRST + 1, trained_version)
    staging.rename(model_dir / str(FIRST + 1))
    wait_for(lambda: _load_failures(client) >= 1, timeout=20)
    _still_serving(client)
    (record,) = _events(caplog, "model_load_failed")
    assert reason in record.getMessage()
    assert record.model_version == FIRST + 1  # type: ignore[attr-defined]
    assert record.serving_version == FIRST  # type: ignore[attr-defined]
    assert _load_failures(client) == 1  # not retried while unchanged


def test_accuracy_gate_refuses_a_version_below_it(model_dir: Path, trained_version: Path) -> None:
    publish_copy(trained_version, model_dir, FIRST)
    low = publish_copy(trained_version, model_dir, FIRST + 1)
    evaluation = low / "assets.extra" / "evaluation.json"
    document = json.loads(evaluation.read_text())
    document["metrics"]["accuracy"] = 0.75
    evaluation.write_text(json.dumps(document))

    class Observer:
        failures = 0

        def load_finished(self, *, success: bool, seconds: float) -> None:
            self.failures += not success

    observer = Observer()
    store = ModelStore(model_dir, observer, min_accuracy=0.9)
    served = store.refresh()
    assert served is not None and served.version == FIRST
    assert observer.failures == 1
    with pytest.raises(ValueError, match="min_accuracy must be within"):
        ModelStore(model_dir, min_accuracy=1.5)
    # The default gate (0.0) takes it, as before.
    assert ModelStore(model_dir).refresh().version == FIRST + 1  # type: ignore[union-attr]


def test_accuracy_gate_message(
    model_dir: Path, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    low = publish_copy(trained_version, model_dir, FIRST)
    evaluation = low / "assets.extra" / "evaluation.json"
    document = json.loads(evaluation.read_text())
    document["metrics"]["accuracy"] = 0.5
    evaluation.write_text(json.dumps(document))
    store = ModelStore(model_dir, min_accuracy=1.0)
    assert store.refresh() is None
    assert (
        "accuracy 0.5 is below the serving gate (min_accuracy 1.0): refused"
        in store.unavailable_reason
    )


def test_min_accuracy_setting_reaches_the_store(model_dir: Path) -> None:
    settings = Settings(model_dir=model_dir, min_accuracy=0.9)
    assert create_app(settings).state.services.store.min_accuracy == 0.9
