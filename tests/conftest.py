"""The one fixture layer: a clean environment, the hypothesis profile, and the served model.

One real model is trained per session (by the training CLI, in a subprocess) and shared
read-only; tests that publish versions do so in a model dir of their own (``model_dir``).
``settings -> app -> client`` serve that dir; ``served_client`` serves the trained version.
Helpers that are not fixtures live in ``tests/support``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis
import pytest

from tests.support import REPO
from tests.support.apps import TestClient, serving_client, serving_settings

if TYPE_CHECKING:
    from app.api.hot import ServiceApp
    from app.config import Settings
    from app.lifecycle.loading import LoadedModel
    from tests.support.s3 import SeaweedS3

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# In CI (CI set), property tests draw the same examples on every run, so a failure there
# shows again on a re-run; locally they keep exploring new ones. Settings that a test sets
# itself (e.g. max_examples) apply on top; none of ours sets derandomize or database.
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _no_xor_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read XOR_* variables: the developer's own must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("XOR_"):
            monkeypatch.delenv(name)


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
    # Beside the version, the export dir holds the repository's index.json and lock file.
    (version_dir,) = (p for p in (root / "xor").iterdir() if p.is_dir())
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


@pytest.fixture(scope="session")
def loaded_model(trained_version: Path, trained_version_number: int) -> LoadedModel:
    """The trained version, loaded in this process (read-only: shared by the session)."""
    from app.lifecycle.loading import load_version

    return load_version(trained_version, trained_version_number)


@pytest.fixture(scope="module")
def served_client(trained_model_dir: Path) -> Iterator[TestClient]:
    """A client of an app serving the trained version, shared by a module's read-only tests."""
    with serving_client(trained_model_dir) as client:
        yield client


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An empty model dir of the test's own, to publish versions into."""
    path = tmp_path / "xor"
    path.mkdir()
    return path


@pytest.fixture
def settings(model_dir: Path) -> Settings:
    """Settings on the test's own model dir, polled every 0.1 s."""
    return serving_settings(model_dir, poll_interval_seconds=0.1)


@pytest.fixture
def app(settings: Settings) -> ServiceApp:
    from app.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app: ServiceApp) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One real S3 server (SeaweedFS) for the session, on free loopback ports, with its own
    credentials and bucket; tests use prefixes of their own (``s3_url``). Skipped (failed with
    XOR_REQUIRE_SERVICES=1) without the ``weed`` binary."""
    from tests.support.requirements import require
    from tests.support.s3 import seaweed_s3, weed_problem

    require("SeaweedFS (S3)", weed_problem())
    with seaweed_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables of ``s3_server`` set in this process (the developer's own AWS_*
    variables removed), and returned for subprocesses; the server is started if a test
    stopped it."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    environment = s3_server.environment()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    s3_server.start()
    return environment


@pytest.fixture
def s3_url(s3_env: dict[str, str], s3_server: SeaweedS3, request: pytest.FixtureRequest) -> str:
    """``s3://BUCKET/PREFIX``: an empty repository of the test's own on ``s3_server``."""
    import secrets

    return s3_server.url(f"tests/{request.node.name[:40].strip('[]')}-{secrets.token_hex(4)}")
