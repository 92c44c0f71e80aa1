"""Serving fixtures: one real model trained per session, then settings -> app -> client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns (once, at import) with httpx;
    # the dev lock has httpx. Ignored by message, so any other warning still fails the run.
    warnings.filterwarnings(
        "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

REPO = Path(__file__).resolve().parents[2]


def publish_copy(source: Path, model_dir: Path, version: int) -> Path:
    """Copy a published version to ``model_dir/<version>`` as a new version (atomically)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-export-{version}"
    shutil.copytree(source, staging)
    evaluation_file = staging / "assets.extra" / "evaluation.json"
    evaluation = json.loads(evaluation_file.read_text())
    evaluation["model_version"] = version
    evaluation_file.write_text(json.dumps(evaluation))
    target = model_dir / str(version)
    os.rename(staging, target)
    return target


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def trained_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One version trained by the real training CLI (a subprocess), read-only for tests."""
    root = tmp_path_factory.mktemp("trained")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "--model-dir",
            str(root / "training"),
            "--export-dir",
            str(root / "xor"),
            "--steps",
            "300",
            "--min-accuracy",
            "1.0",
        ],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    (version_dir,) = (root / "xor").iterdir()
    assert version_dir.name.isascii() and version_dir.name.isdigit()
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "assets.extra" / "evaluation.json").is_file()
    return version_dir


@pytest.fixture(scope="session")
def trained_model_dir(trained_version: Path) -> Path:
    """The export dir holding only the trained version (read-only)."""
    return trained_version.parent


@pytest.fixture(scope="session")
def trained_version_number(trained_version: Path) -> int:
    return int(trained_version.name)


@pytest.fixture(scope="module")
def served_client(trained_model_dir: Path) -> Iterator[TestClient]:
    """A client of an app serving the trained version, shared by a module's read-only tests."""
    settings = Settings(model_dir=trained_model_dir, poll_interval_seconds=60)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An empty model dir of the test's own, to publish versions into."""
    path = tmp_path / "xor"
    path.mkdir()
    return path


@pytest.fixture
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, poll_interval_seconds=0.1)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client
