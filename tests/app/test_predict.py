"""POST /predict against the real trained model: answers, validation and the error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

XOR = [([0, 0], 0), ([0, 1], 1), ([1, 0], 1), ([1, 1], 0)]
JSON = {"Content-Type": "application/json"}


def post(client: TestClient, body: bytes | str, headers: dict[str, str] | None = None) -> Any:
    content = body.encode() if isinstance(body, str) else body
    return client.post("/predict", content=content, headers=JSON if headers is None else headers)


def assert_error_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    for detail in error["details"]:
        assert set(detail) == {"loc", "msg"}
    return dict(error)


@pytest.mark.parametrize(("pair", "expected"), XOR)
def test_single_pair_answers_xor(
    served_client: TestClient, trained_version_number: int, pair: list[int], expected: int
) -> None:
    response = served_client.post("/predict", json={"inputs": pair})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == trained_version_number
    (prediction,) = body["predictions"]
    assert prediction["inputs"] == pair
    assert prediction["class_id"] == expected
    assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert prediction["probabilities"][expected] > 0.5


def test_batch_answers_xor_in_request_order(served_client: TestClient) -> None:
    pairs = [pair for pair, _ in XOR] * 3
    pairs = [*pairs[::-1], [1, 1], [0, 1]]
    response = served_client.post("/predict", json={"instances": pairs})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["inputs"] for p in predictions] == pairs
    assert [p["class_id"] for p in predictions] == [a ^ b for a, b in pairs]
    for prediction in predictions:
        assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_content_type_with_charset_is_accepted(served_client: TestClient) -> None:
    response = post(
        served_client, '{"inputs": [1, 0]}', {"Content-Type": "Application/JSON; charset=UTF-8"}
    )
    assert response.status_code == 200
    assert response.json()["predictions"][0]["class_id"] == 1


def test_largest_allowed_batch(served_client: TestClient) -> None:
    pairs = [[i % 2, (i // 2) % 2] for i in range(10_000)]
    response = served_client.post("/predict", json={"instances": pairs})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 10_000
    assert [p["class_id"] for p in predictions[:8]] == [0, 1, 1, 0, 0, 1, 1, 0]


# (body, status, code, loc of the first detail or None)
BAD_PAYLOADS: list[tuple[str, int, str, str | None]] = [
    ('{"inputs": [0, 2]}', 422, "invalid_input", "inputs[1]"),
    ('{"inputs": [-1, 0]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": [0.5, 1]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": [1.0, 1]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": ["1", 0]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": [true, 0]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": [false, false]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": [null, 0]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": [[], 0]}', 422, "invalid_input", "inputs[0]"),
    ('{"inputs": [[0, 1]]}', 422, "invalid_input", "inputs"),
    ('{"inputs": [0]}', 422, "invalid_input", "inputs"),
    ('{"inputs": [0, 1, 1]}', 422, "invalid_input", "inputs"),
    ('{"inputs": []}', 422, "invalid_input", "inputs"),
    ('{"inputs": "01"}', 422, "invalid_input", "inputs"),
    ('{"inputs": {"a": 0}}', 422, "invalid_input", "inputs"),
    ('{"inputs": [0, 1e400]}', 422, "invalid_input", "inputs[1]"),
    ('{"instances": []}', 422, "invalid_input", "instances"),
    ('{"instances": [0, 1]}', 422, "invalid_input", "instances[0]"),
    ('{"instances": [[0, 1], [1, 1], [0, 0], [1, 2]]}', 422, "invalid_input", "instances[3][1]"),
    ('{"instances": [[0, 1], [1]]}', 422, "invalid_input", "instances[1]"),
    ('{"instances": [[0, 1, 0]]}', 422, "invalid_input", "instances[0]"),
    ('{"instances": [[[0, 1]]]}', 422, "invalid_input", "instances[0]"),
    ('{"instances": [[0, true]]}', 422, "invalid_input", "instances[0][1]"),
    ('{"instances": null}', 422, "invalid_input", "instances"),
    ('{"instances": [[0, 1]], "inputs": [0, 1]}', 422, "invalid_input", "body"),
    ("{}", 422, "invalid_input", "body"),
    ('{"input": [0, 1]}', 422, "invalid_input", "input"),
    ('{"inputs": [0, 1], "extra": 1}', 422, "invalid_input", "extra"),
    ("[[0, 1]]", 422, "invalid_input", "body"),
    ('"inputs"', 422, "invalid_input", "body"),
    ("null", 422, "invalid_input", "body"),
    ("42", 422, "invalid_input", "body"),
    ("", 400, "malformed_request", None),
    ("{", 400, "malformed_request", None),
    ('{"inputs": [0, 1]', 400, "malformed_request", None),
    ("{'inputs': [0, 1]}", 400, "malformed_request", None),
    ('{"inputs": [0, 1]} trailing', 400, "malformed_request", None),
    ('{"inputs": [NaN, 1]}', 400, "malformed_request", None),
    ('{"inputs": [Infinity, 1]}', 400, "malformed_request", None),
    ('{"inputs": [-Infinity, 1]}', 400, "malformed_request", None),
    ('{"inputs": [0, 1], "inputs": [1, 1]}', 400, "malformed_request", None),
    ("[" * 100_000 + "]" * 100_000, 400, "malformed_request", None),
    ('{"inputs": [' + "9" * 5000 + ", 1]}", 400, "malformed_request", None),
]


@pytest.mark.parametrize(("body", "status", "code", "loc"), BAD_PAYLOADS, ids=lambda v: str(v)[:40])
def test_bad_payload_gets_its_status_and_the_error_shape(
    served_client: TestClient, body: str, status: int, code: str, loc: str | None
) -> None:
    error = assert_error_shape(post(served_client, body), status, code)
    if loc is not None:
        assert error["details"], error
        assert error["details"][0]["loc"] == loc
        assert loc in error["message"]


def test_too_many_instances(served_client: TestClient) -> None:
    response = served_client.post("/predict", json={"instances": [[0, 1]] * 10_001})
    error = assert_error_shape(response, 422, "invalid_input")
    assert error["details"] == [
        {"loc": "instances", "msg": "holds 10001 pairs, at most 10000 allowed"}
    ]


def test_message_names_location_and_value(served_client: TestClient) -> None:
    body = json.dumps({"instances": [[0, 1], [1, 1], [0, 0], [1, 2]]})
    error = assert_error_shape(post(served_client, body), 422, "invalid_input")
    assert error["details"] == [{"loc": "instances[3][1]", "msg": "must be 0 or 1, got 2"}]
    assert error["message"] == "instances[3][1]: must be 0 or 1, got 2"


def test_every_bad_value_is_reported(served_client: TestClient) -> None:
    body = json.dumps({"instances": [[2, 0], [0, 1], [True, "x"]]})
    error = assert_error_shape(post(served_client, body), 422, "invalid_input")
    assert [d["loc"] for d in error["details"]] == [
        "instances[0][0]",
        "instances[2][0]",
        "instances[2][1]",
    ]
    assert "true (boolean)" in error["details"][1]["msg"]


def test_non_utf8_body_is_400(served_client: TestClient) -> None:
    error = assert_error_shape(
        post(served_client, b'{"inputs": [0, 1\xff]}'), 400, "malformed_request"
    )
    assert "UTF-8" in error["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "application/jsonx"},
        {"Content-Type": "application/json; charset=latin-1"},
        {"Content-Type": "multipart/form-data; boundary=x"},
    ],
    ids=lambda h: h.get("Content-Type", "missing"),
)
def test_wrong_content_type_is_415(served_client: TestClient, headers: dict[str, str]) -> None:
    assert_error_shape(
        post(served_client, '{"inputs": [0, 1]}', headers), 415, "unsupported_media_type"
    )


def test_body_over_limit_is_413_before_parsing(trained_model_dir: Any) -> None:
    from app.config import Settings
    from app.main import create_app

    settings = Settings(model_dir=trained_model_dir, max_body_bytes=100, poll_interval_seconds=60)
    with TestClient(create_app(settings)) as client:
        # Not even JSON: had it been parsed, this would be a 400.
        response = post(client, b"x" * 101)
        assert_error_shape(response, 413, "payload_too_large")
        assert len(response.headers["x-request-id"]) == 32

        def chunks() -> Any:
            for _ in range(50):
                yield b"y" * 10

        response = client.post("/predict", content=chunks(), headers=JSON)
        assert "content-length" not in response.request.headers
        assert_error_shape(response, 413, "payload_too_large")
        assert post(client, '{"inputs": [0, 1]}').status_code == 200


def test_unknown_path_is_404_in_the_error_shape(served_client: TestClient) -> None:
    assert_error_shape(served_client.get("/nope"), 404, "not_found")
    assert_error_shape(served_client.post("/predict/extra", json={}), 404, "not_found")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_in_the_error_shape(served_client: TestClient, method: str) -> None:
    response = served_client.request(method, "/predict")
    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_no_model_is_503_with_retry_after(client: TestClient) -> None:
    response = client.post("/predict", json={"inputs": [0, 1]})
    error = assert_error_shape(response, 503, "model_unavailable")
    assert "no version" in error["message"]
    assert int(response.headers["retry-after"]) >= 1
