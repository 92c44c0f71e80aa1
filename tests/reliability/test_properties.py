"""Property tests: the three APIs agree on every valid pair; anything else in place of a pair
or a bit is refused in the API's error shape, except what a protocol documents accepting
(TF Serving's 0.0/1.0, OIP's nested data), which is answered."""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.responses import assert_protocol_error, assert_service_error

BITS = st.integers(min_value=0, max_value=1)
PAIRS = st.lists(st.tuples(BITS, BITS), min_size=1, max_size=16)
# Numbers at the edges of every range a request's numbers meet: int64, the float range (no float
# holds 10**309: FP64 data holding it was an OverflowError, a 500), float32, and the decoder's
# digit limit (4300).
EDGE_NUMBERS = st.sampled_from(
    [
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        2**64,
        10**309,
        -(10**309),
        -(10**4299),
        1.7976931348623157e308,
        3.5e38,
    ]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | EDGE_NUMBERS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Only what these tests need: derandomize (and the rest) come from the loaded profile
# (tests/conftest.py: "ci" when CI is set).
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _is_valid_pair(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 2
        and all(type(bit) is int and bit in (0, 1) for bit in value)
    )


def _are_bits(values: list[Any]) -> bool:
    return all(type(v) in (int, float) and v in (0, 1) for v in values)


def _leaves(value: Any) -> list[Any]:
    if type(value) is not list:
        return [value]
    return [leaf for item in value for leaf in _leaves(item)]


def _v1_accepts(value: Any) -> bool:
    # TF Serving takes 0.0 and 1.0 as well as 0 and 1 (documented in the README).
    return type(value) is list and len(value) == 2 and _are_bits(value)


def _v2_accepts(value: Any) -> bool:
    # OIP data may be flat or nested; two numbers 0/1 in all fill shape [1, 2] (FP32).
    return type(value) is list and len(_leaves(value)) == 2 and _are_bits(_leaves(value))


def test_the_fuzz_settings_keep_the_profiles_derandomization() -> None:
    profile = hypothesis.settings.default
    assert profile is not None
    assert FUZZ.derandomize == profile.derandomize
    assert FUZZ.database is None


@FUZZ
@given(pairs=PAIRS)
def test_the_three_apis_agree_and_answer_xor(
    served_client: TestClient, pairs: list[tuple[int, int]]
) -> None:
    rows = [list(pair) for pair in pairs]
    expected = [a ^ b for a, b in pairs]

    predict = served_client.post("/predict", json={"instances": rows})
    assert predict.status_code == 200, predict.text
    predicted = predict.json()["predictions"]
    assert [p["class_id"] for p in predicted] == expected
    assert [p["inputs"] for p in predicted] == rows

    v1 = served_client.post("/v1/models/xor:predict", json={"instances": rows})
    assert v1.status_code == 200, v1.text
    assert [p["class_ids"] for p in v1.json()["predictions"]] == [[c] for c in expected]

    v2 = served_client.post(
        "/v2/models/xor/infer",
        json={
            "inputs": [
                {
                    "name": "inputs",
                    "shape": [len(rows), 2],
                    "datatype": "INT64",
                    "data": [bit for row in rows for bit in row],
                }
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["class_ids"]["data"] == expected

    # The same probabilities everywhere (one model, one core).
    v1_probabilities = [p["probabilities"] for p in v1.json()["predictions"]]
    flat = outputs["probabilities"]["data"]
    v2_probabilities = [flat[i : i + 2] for i in range(0, len(flat), 2)]
    for a, b, c in zip(
        [p["probabilities"] for p in predicted], v1_probabilities, v2_probabilities, strict=True
    ):
        assert a == b
        assert all(abs(x - y) < 1e-6 for x, y in zip(a, c, strict=True))


@FUZZ
@given(value=JSON_VALUES)
def test_anything_but_a_pair_is_refused_unless_a_protocol_documents_it(
    served_client: TestClient, value: Any
) -> None:
    if _is_valid_pair(value):
        return
    body = json.dumps({"inputs": value})
    response = served_client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert_service_error(response, 422)
    body = json.dumps({"instances": [[0, 1], value]})
    response = served_client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert_service_error(response, 422)
    # What the protocols accept besides [0|1, 0|1] (0.0/1.0; nested OIP data) is answered.
    response = served_client.post(
        "/v1/models/xor:predict", content=json.dumps({"instances": [value]})
    )
    if _v1_accepts(value):
        assert response.status_code == 200, response.text
    else:
        assert_protocol_error(response, 400)
    v2 = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": value}]}
    response = served_client.post("/v2/models/xor/infer", content=json.dumps(v2))
    if _v2_accepts(value):
        assert response.status_code == 200, response.text
    else:
        assert_protocol_error(response, 400)


@pytest.mark.parametrize(
    ("value", "v1", "v2"),
    [
        ([1.0, 1], 200, 200),
        ([0.0, 1.0], 200, 200),
        ([[1], [1]], 400, 200),
        ([[0, 0]], 400, 200),
        ([[[0]], [1]], 400, 200),
        ([1, True], 400, 400),
        ([0.5, 1], 400, 400),
        ([[0, 1, 1]], 400, 400),
    ],
)
def test_what_only_the_protocols_accept_in_place_of_a_pair(
    served_client: TestClient, value: Any, v1: int, v2: int
) -> None:
    # Examples the property above found (hypothesis, 2026-11-27): kept as fixed cases.
    assert (_v1_accepts(value), _v2_accepts(value)) == (v1 == 200, v2 == 200)
    body = json.dumps({"instances": [value]})
    assert served_client.post("/v1/models/xor:predict", content=body).status_code == v1
    tensor = {"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": value}
    body = json.dumps({"inputs": [tensor]})
    assert served_client.post("/v2/models/xor/infer", content=body).status_code == v2


@FUZZ
@given(bit=JSON_VALUES)
def test_anything_but_a_bit_is_refused_unless_tf_serving_documents_it(
    served_client: TestClient, bit: Any
) -> None:
    if type(bit) is int and bit in (0, 1):
        return
    response = served_client.post("/predict", json={"inputs": [0, bit]})
    assert_service_error(response, 422)
    v1_ok = type(bit) is float and bit in (0.0, 1.0)  # TF Serving takes 0.0/1.0 (documented)
    response = served_client.post("/v1/models/xor:predict", json={"instances": [[bit, 1]]})
    if v1_ok:
        assert response.status_code == 200
    else:
        assert_protocol_error(response, 400)


@FUZZ
@given(value=JSON_VALUES)
def test_any_value_as_a_name_is_answered_or_refused_in_shape(
    served_client: TestClient, value: Any
) -> None:
    # Names are compared and looked up: a list or object there was a TypeError (unhashable).
    tensor: dict[str, Any] = {"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [0, 1]}
    for document in (
        {"inputs": [{**tensor, "datatype": value}]},
        {"inputs": [{**tensor, "name": value}]},
        {"inputs": [tensor], "outputs": [{"name": value}]},
    ):
        response = served_client.post("/v2/models/xor/infer", content=json.dumps(document))
        if response.status_code != 200:
            assert_protocol_error(response, 400)
    v1 = {"signature_name": value, "instances": [[0, 1]]}
    response = served_client.post("/v1/models/xor:predict", content=json.dumps(v1))
    if response.status_code != 200:
        assert_protocol_error(response, 400)


@FUZZ
@given(document=JSON_VALUES)
def test_any_envelope_is_answered_with_a_2xx_or_a_4xx_in_shape(
    served_client: TestClient, document: Any
) -> None:
    _answered_or_refused_in_shape(served_client, json.dumps(document).encode())


@FUZZ
@given(raw=st.binary(max_size=64))
def test_arbitrary_bytes_are_answered_or_refused_in_shape(
    served_client: TestClient, raw: bytes
) -> None:
    _answered_or_refused_in_shape(served_client, raw)


def _answered_or_refused_in_shape(client: TestClient, body: bytes) -> None:
    """``body`` posted to each API is answered (200) or refused with a 4xx in its shape."""
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    if response.status_code != 200:
        assert_service_error(response, 400, 422)
    for path in ("/v1/models/xor:predict", "/v2/models/xor/infer"):
        response = client.post(path, content=body)
        if response.status_code != 200:
            assert_protocol_error(response, 400)
