"""Schema fuzzing: schemathesis against the service's own /openapi.json on a real server.

Every operation, every phase (examples, coverage, fuzzing, stateful) and every check
(no 5xx, documented status codes, content types, headers, response bodies against their
documented schemas, negative data rejected, positive data accepted).

Path parameters are bound to the served model and version most of the time, so that cases
reach the model instead of stopping at 404; the remaining cases keep exercising unknown names.

The documentation and the checks agree on two points JSON Schema cannot express:

- ``/predict``'s bit is ``{"type": "integer", "enum": [0, 1]}``; JSON Schema counts ``1.0`` as
  an integer, the service answers it with 422 by design (documented in the pair's
  description). Schemathesis draws integers as JSON integers, so no positive case sends
  ``1.0``; :func:`test_predict_refuses_integral_floats_as_documented` pins the behaviour.
- An OIP inference request has cross-field rules (``shape`` against ``data``,
  ``binary_data_size`` against the bytes, ``Inference-Header-Content-Length`` against the JSON
  header): a schema-valid body may still be a 400 there, so for ``…/infer`` the positive-data
  check also accepts 400. Valid inference requests are covered by tests/reliability/
  test_properties.py instead.
- OIP readiness (``/v2/…/ready``) answers "not ready" with 400 and an empty body, as the
  protocol asks: for those the positive-data check also accepts 400.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import FIRST_VERSION
from tests.support.server import Server

pytestmark = pytest.mark.slow

MIN_CASES = 1000
# Reproducible in CI; XOR_FUZZ_SEED=<n> explores other cases locally.
SEED = int(os.environ.get("XOR_FUZZ_SEED", "20261127"))

CONFIG = """
[dictionaries]
model_names = {{ values = ["xor"] }}
versions = {{ values = ["{version}"] }}

[parameters]
"path.model_name" = {{ dictionary = "model_names", probability = 0.9 }}
"path.version" = {{ dictionary = "versions", probability = 0.9 }}
"path.model_version" = {{ dictionary = "versions", probability = 0.9 }}

# Cross-field rules of an inference request (see the module docstring).
[[operations]]
include-path-regex = "/infer$"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "404"]

# /predict's `version` and `label` query parameters exclude each other (422 for both), a rule
# OpenAPI cannot state between parameters: documented in their descriptions.
[[operations]]
include-path-regex = "^/predict$"
checks.positive_data_acceptance.expected-statuses = ["2XX", "404", "422"]

# OIP readiness answers "not ready" (e.g. a version that is not loaded) as 400 with an empty
# body, as the protocol asks and as documented: an answer, not a rejected request.
[[operations]]
include-path-regex = "^/v2/.*ready$"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "404"]
"""


def test_schemathesis_finds_no_failure(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(version=FIRST_VERSION))
    st = Path(sys.executable).with_name("st")
    completed = subprocess.run(
        [
            str(st),
            "--config-file",
            str(config),
            "run",
            f"{server.url}/openapi.json",
            "--checks=all",
            "--max-examples=40",
            # One worker: with two, hypothesis in both threads parses schemathesis' modules with
            # ast.parse at once, and CPython 3.11's AST converter keeps its recursion count in
            # state shared by the threads: "SystemError: AST constructor recursion depth
            # mismatch", a crash of the tool (seen once /predict gained query parameters).
            "--workers=1",
            f"--seed={SEED}",
            "--generation-database=none",
            "--continue-on-failure",
            "--request-timeout=10",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    match = re.search(r"(\d+) generated, (\d+) passed", output)
    assert match, output
    generated, passed = int(match[1]), int(match[2])
    assert generated == passed >= MIN_CASES, output
    document = httpx.get(f"{server.url}/openapi.json").json()
    operations = sum(len(methods) for methods in document["paths"].values())
    assert f"{operations} selected / {operations} total" in output  # every operation
    # The server logged no unhandled error while being fuzzed.
    assert not [x for x in server.log_lines() if x.get("event") == "unhandled_error"]


def test_predict_refuses_integral_floats_as_documented(server: Server) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    pair = body["schema"]["oneOf"][0]["properties"]["inputs"]
    assert "not 1.0" in pair["description"]
    response = httpx.post(f"{server.url}/predict", json={"inputs": [1.0, 0]})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"loc": "inputs[0]", "msg": "must be the integer 0 or 1, got 1.0 (number)"}
    ]
