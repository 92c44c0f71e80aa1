"""Faults while serving: the served files vanish or change, bad versions are dropped in by hand.

The served model lives in memory: the api keeps answering with it and stays ready, and says in
its log and metrics that the version would not load after a restart. A version re-created under
its number is loaded again if it passes (a restart would serve it). A new version that is broken
in any way (a wrong model, a number beyond int64, files that block or never end) is refused and
counted, and the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from app.api.common import version_number
from app.config import Settings
from app.lifecycle.discovery import MAX_VERSION
from app.lifecycle.store import ModelStore
from app.main import create_app
from tests.support.apps import serving_client
from tests.support.responses import assert_protocol_error
from tests.support.server import running_server
from tests.support.versions import publish_copy, save_module, xnor_model
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
    wait_for(
        lambda: "not a loadable SavedModel" in _problem(client, FIRST),
        timeout=10,
        what="the changed files tried and refused",
    )
    _still_serving(client)
    assert _load_failures(client) >= 1  # the new files were tried, and refused
    record = _events(caplog, "model_files_changed")[-1]
    assert "would not load after a restart" in record.getMessage()
    assert not _events(caplog, "model_reloaded")


def _problem(client: TestClient, version: int) -> str:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    return str(store.file_problems.get(version, ""))


def test_served_version_re_created_with_other_content_serves_that_content(
    serving: tuple[TestClient, Path], trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 6b: deleted and published again under its number, as a restart would serve it."""
    client, model_dir = serving
    shutil.rmtree(model_dir / str(FIRST))
    staging = publish_copy(trained_version, model_dir.parent / "staging", FIRST)
    evaluation = staging / "assets.extra" / "evaluation.json"
    document = json.loads(evaluation.read_text())
    document["evaluated_at"] = "2030-01-01T00:00:00Z"
    evaluation.write_text(json.dumps(document))
    staging.rename(model_dir / str(FIRST))
    wait_for(
        lambda: client.get("/model").json()["evaluation"]["evaluated_at"] == "2030-01-01T00:00:00Z",
        what="the re-created content served",
    )
    _still_serving(client)
    assert _load_failures(client) == 0
    assert "xor_model_files_problem{" not in client.get("/metrics").text
    (record,) = _events(caplog, "model_reloaded")
    assert record.levelno == logging.WARNING and record.model_version == FIRST  # type: ignore[attr-defined]


def test_served_version_re_created_as_a_wrong_model_keeps_serving_and_says_so(
    serving: tuple[TestClient, Path], trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, model_dir = serving
    shutil.rmtree(model_dir / str(FIRST))
    staging = model_dir.parent / "staging"
    xnor_model(trained_version, staging, FIRST)
    staging.rename(model_dir / str(FIRST))
    wait_for(lambda: "golden set" in _problem(client, FIRST), what="the wrong model refused")
    _still_serving(client)
    assert _load_failures(client) == 1
    assert 'problem="' in client.get("/metrics").text
    record = _events(caplog, "model_files_changed")[-1]
    assert "changed and cannot be served" in record.getMessage()
    assert "would not load after a restart" in record.getMessage()


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

        def scan_finished(self, *, timestamp: float) -> None:
            pass

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


def test_an_xnor_model_evaluated_at_1_0_is_refused_even_with_min_accuracy_1(
    tmp_path: Path, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 6: the evaluation is the trainer's word; the golden set checks the model."""
    model_dir = tmp_path / "xor"
    publish_copy(trained_version, model_dir, FIRST)
    settings = Settings(model_dir=model_dir, poll_interval_seconds=0.05, min_accuracy=1.0)
    with TestClient(create_app(settings)) as client:
        staging = tmp_path / "staging"
        xnor_model(trained_version, staging, FIRST + 1)
        staging.rename(model_dir / str(FIRST + 1))
        wait_for(lambda: _load_failures(client) >= 1)
        _still_serving(client)
        (record,) = _events(caplog, "model_load_failed")
        assert "answers 4 of the 4 pairs of its golden set" in record.getMessage()
        assert record.model_version == FIRST + 1  # type: ignore[attr-defined]


TOP = str(MAX_VERSION)  # 19 digits


def test_a_19_digit_version_within_int64_serves_on_every_api(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, MAX_VERSION)
    with serving_client(model_dir) as client:
        assert client.get("/health").json()["model_version"] == MAX_VERSION
        assert client.get("/model").status_code == 200
        predicted = client.post("/predict", json={"inputs": [0, 1]}).json()
        assert predicted["model_version"] == MAX_VERSION
        status = client.get(f"/v1/models/xor/versions/{TOP}")
        assert status.status_code == 200, status.text
        assert status.json()["model_version_status"][0]["version"] == TOP
        pinned = client.post(f"/v1/models/xor/versions/{TOP}:predict", json={"inputs": [[1, 0]]})
        assert pinned.json()["outputs"]["class_ids"] == [[1]]
        assert client.get(f"/v2/models/xor/versions/{TOP}/ready").status_code == 200
        infer = {
            "inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [1, 1]}]
        }
        answer = client.post(f"/v2/models/xor/versions/{TOP}/infer", json=infer)
        assert answer.status_code == 200 and answer.json()["model_version"] == TOP
        assert version_number(TOP) == MAX_VERSION
        for beyond in (str(MAX_VERSION + 1), str(2**64 - 1), str(2**64), "9" * 19, "1" + "0" * 19):
            assert version_number(beyond) is None
            for path in (f"/v1/models/xor/versions/{beyond}", f"/v2/models/xor/versions/{beyond}"):
                assert_protocol_error(client.get(path), 404)
            response = client.post(
                f"/v1/models/xor/versions/{beyond}:predict", json={"inputs": [[1, 0]]}
            )
            assert_protocol_error(response, 404)


def test_versions_beyond_int64_are_skipped_logged_once_counted_and_harmless(
    serving: tuple[TestClient, Path], trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 2: 2**63 and up are not swapped in (the JSON encoder cannot write beyond 2**64)."""
    client, model_dir = serving
    beyond = (MAX_VERSION + 1, 2**64 - 1, 2**64, 10**20)
    for version in beyond:
        publish_copy(trained_version, model_dir, version)
    wait_for(lambda: _load_failures(client) == len(beyond), what="each refused")
    time.sleep(0.3)  # several more polls: not retried, not logged again
    assert _load_failures(client) == len(beyond)
    _still_serving(client)
    assert client.get("/model").json()["model_version"] == FIRST
    assert client.get("/v1/models/xor").status_code == 200
    failed = _events(caplog, "model_load_failed")
    assert sorted(r.model_version for r in failed) == sorted(beyond)  # type: ignore[attr-defined]
    assert all("version number beyond int64" in r.getMessage() for r in failed)
    publish_copy(trained_version, model_dir, FIRST + 1)  # the next retrain still loads
    wait_for(lambda: client.get("/health").json()["model_version"] == FIRST + 1)
    _still_serving(client, FIRST + 1)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make", [_fifo, _dev_zero], ids=["fifo", "dev zero"])
def test_an_evaluation_json_that_blocks_or_never_ends_is_refused_and_the_poller_goes_on(
    serving: tuple[TestClient, Path],
    trained_version: Path,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[Path], None],
) -> None:
    """Case 3: once the poller blocked on a FIFO for good, or read /dev/zero into memory."""
    client, model_dir = serving
    staging = publish_copy(trained_version, model_dir.parent / "staging", FIRST + 1)
    make(staging / "assets.extra" / "evaluation.json")
    staging.rename(model_dir / str(FIRST + 1))
    wait_for(lambda: _load_failures(client) == 1, timeout=10, what="the version refused")
    (record,) = _events(caplog, "model_load_failed")
    assert "must be a regular file" in record.getMessage()
    _still_serving(client)
    publish_copy(trained_version, model_dir, FIRST + 2)  # the poller is alive: the next loads
    wait_for(lambda: client.get("/health").json()["model_version"] == FIRST + 2, timeout=10)


def test_a_fifo_at_startup_neither_stops_listening_nor_shutdown(
    tmp_path: Path, trained_version: Path
) -> None:
    """Case 3 at start-up: the initial scan blocked on the FIFO, so the server never listened
    and ignored SIGTERM. Now it becomes ready on the older version and exits 0 on SIGTERM
    (``running_server`` fails the test after its own timeouts, it does not hang)."""
    model_dir = tmp_path / "xor"
    fifo = publish_copy(trained_version, model_dir, FIRST + 1) / "assets.extra" / "evaluation.json"
    _fifo(fifo)
    with running_server(tmp_path, trained_version, FIRST) as server:
        lines = server.log_lines()
        (failed,) = [line for line in lines if line.get("event") == "model_load_failed"]
        assert failed["model_version"] == FIRST + 1
        assert "is a FIFO" in failed["message"]
