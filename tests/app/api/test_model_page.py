"""GET /model for a browser: the model page. Its data (decision surface, training curve) is
prepared once when a version loads, never on a request nor through the response cache; JSON
clients get /model's JSON unchanged; whatever comes from the version's files is escaped."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient

from app.api.service.page import DATA_ELEMENT_ID
from app.core.prediction import PredictionService
from app.core.response_cache import ResponseCache
from app.errors import ModelLoadError
from app.lifecycle.loading import (
    HISTORY_FILE,
    MAX_HISTORY_BYTES,
    SURFACE_POINTS,
    LoadedModel,
    load_version,
    read_history,
)
from app.lifecycle.store import ModelStore
from tests.support.apps import serving_client
from tests.support.versions import publish_copy

# What Chromium and Firefox send for a page.
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]
_DATA = re.compile(
    rf'<script type="application/json" id="{DATA_ELEMENT_ID}">(.*?)</script>', re.DOTALL
)


def page(client: TestClient) -> tuple[str, dict[str, Any]]:
    """The page's HTML and its embedded data."""
    response = client.get("/model", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    (block,) = _DATA.findall(response.text)
    data: dict[str, Any] = json.loads(block)
    return response.text, data


def history_file(version_dir: Path) -> Path:
    return version_dir / HISTORY_FILE


def test_a_browser_gets_the_page_with_its_data(
    served_client: TestClient, trained_version: Path, trained_version_number: int
) -> None:
    text, data = page(served_client)
    assert data["model_version"] == trained_version_number
    assert f"version {trained_version_number}" in text
    # The metrics are /metrics' JSON, and each is shown.
    metrics = served_client.get("/metrics", headers={"Accept": "application/json"}).json()
    assert data["metrics"] == metrics["evaluation"]
    for name in metrics["evaluation"]:
        assert f'data-metric="{name}"' in text
    # The surface: 50 x 50 over [0, 1]², corners included.
    surface = data["surface"]
    assert len(surface["axis"]) == SURFACE_POINTS
    assert surface["axis"][0] == 0.0 and surface["axis"][-1] == 1.0
    assert np.asarray(surface["probability"]).shape == (SURFACE_POINTS, SURFACE_POINTS)
    # The curve ends at the evaluation's global step.
    shipped = json.loads(history_file(trained_version).read_text())
    steps = [point["step"] for point in data["history"]["points"]]
    assert steps == [point["step"] for point in shipped["points"]]
    assert steps[-1] == metrics["evaluation"]["global_step"]
    assert data["history_problem"] is None
    assert data["labels"] == {} and data["canary_percent"] == 0
    assert [row["model_version"] for row in data["versions"]] == [trained_version_number]
    assert '<svg id="surface-plot"' in text and '<svg id="curve-plot"' in text
    assert '<form id="try" data-endpoint="/predict">' in text
    assert len(text.encode()) < 300_000


def test_the_surface_corners_are_the_models_answers(
    served_client: TestClient, loaded_model: LoadedModel
) -> None:
    _, data = page(served_client)
    probability = data["surface"]["probability"]
    last = SURFACE_POINTS - 1
    for x1, x2 in PAIRS:
        answer = served_client.post("/predict", json={"inputs": [x1, x2]}).json()
        (prediction,) = answer["predictions"]
        shown = probability[x1 * last][x2 * last]
        assert shown == pytest.approx(prediction["probabilities"][1], abs=1e-3)
        assert int(shown > 0.5) == prediction["class_id"]


def test_the_page_allows_only_its_own_nonced_style_and_script(served_client: TestClient) -> None:
    response = served_client.get("/model", headers={"Accept": BROWSER_ACCEPT})
    policy = response.headers["content-security-policy"]
    (nonce,) = set(re.findall(r"'nonce-([^']+)'", policy))
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert response.text.count(f'nonce="{nonce}"') == 2  # the <style> and the form's <script>
    assert re.findall(r"<script(?![^>]*nonce=)[^>]*>", response.text) == [
        f'<script type="application/json" id="{DATA_ELEMENT_ID}">'
    ]
    assert ' style="' not in response.text  # an inline style attribute would be blocked
    assert "http://" not in response.text and "https://" not in response.text
    other = served_client.get("/model", headers={"Accept": BROWSER_ACCEPT})
    assert other.headers["content-security-policy"] != policy  # a nonce per response
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "application/json",
        "application/json, text/html",
        "text/html;q=0.5, application/json",
        "text/*",
        "text/html;q=0",
    ],
)
def test_json_clients_get_the_unchanged_json(served_client: TestClient, accept: str | None) -> None:
    plain = served_client.get("/model", headers={"Accept": "application/json"})
    headers = {} if accept is None else {"Accept": accept}
    response = served_client.get("/model", headers=headers)
    assert response.headers["content-type"] == "application/json"
    assert response.content == plain.content
    assert set(response.json()) == {
        "model_version",
        "path",
        "loaded_at",
        "load_seconds",
        "signature",
        "evaluation",
        "limits",
        "labels",
        "canary_percent",
        "label_problems",
        "labels_error",
    }


def test_without_a_model_the_browser_gets_the_503_error(client: TestClient) -> None:
    response = client.get("/model", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"


@pytest.fixture
def counted_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The rows of every model call of any loaded version (``run``: the warm-up and every
    prediction; ``call_signature``: the surface), from now on."""
    rows: list[int] = []
    run, call_signature = LoadedModel.run, LoadedModel.call_signature

    def counting_run(self: LoadedModel, features: npt.NDArray[np.float32]) -> Any:
        rows.append(len(features))
        return run(self, features)

    def counting_call(self: LoadedModel, features: npt.NDArray[np.float32]) -> Any:
        rows.append(len(features))
        return call_signature(self, features)

    monkeypatch.setattr(LoadedModel, "run", counting_run)
    monkeypatch.setattr(LoadedModel, "call_signature", counting_call)
    yield rows


def test_the_surface_is_computed_once_at_load_not_per_request(
    model_dir: Path, trained_version: Path, counted_runs: list[int]
) -> None:
    publish_copy(trained_version, model_dir, 3)
    with serving_client(model_dir) as client:
        # At load: the golden set's warm-up, then the whole grid in one call.
        assert counted_runs == [4, SURFACE_POINTS * SURFACE_POINTS]
        for _ in range(3):
            page(client)
        assert counted_runs == [4, SURFACE_POINTS * SURFACE_POINTS]
        metrics = client.get("/metrics").text
        assert "xor_response_cache_misses_total 0.0" in metrics
        assert "xor_response_cache_hits_total 0.0" in metrics
        # The counter sees the request path: a prediction is a call (and a cache miss).
        client.post("/predict", json={"inputs": [0, 1]})
        assert counted_runs == [4, SURFACE_POINTS * SURFACE_POINTS, 1]
        assert "xor_response_cache_misses_total 1.0" in client.get("/metrics").text


def test_loading_fills_no_response_cache(model_dir: Path, trained_version: Path) -> None:
    publish_copy(trained_version, model_dir, 3)
    store = ModelStore(model_dir)
    cache = ResponseCache(1024)
    service = PredictionService(store, response_cache=cache)
    store.refresh()
    model = service.model()
    assert model.surface is not None
    assert len(cache) == 0
    assert cache.version(model).rows == {}


def test_the_surface_is_the_models_probability_of_class_1(loaded_model: LoadedModel) -> None:
    surface = loaded_model.surface
    assert surface is not None and loaded_model.surface_problem is None
    axis = np.asarray(surface.axis, dtype=np.float32)
    for i, j in [(0, 0), (0, 49), (49, 0), (49, 49), (10, 37), (25, 25)]:
        features = np.array([[axis[i], axis[j]]], dtype=np.float32)
        expected = float(loaded_model.run(features)["probabilities"][0, 1])
        assert surface.probability[i][j] == pytest.approx(expected, abs=1e-4)
        assert surface.probability[i][j] == round(surface.probability[i][j], 4)


def test_a_version_without_a_curve_shows_the_page_and_says_why(
    model_dir: Path, trained_version: Path
) -> None:
    path = publish_copy(trained_version, model_dir, 3)
    history_file(path).unlink()
    with serving_client(model_dir) as client:
        text, data = page(client)
    assert data["history"] is None
    assert "training_history.json" in data["history_problem"]
    assert "No training curve: this version has no assets.extra/training_history.json" in text
    assert '<svg id="curve-plot"' not in text
    assert data["surface"] is not None and data["metrics"]["accuracy"] == 1.0


def test_an_unusable_curve_does_not_refuse_the_version(
    model_dir: Path, trained_version: Path
) -> None:
    path = publish_copy(trained_version, model_dir, 3)
    document = json.loads(history_file(path).read_text())
    document["points"][-1]["step"] += 1
    history_file(path).write_text(json.dumps(document))
    model = load_version(path, 3)
    assert model.history is None
    assert model.history_problem is not None
    assert "but the evaluation's global_step is" in model.history_problem


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "non-empty list 'points'"),
        ({"points": []}, "non-empty list 'points'"),
        ({"points": [{"step": 1, "loss": 1.0}]}, r"points\[0\] must have"),
        ({"points": [{"step": True, "loss": 1.0, "accuracy": 1.0}]}, r"points\[0\] must have"),
        ({"points": [{"step": 1, "loss": 10**400, "accuracy": 1.0}]}, r"points\[0\] must have"),
        (
            {
                "points": [
                    {"step": 2, "loss": 1, "accuracy": 1},
                    {"step": 2, "loss": 1, "accuracy": 1},
                ]
            },
            "steps must increase",
        ),
    ],
)
def test_an_invalid_curve_is_refused_with_the_reason(
    tmp_path: Path, document: Any, message: str
) -> None:
    history_file(tmp_path).parent.mkdir()
    history_file(tmp_path).write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match=message):
        read_history(tmp_path, 2)


def test_a_curve_beyond_the_cap_or_not_a_file_is_refused(tmp_path: Path) -> None:
    history_file(tmp_path).parent.mkdir()
    history_file(tmp_path).write_bytes(b" " * (MAX_HISTORY_BYTES + 1))
    with pytest.raises(ModelLoadError, match="more than the 65,536 allowed"):
        read_history(tmp_path, 1)
    history_file(tmp_path).unlink()
    history_file(tmp_path).mkdir()
    with pytest.raises(ModelLoadError, match="regular file"):
        read_history(tmp_path, 1)


HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


def test_hostile_values_are_escaped(model_dir: Path, trained_version: Path) -> None:
    path = publish_copy(trained_version, model_dir, 3)
    evaluation_file = path / "assets.extra" / "evaluation.json"
    evaluation = json.loads(evaluation_file.read_text())
    evaluation["evaluated_at"] = HOSTILE
    evaluation["metrics"][HOSTILE] = 0.5
    evaluation_file.write_text(json.dumps(evaluation))
    history = json.loads(history_file(path).read_text())
    history["accuracy_of"] = HOSTILE
    history["loss_of"] = HOSTILE
    history_file(path).write_text(json.dumps(history))
    with serving_client(model_dir) as client:
        text, data = page(client)
    assert "<img" not in text
    assert 'alert("x")' not in text
    assert text.count("<script") == 2  # the data block and the form's script, nothing more
    assert html.escape(HOSTILE, quote=True) in text
    # The data block holds the values as they were, for a reader of the JSON.
    assert data["evaluated_at"] == HOSTILE
    assert data["metrics"][HOSTILE] == 0.5
    assert data["history"]["accuracy_of"] == HOSTILE
