"""GET /model: the served version, its signature and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.apps import serving_client


def test_describes_the_served_model(
    served_client: TestClient, trained_version: Path, trained_version_number: int
) -> None:
    response = served_client.get("/model")
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == trained_version_number
    assert body["path"] == str(trained_version)
    assert body["loaded_at"].endswith("Z")
    assert body["evaluation"] == json.loads(
        (trained_version / "assets.extra" / "evaluation.json").read_text()
    )
    signature = body["signature"]
    assert signature["key"] == "serving_default"
    assert signature["inputs"] == [{"name": "inputs", "dtype": "float32", "shape": [None, 2]}]
    assert {o["name"]: o["dtype"] for o in signature["outputs"]} == {
        "logits": "float32",
        "logistic": "float32",
        "probabilities": "float32",
        "class_ids": "int64",
        "classes": "string",
    }


def test_503_in_the_error_shape_without_a_model(client: TestClient) -> None:
    response = client.get("/model")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert "Retry-After" in response.headers


@pytest.mark.parametrize("accept", ["application/json", "text/html", ""])
def test_every_variant_says_it_varies_by_accept(served_client: TestClient, accept: str) -> None:
    """/model answers JSON or the HTML page by the Accept header: a shared cache must keep
    them apart."""
    response = served_client.get("/model", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.headers["vary"] == "Accept"
    expected = "text/html" if accept == "text/html" else "application/json"
    assert response.headers["content-type"].startswith(expected)


def test_publishes_the_request_limits_it_enforces(trained_model_dir: Path) -> None:
    """/model's ``limits`` are the configuration, and they are what the server enforces: a
    request of exactly ``max_request_pairs`` pairs is answered, one more is 422, a body one byte
    over ``max_body_bytes`` is 413."""
    with serving_client(trained_model_dir, max_request_pairs=3, max_body_bytes=4096) as client:
        limits = client.get("/model").json()["limits"]
        assert limits == {
            "max_request_pairs": 3,
            "max_body_bytes": 4096,
            "max_header_bytes": 65_536,
            "request_timeout_seconds": 10.0,
        }
        pairs = [[0, 1]] * limits["max_request_pairs"]
        assert client.post("/predict", json={"instances": pairs}).status_code == 200
        refused = client.post("/predict", json={"instances": [*pairs, [1, 1]]})
        assert refused.status_code == 422
        assert "at most 3" in refused.text
        body = b'{"inputs": [0, 1]}'
        oversized = body + b" " * (limits["max_body_bytes"] + 1 - len(body))
        response = client.post(
            "/predict", content=oversized, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
