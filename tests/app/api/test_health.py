"""Liveness and readiness, including becoming ready without a restart."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.apps import serving_client
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for

LOADED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_ready_while_a_model_is_served(
    served_client: TestClient, trained_version_number: int
) -> None:
    for path in ("/health", "/health/ready"):
        response = served_client.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["model_version"] == trained_version_number
        assert LOADED_AT.fullmatch(body["loaded_at"])
    assert served_client.get("/health/live").json() == {"status": "ok"}


def test_readiness_follows_the_model_dir(
    client: TestClient, model_dir: Path, trained_version: Path
) -> None:
    assert client.get("/health/live").status_code == 200
    for path in ("/health", "/health/ready"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "reason": f"no version published in {model_dir} yet",
        }
    publish_copy(trained_version, model_dir, 42)
    wait_for(lambda: client.get("/health/ready").status_code == 200)
    assert client.get("/health").json()["model_version"] == 42
    response = client.post("/predict", json={"inputs": [1, 1]})
    assert response.status_code == 200
    assert response.json()["model_version"] == 42


def test_missing_model_dir_is_live_but_not_ready(tmp_path: Path) -> None:
    with serving_client(tmp_path / "nowhere") as client:
        assert client.get("/health/live").status_code == 200
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert "does not exist" in response.json()["reason"]
