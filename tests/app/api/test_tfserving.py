"""TF Serving REST (/v1) on the real trained model: formats, metadata, versions, error shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.apps import serving_client
from tests.support.responses import assert_protocol_error
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for

OUTPUTS = ["class_ids", "classes", "logistic", "logits", "probabilities"]
PAIRS = [[0, 0], [0, 1], [1, 0], [1, 1]]


def predicted(client: TestClient, body: Any, path: str = "/v1/models/xor:predict") -> Any:
    """The answer to a predict request that must succeed (sent as curl sends it: no JSON
    Content-Type)."""
    response = client.post(path, content=json.dumps(body))
    assert response.status_code == 200, response.text
    return response.json()


def test_status_lists_the_loaded_version(
    served_client: TestClient, trained_version_number: int
) -> None:
    expected = {
        "model_version_status": [
            {
                "version": str(trained_version_number),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert served_client.get("/v1/models/xor").json() == expected
    pinned = served_client.get(f"/v1/models/xor/versions/{trained_version_number}")
    assert pinned.json() == expected


def test_metadata_as_tf_serving_renders_it(
    served_client: TestClient, trained_version_number: int
) -> None:
    for path in (
        "/v1/models/xor/metadata",
        f"/v1/models/xor/versions/{trained_version_number}/metadata",
    ):
        body = served_client.get(path).json()
        assert body["model_spec"] == {
            "name": "xor",
            "signature_name": "",
            "version": str(trained_version_number),
        }
        signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["method_name"] == "tensorflow/serving/predict"
        assert signature["inputs"] == {
            "inputs": {
                "dtype": "DT_FLOAT",
                "tensor_shape": {
                    "dim": [{"size": "-1", "name": ""}, {"size": "2", "name": ""}],
                    "unknown_rank": False,
                },
                "name": "serving_default_inputs:0",
            }
        }
        dtypes = {name: o["dtype"] for name, o in signature["outputs"].items()}
        assert dtypes == {
            "class_ids": "DT_INT64",
            "classes": "DT_STRING",
            "logistic": "DT_FLOAT",
            "logits": "DT_FLOAT",
            "probabilities": "DT_FLOAT",
        }
        width = signature["outputs"]["probabilities"]["tensor_shape"]["dim"][1]
        assert width == {"size": "2", "name": ""}


@pytest.mark.parametrize(
    "body",
    [
        {"instances": PAIRS},
        {"instances": [[float(a), float(b)] for a, b in PAIRS]},
        {"instances": [{"inputs": pair} for pair in PAIRS]},
        {"signature_name": "serving_default", "instances": PAIRS},
    ],
    ids=["row", "row floats", "named row", "signature"],
)
def test_row_format_answers_one_object_per_instance(
    served_client: TestClient, body: dict[str, Any]
) -> None:
    predictions = predicted(served_client, body)["predictions"]
    assert len(predictions) == 4
    for prediction, (a, b) in zip(predictions, PAIRS, strict=True):
        assert sorted(prediction) == OUTPUTS
        assert prediction["class_ids"] == [a ^ b]
        assert prediction["classes"] == [str(a ^ b)]
        assert len(prediction["logits"]) == len(prediction["logistic"]) == 1
        assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert prediction["probabilities"][1] == pytest.approx(prediction["logistic"][0])


@pytest.mark.parametrize(
    "body", [{"inputs": PAIRS}, {"inputs": {"inputs": PAIRS}}], ids=["columnar", "named columnar"]
)
def test_columnar_format_answers_each_output_over_the_batch(
    served_client: TestClient, body: dict[str, Any]
) -> None:
    outputs = predicted(served_client, body)["outputs"]
    assert sorted(outputs) == OUTPUTS
    assert outputs["class_ids"] == [[0], [1], [1], [0]]
    assert outputs["classes"] == [["0"], ["1"], ["1"], ["0"]]
    assert [len(row) for row in outputs["probabilities"]] == [2] * 4
    assert [len(row) for row in outputs["logits"]] == [1] * 4


def test_pinned_version_predicts(served_client: TestClient, trained_version_number: int) -> None:
    path = f"/v1/models/xor/versions/{trained_version_number}:predict"
    answer = predicted(served_client, {"instances": [[1, 0]]}, path)
    assert answer["predictions"][0]["class_ids"] == [1]


# (body, the start of the error message)
BAD_REQUESTS: list[tuple[str, str]] = [
    ('{"instances": [[0, 2]]}', "instances[0][1]: must be 0 or 1, got 2"),
    ('{"instances": [[0, 0.5]]}', "instances[0][1]: must be 0 or 1, got 0.5"),
    ('{"instances": [[-1, 0]]}', "instances[0][0]: must be 0 or 1, got -1"),
    ('{"instances": [[0, true]]}', "instances[0][1]: must be the number 0 or 1, got boolean"),
    ('{"instances": [[0, "1"]]}', "instances[0][1]: must be the number 0 or 1, got string"),
    ('{"instances": [[0, null]]}', "instances[0][1]: must be the number 0 or 1, got null"),
    ('{"instances": [[0, NaN]]}', "request body is not valid JSON: NaN"),
    ('{"instances": [[0, 1e400]]}', "instances[0][1]: must be 0 or 1, got Infinity"),
    ('{"instances": [[0, 1, 1]]}', "instances[0]: must hold exactly 2 numbers, got 3"),
    ('{"instances": [[0]]}', "instances[0]: must hold exactly 2 numbers, got 1"),
    ('{"instances": [0, 1]}', "instances[0]: must be a pair [x1, x2], got number"),
    ('{"instances": [[[0, 1]]]}', "instances[0]: must hold exactly 2 numbers, got 1"),
    ('{"instances": []}', "instances: must hold at least one pair"),
    ('{"instances": [[0, 1]], "inputs": [[0, 1]]}', "body: has both 'instances' and 'inputs';"),
    ("{}", "body: has neither 'instances' nor 'inputs'; give exactly one"),
    ('{"instances": [{"x": [0, 1]}]}', "instances[0]: must be an object with exactly"),
    ('{"instances": [{"inputs": [0, 2]}]}', "instances[0].inputs[1]: must be 0 or 1, got 2"),
    ('{"inputs": [0, 1]}', "inputs[0]: must be a pair [x1, x2], got number"),
    ('{"inputs": {"x": [[0, 1]]}}', "inputs: must name exactly the input 'inputs'"),
    ('{"inputs": {"inputs": [[2, 1]]}}', "inputs.inputs[0][0]: must be 0 or 1, got 2"),
    ('{"signature_name": "predict", "instances": [[0, 1]]}', "signature_name: serving sig"),
    ('{"instances": [[0, 1]], "examples": []}', "examples: unknown field"),
    ("[[0, 1]]", "body: must be a JSON object, got array"),
    ("{", "request body is not valid JSON"),
    ('{"instances": [[0, 1]], "instances": [[1, 1]]}', "request body is not valid JSON: dup"),
    ('{"instances": [[0, ' + "9" * 30 + "]]}", "instances[0][1]: must be 0 or 1, got 9999"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS, ids=lambda v: str(v)[:40])
def test_bad_request_is_400_in_tf_servings_shape(
    served_client: TestClient, body: str, message: str
) -> None:
    response = served_client.post("/v1/models/xor:predict", content=body.encode())
    assert assert_protocol_error(response, 400).startswith(message)


def test_too_many_instances(served_client: TestClient) -> None:
    body = json.dumps({"instances": [[0, 1]] * 10_001})
    response = served_client.post("/v1/models/xor:predict", content=body)
    assert assert_protocol_error(response, 400) == (
        "instances: holds 10001 pairs, at most 10000 allowed"
    )


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models/other", 404),
        ("GET", "/v1/models/xor/versions/1", 404),
        ("GET", "/v1/models/xor/versions/abc", 404),
        ("GET", "/v1/models/xor/versions/1/metadata", 404),
        ("POST", "/v1/models/other:predict", 404),
        ("POST", "/v1/models/xor/versions/1:predict", 404),
        ("POST", "/v1/models/xor:classify", 405),
        ("GET", "/v1/models/xor/labels/stable", 404),
        ("DELETE", "/v1/models/xor", 405),
    ],
)
def test_unknown_model_version_or_path(
    served_client: TestClient, method: str, path: str, status: int
) -> None:
    response = served_client.request(method, path, content=b'{"instances": [[0, 1]]}')
    assert_protocol_error(response, status)


def test_no_content_type_is_needed_and_any_is_ignored(served_client: TestClient) -> None:
    for headers in ({}, {"Content-Type": "text/plain"}):
        response = served_client.post(
            "/v1/models/xor:predict", content=b'{"inputs": [[1, 1]]}', headers=headers
        )
        assert response.status_code == 200


def test_no_model_is_503_in_tf_servings_shape(client: TestClient) -> None:
    for method, path in (("GET", "/v1/models/xor"), ("POST", "/v1/models/xor:predict")):
        response = client.request(method, path, content=b'{"instances": [[0, 1]]}')
        assert "no version" in assert_protocol_error(response, 503)
        assert int(response.headers["retry-after"]) >= 1


def test_body_limit_is_413_in_tf_servings_shape(trained_model_dir: Path) -> None:
    with serving_client(trained_model_dir, max_body_bytes=100) as client:
        response = client.post("/v1/models/xor:predict", content=b"x" * 101)
        assert_protocol_error(response, 413)
        # The service's own routes keep their shape.
        response = client.post("/predict", content=b"x" * 101)
        assert response.json()["error"]["code"] == "payload_too_large"


def test_versions_window_with_pins(
    client: TestClient, model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 1)
    wait_for(lambda: client.get("/v1/models/xor").status_code == 200)
    publish_copy(trained_version, model_dir, 2)
    wait_for(lambda: len(client.get("/v1/models/xor").json()["model_version_status"]) == 2)
    listed = client.get("/v1/models/xor").json()["model_version_status"]
    assert [status["version"] for status in listed] == ["2", "1"]
    assert client.post("/v1/models/xor/versions/1:predict", content=b'{"inputs": [[0, 1]]}').json()[
        "outputs"
    ]["class_ids"] == [[1]]
    assert client.post("/predict", json={"inputs": [0, 1]}).json()["model_version"] == 2
    publish_copy(trained_version, model_dir, 3)
    wait_for(lambda: client.get("/v1/models/xor/versions/1").status_code == 404)
    listed = client.get("/v1/models/xor").json()["model_version_status"]
    assert [status["version"] for status in listed] == ["3", "2"]
    response = client.post("/v1/models/xor/versions/1:predict", content=b'{"inputs": [[0, 1]]}')
    assert "version 1 is not loaded" in assert_protocol_error(response, 404)


@pytest.mark.parametrize("pair", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_the_one_row_answer_is_the_full_parse_answer(
    served_client: TestClient, pair: tuple[int, int]
) -> None:
    """The one-row body read without the full parse (and answered from the cached row's kept
    answer after the first time) and the same document with its key escaped (full parse):
    the same bytes, the same as a float spelling of the bits."""
    a, b = pair
    bodies = [
        f'{{"instances": [[{a}, {b}]]}}',
        f'{{"\\u0069nstances": [[{a}, {b}]]}}',
        f'{{"instances": [[{a}.0, {b}.0]]}}',
    ]
    answers = [
        served_client.post("/v1/models/xor:predict", content=body.encode()) for body in bodies * 2
    ]
    assert {response.status_code for response in answers} == {200}
    assert len({response.content for response in answers}) == 1
    assert answers[0].json()["predictions"][0]["class_ids"] == [a ^ b]
