"""POST /predict against the real trained model: answers, validation and the error shape;
its request parsing and response rendering (``app.api.service.predict``) without HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.api.service.predict import (
    GROUPED_RENDERING_FROM,
    ONE_PAIR_BODY,
    parse_predict_request,
    render_predict_response,
)
from app.core.bits import Pair, pairs_batch
from app.core.prediction import ModelOutputs
from app.errors import InvalidInput
from app.lifecycle.loading import LoadedModel
from tests.support.apps import serving_client
from tests.support.responses import assert_service_error

XOR = [([0, 0], 0), ([0, 1], 1), ([1, 0], 1), ([1, 1], 0)]
JSON = {"Content-Type": "application/json"}


def post(client: TestClient, body: bytes | str, headers: dict[str, str] | None = None) -> Any:
    content = body.encode() if isinstance(body, str) else body
    return client.post("/predict", content=content, headers=JSON if headers is None else headers)


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
    error = assert_service_error(post(served_client, body), status, code=code)
    if loc is not None:
        assert error["details"], error
        assert error["details"][0]["loc"] == loc
        assert loc in error["message"]


def test_too_many_instances(served_client: TestClient) -> None:
    response = served_client.post("/predict", json={"instances": [[0, 1]] * 10_001})
    error = assert_service_error(response, 422, code="invalid_input")
    assert error["details"] == [
        {"loc": "instances", "msg": "holds 10001 pairs, at most 10000 allowed"}
    ]


def test_message_names_location_and_value(served_client: TestClient) -> None:
    body = json.dumps({"instances": [[0, 1], [1, 1], [0, 0], [1, 2]]})
    error = assert_service_error(post(served_client, body), 422, code="invalid_input")
    assert error["details"] == [{"loc": "instances[3][1]", "msg": "must be 0 or 1, got 2"}]
    assert error["message"] == "instances[3][1]: must be 0 or 1, got 2"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{}", "body: has neither 'inputs' nor 'instances'; give exactly one"),
        (
            '{"inputs": [0, 1], "instances": [[0, 1]]}',
            "body: has both 'inputs' and 'instances'; give exactly one",
        ),
    ],
)
def test_neither_or_both_keys_is_said_plainly(
    served_client: TestClient, body: str, message: str
) -> None:
    error = assert_service_error(post(served_client, body), 422, code="invalid_input")
    assert error["message"] == message


def test_every_bad_value_is_reported(served_client: TestClient) -> None:
    body = json.dumps({"instances": [[2, 0], [0, 1], [True, "x"]]})
    error = assert_service_error(post(served_client, body), 422, code="invalid_input")
    assert [d["loc"] for d in error["details"]] == [
        "instances[0][0]",
        "instances[2][0]",
        "instances[2][1]",
    ]
    assert "true (boolean)" in error["details"][1]["msg"]


def test_non_utf8_body_is_400(served_client: TestClient) -> None:
    error = assert_service_error(
        post(served_client, b'{"inputs": [0, 1\xff]}'), 400, code="malformed_request"
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
    assert_service_error(
        post(served_client, '{"inputs": [0, 1]}', headers), 415, code="unsupported_media_type"
    )


def test_body_over_limit_is_413_before_parsing(trained_model_dir: Path) -> None:
    with serving_client(trained_model_dir, max_body_bytes=100) as client:
        # Not even JSON: had it been parsed, this would be a 400.
        response = post(client, b"x" * 101)
        assert_service_error(response, 413, code="payload_too_large")
        assert len(response.headers["x-request-id"]) == 32

        def chunks() -> Any:
            for _ in range(50):
                yield b"y" * 10

        response = client.post("/predict", content=chunks(), headers=JSON)
        assert "content-length" not in response.request.headers
        assert_service_error(response, 413, code="payload_too_large")
        assert post(client, '{"inputs": [0, 1]}').status_code == 200


def test_unknown_path_is_404_in_the_error_shape(served_client: TestClient) -> None:
    assert_service_error(served_client.get("/nope"), 404, code="not_found")
    assert_service_error(served_client.post("/predict/extra", json={}), 404, code="not_found")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_in_the_error_shape(served_client: TestClient, method: str) -> None:
    response = served_client.request(method, "/predict")
    assert_service_error(response, 405, code="method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_no_model_is_503_with_retry_after(client: TestClient) -> None:
    response = client.post("/predict", json={"inputs": [0, 1]})
    error = assert_service_error(response, 503, code="model_unavailable")
    assert "no version" in error["message"]
    assert int(response.headers["retry-after"]) >= 1


# --- parsing and rendering, without HTTP ----------------------------------------------------


def test_parse_single_and_batch() -> None:
    assert parse_predict_request({"inputs": [1, 0]}, 10) == ([(1, 0)], True)
    assert parse_predict_request({"instances": [[0, 0], [1, 1]]}, 10) == ([(0, 0), (1, 1)], False)


def test_batch_size_limit_is_a_parameter() -> None:
    assert len(parse_predict_request({"instances": [[0, 1]] * 3}, 3)[0]) == 3
    with pytest.raises(InvalidInput) as raised:
        parse_predict_request({"instances": [[0, 1]] * 4}, 3)
    assert raised.value.details[0].msg == "holds 4 pairs, at most 3 allowed"


PAIRS: list[Pair] = [(0, 0), (0, 1), (1, 0), (1, 1)]


def _per_row_json(pairs: list[Pair], outputs: ModelOutputs) -> bytes:
    return orjson.dumps(
        {
            "model_version": outputs.model_version,
            "predictions": [
                {
                    "inputs": list(pair),
                    "class_id": int(outputs["class_ids"][i, 0]),
                    "probabilities": outputs["probabilities"][i].astype(np.float64).tolist(),
                }
                for i, pair in enumerate(pairs)
            ],
        }
    )


@pytest.mark.parametrize(
    "size", [1, 2, GROUPED_RENDERING_FROM - 1, GROUPED_RENDERING_FROM, 1000, 10_000]
)
def test_predict_json_is_the_same_bytes_however_it_is_encoded(
    loaded_model: LoadedModel, size: int
) -> None:
    rng = np.random.default_rng(size)
    pairs = [PAIRS[i] for i in rng.integers(0, 4, size=size)]
    batch = pairs_batch(pairs, where="instances", loc=lambda i, j: "x", max_rows=10_000)
    outputs = ModelOutputs(loaded_model.version, loaded_model.run(batch.features))
    body = render_predict_response(pairs, batch, outputs)
    assert body == _per_row_json(pairs, outputs)
    document = orjson.loads(body)
    assert [p["inputs"] for p in document["predictions"]] == [list(p) for p in pairs]
    assert [p["class_id"] for p in document["predictions"]] == [a ^ b for a, b in pairs]


def test_predict_json_keeps_rows_apart_that_differ_only_in_their_outputs() -> None:
    # The same pair with two different answers (as from two versions) must not be merged.
    pairs: list[Pair] = [(0, 1)] * GROUPED_RENDERING_FROM
    batch = pairs_batch(pairs, where="instances", loc=lambda i, j: "x", max_rows=10_000)
    probabilities = np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (len(pairs), 1))
    probabilities[7] = [0.5, 0.5]
    class_ids = np.ones((len(pairs), 1), dtype=np.int64)
    class_ids[9] = 0
    outputs = ModelOutputs(3, {"class_ids": class_ids, "probabilities": probabilities})
    body = render_predict_response(pairs, batch, outputs)
    assert body == _per_row_json(pairs, outputs)
    predictions = orjson.loads(body)["predictions"]
    assert predictions[7]["probabilities"] == [0.5, 0.5] and predictions[9]["class_id"] == 0
    assert predictions[8] == {"inputs": [0, 1], "class_id": 1, "probabilities": [0.25, 0.75]}


# Characters a lenient reader might take for JSON whitespace.
NOT_JSON_SPACE = "\x0b\x0c\xa0\u2028"


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [0, 1], "inputs": [1, 1]}',  # a duplicate key: refused in full
        b'{"inputs": [0, 1]}x',
        b'{"inputs": [01, 1]}',
        b'{"inputs": [0, 1.0]}',
        b'{"inputs": [true, 1]}',
        b'{"inputs": [0, 1, 1]}',
        b'{"Inputs": [0, 1]}',
        b'{"inputs": [-0, 1]}',
        *(f'{{"inputs":{space}[0, 1]}}'.encode() for space in NOT_JSON_SPACE),
    ],
)
def test_the_one_pair_reading_leaves_every_other_body_to_the_full_parse(body: bytes) -> None:
    assert ONE_PAIR_BODY.bits(body) is None


@pytest.mark.parametrize("pair", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_the_one_pair_answer_is_the_full_parse_answer(
    served_client: TestClient, pair: tuple[int, int]
) -> None:
    """The same document, once in the plain form (read by the one-pair reading, answered from
    the response cache's kept answer after the first time) and once with its key escaped (the
    full parse): the same bytes."""
    plain = f'{{"inputs": [{pair[0]}, {pair[1]}]}}'
    escaped = f'{{"\\u0069nputs": [{pair[0]}, {pair[1]}]}}'
    assert ONE_PAIR_BODY.bits(plain.encode()) == pair
    assert ONE_PAIR_BODY.bits(escaped.encode()) is None
    answers = [post(served_client, body) for body in (plain, escaped, plain, escaped, plain)]
    assert {response.status_code for response in answers} == {200}
    assert len({response.content for response in answers}) == 1
