"""Open Inference Protocol (/v2) on the real trained model: JSON and binary tensors, errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.apps import serving_client
from tests.support.responses import assert_protocol_error

HEADER = "Inference-Header-Content-Length"
PAIRS = [[0, 0], [0, 1], [1, 0], [1, 1]]


def tensor(data: Any, shape: Any = (4, 2), datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    return {"name": "inputs", "shape": list(shape), "datatype": datatype, "data": data, **extra}


def infer(client: TestClient, document: Any, binary: bytes = b"", **headers: str) -> Any:
    header = json.dumps(document).encode()
    if binary:
        headers = {HEADER: str(len(header)), **headers}
    return client.post("/v2/models/xor/infer", content=header + binary, headers=headers)


def test_server_metadata_and_health(served_client: TestClient) -> None:
    body = served_client.get("/v2").json()
    assert body["name"] and body["version"]
    assert "binary_tensor_data" in body["extensions"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/xor/ready"):
        response = served_client.get(path)
        assert response.status_code == 200 and response.content == b""


def test_model_metadata(served_client: TestClient, trained_version_number: int) -> None:
    expected = {
        "name": "xor",
        "versions": [str(trained_version_number)],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "inputs", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [-1, 1]},
            {"name": "logistic", "datatype": "FP32", "shape": [-1, 1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "class_ids", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "classes", "datatype": "BYTES", "shape": [-1, 1]},
        ],
    }
    assert served_client.get("/v2/models/xor").json() == expected
    pinned = served_client.get(f"/v2/models/xor/versions/{trained_version_number}")
    assert pinned.json() == expected
    assert (
        served_client.get(f"/v2/models/xor/versions/{trained_version_number}/ready").status_code
        == 200
    )


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP32", [0, 0, 0, 1, 1, 0, 1, 1]),
        ("FP64", [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
        ("INT32", PAIRS),
        ("INT64", [0, 0, 0, 1, 1, 0, 1, 1]),
        ("BOOL", [[False, False], [False, True], [True, False], [True, True]]),
    ],
)
def test_json_tensors_flat_or_nested(
    served_client: TestClient, trained_version_number: int, datatype: str, data: Any
) -> None:
    response = infer(served_client, {"id": "req-1", "inputs": [tensor(data, datatype=datatype)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "xor"
    assert body["model_version"] == str(trained_version_number)
    assert body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert [o["name"] for o in body["outputs"]] == [
        "logits",
        "logistic",
        "probabilities",
        "class_ids",
        "classes",
    ]
    assert outputs["class_ids"] == {
        "name": "class_ids",
        "datatype": "INT64",
        "shape": [4, 1],
        "data": [0, 1, 1, 0],
    }
    assert outputs["classes"]["data"] == ["0", "1", "1", "0"]
    assert outputs["classes"]["datatype"] == "BYTES"
    assert outputs["probabilities"]["shape"] == [4, 2]
    assert len(outputs["probabilities"]["data"]) == 8
    assert outputs["logits"]["datatype"] == "FP32" and outputs["logits"]["shape"] == [4, 1]


def test_binary_input_and_selected_binary_outputs(served_client: TestClient) -> None:
    raw = np.array(PAIRS, dtype="<f4").tobytes()
    document = {
        "inputs": [
            {
                "name": "inputs",
                "shape": [4, 2],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [
            {"name": "classes", "parameters": {"binary_data": True}},
            {"name": "probabilities", "parameters": {"binary_data": True}},
            {"name": "class_ids"},
        ],
    }
    response = infer(served_client, document, raw)
    assert response.status_code == 200, response.text
    length = int(response.headers[HEADER])
    header = json.loads(response.content[:length])
    assert "id" not in header
    classes, probabilities, class_ids = header["outputs"]
    assert class_ids["data"] == [0, 1, 1, 0]
    blob = response.content[length:]
    assert (
        len(blob)
        == classes["parameters"]["binary_data_size"]
        + (probabilities["parameters"]["binary_data_size"])
    )
    size = classes["parameters"]["binary_data_size"]
    items, offset = [], 0
    while offset < size:
        (n,) = struct.unpack_from("<I", blob, offset)
        items.append(blob[offset + 4 : offset + 4 + n])
        offset += 4 + n
    assert items == [b"0", b"1", b"1", b"0"]
    values = np.frombuffer(blob[size:], dtype="<f4").reshape(4, 2)
    assert values.argmax(axis=1).tolist() == [0, 1, 1, 0]


def test_binary_data_output_default(served_client: TestClient) -> None:
    document = {"inputs": [tensor(PAIRS)], "parameters": {"binary_data_output": True}}
    response = infer(served_client, document)
    length = int(response.headers[HEADER])
    header = json.loads(response.content[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes[:4] == [16, 16, 32, 32]
    assert len(response.content) == length + sum(sizes)


def _binary(datatype: str, values: Any, size: int | None = None) -> tuple[dict[str, Any], bytes]:
    raw = np.asarray(values, dtype={"FP32": "<f4", "INT64": "<i8", "BOOL": "u1"}[datatype])
    data = raw.tobytes()
    document = {
        "inputs": [
            {
                "name": "inputs",
                "shape": list(raw.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(data) if size is None else size},
            }
        ]
    }
    return document, data


# (request document, binary part, the start of the error message)
BAD_TENSORS: list[tuple[Any, bytes, str]] = [
    (
        {"inputs": [tensor([0, 2, 0, 1, 1, 0, 1, 1])]},
        b"",
        "inputs[0].data[1]: must be 0 or 1, got 2",
    ),
    (
        {"inputs": [tensor([[0, 1], [1, 1], [0, 0], [2, 0]])]},
        b"",
        "inputs[0].data[3][0]: must be 0 or 1",
    ),
    (
        {"inputs": [tensor([0.5, 0, 0, 1, 1, 0, 1, 1])]},
        b"",
        "inputs[0].data[0]: must be 0 or 1, got 0.5",
    ),
    (
        {"inputs": [tensor([0, 1], shape=[1, 3])]},
        b"",
        "inputs[0].shape: must be [n, 2], got [1, 3]",
    ),
    ({"inputs": [tensor([0, 1], shape=[2])]}, b"", "inputs[0].shape: must be [n, 2]"),
    ({"inputs": [tensor([0, 1], shape=[2, 2])]}, b"", "inputs[0].data: holds 2 values"),
    ({"inputs": [tensor([], shape=[0, 2])]}, b"", "inputs[0].shape: must hold at least one pair"),
    (
        {"inputs": [tensor([0, 1], shape=[1, 2], datatype="FP16")]},
        b"",
        "inputs[0].datatype: must be",
    ),
    ({"inputs": [tensor(["0", "1"], shape=[1, 2], datatype="BYTES")]}, b"", "inputs[0].datatype"),
    (
        {"inputs": [tensor([0, 1.0], shape=[1, 2], datatype="INT64")]},
        b"",
        "inputs[0].data[1]: must be an INT64",
    ),
    (
        {"inputs": [tensor([0, 1], shape=[1, 2], datatype="BOOL")]},
        b"",
        "inputs[0].data[0]: must be true or false",
    ),
    (
        {"inputs": [tensor([0, True], shape=[1, 2])]},
        b"",
        "inputs[0].data[1]: must be the number 0 or 1, got boolean",
    ),
    (
        {"inputs": [tensor([0, None], shape=[1, 2])]},
        b"",
        "inputs[0].data[1]: must be the number 0 or 1, got null",
    ),
    (
        {"inputs": [tensor([0, 2**40], shape=[1, 2], datatype="INT32")]},
        b"",
        "inputs[0].data[1]: must be an INT32",
    ),
    (
        {"inputs": [{**tensor([0, 1], shape=[1, 2]), "name": "x"}]},
        b"",
        "inputs[0].name: unexpected input 'x'",
    ),
    ({"inputs": []}, b"", "inputs: must hold exactly one tensor"),
    ({"inputs": [tensor([0, 1], shape=[1, 2])] * 2}, b"", "inputs: must hold exactly one tensor"),
    (
        {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32"}]},
        b"",
        "inputs[0]: has neither",
    ),
    (
        {"inputs": [tensor([0, 1], shape=[1, 2])], "outputs": [{"name": "nope"}]},
        b"",
        "outputs[0].name: unknown output",
    ),
    (
        {"inputs": [tensor([0, 1], shape=[1, 2])], "outputs": [{"name": "logits"}] * 2},
        b"",
        "outputs[1].name",
    ),
    ({"inputs": [tensor([0, 1], shape=[1, 2])], "id": 7}, b"", "id: must be a string"),
    ({"inputs": [tensor([0, 1], shape=[1, 2])], "model": "xor"}, b"", "model: unknown field"),
    (*_binary("FP32", [[0, float("nan")]]), "inputs[0] binary data[1]: must be 0 or 1, got nan"),
    (*_binary("FP32", [[0, 2]]), "inputs[0] binary data[1]: must be 0 or 1, got 2.0"),
    (*_binary("INT64", [[0, 1], [1, 7]]), "inputs[0] binary data[3]: must be 0 or 1, got 7"),
    (*_binary("BOOL", [[0, 2]]), "inputs[0] binary data[1]: must be 0 or 1, got 2"),
    (*_binary("FP32", [[0, 1]], size=4), "inputs[0].parameters.binary_data_size: is 4, but"),
    (
        _binary("FP32", [[0, 1]])[0],
        b"\x00" * 4,
        "inputs[0].parameters.binary_data_size: is 8, but only",
    ),
    (_binary("FP32", [[0, 1]])[0], b"\x00" * 12, "body: 4 bytes of binary data are not claimed"),
]


@pytest.mark.parametrize(("document", "binary", "message"), BAD_TENSORS, ids=lambda v: str(v)[:50])
def test_bad_tensor_is_400_in_the_protocols_shape(
    served_client: TestClient, document: Any, binary: bytes, message: str
) -> None:
    response = infer(served_client, document, binary)
    assert assert_protocol_error(response, 400).startswith(message)


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (b'{"inputs": []}', "100", "Inference-Header-Content-Length: is 100, beyond the body"),
        (b'{"inputs": []}', "abc", "Inference-Header-Content-Length: must be a byte count"),
        (b'{"inputs": []}', "0", "Inference-Header-Content-Length: must be at least 1"),
        (b'{"inputs": []}xx', "5", "request body is not valid JSON"),
        (b'{"inputs": [NaN]}', "", "request body is not valid JSON: NaN"),
        (b"\xff", "", "request body is not valid UTF-8"),
        (b"[]", "", "body: must be a JSON object"),
    ],
)
def test_malformed_body_is_400(
    served_client: TestClient, body: bytes, header: str, message: str
) -> None:
    headers = {HEADER: header} if header else {}
    response = served_client.post("/v2/models/xor/infer", content=body, headers=headers)
    assert assert_protocol_error(response, 400).startswith(message)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/other", 404),
        ("GET", "/v2/models/other/ready", 404),
        ("GET", "/v2/models/xor/versions/1", 404),
        ("POST", "/v2/models/other/infer", 404),
        ("POST", "/v2/models/xor/versions/1/infer", 404),
        ("POST", "/v2/models/xor/versions/x/infer", 404),
        ("GET", "/v2/models/xor/infer", 405),
        ("GET", "/v2/repository/index", 404),
    ],
)
def test_unknown_model_version_or_path(
    served_client: TestClient, method: str, path: str, status: int
) -> None:
    body = json.dumps({"inputs": [tensor([0, 1], shape=[1, 2])]}).encode()
    assert_protocol_error(served_client.request(method, path, content=body), status)


def test_unloaded_version_is_not_ready(served_client: TestClient) -> None:
    response = served_client.get("/v2/models/xor/versions/1/ready")
    assert response.status_code == 400 and response.content == b""


def test_no_model(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 400
    assert client.get("/v2/models/xor/ready").status_code == 400
    body = json.dumps({"inputs": [tensor([0, 1], shape=[1, 2])]}).encode()
    response = client.post("/v2/models/xor/infer", content=body)
    assert "no version" in assert_protocol_error(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    assert_protocol_error(client.get("/v2/models/xor"), 503)


def test_body_limit_is_413_in_the_protocols_shape(trained_model_dir: Path) -> None:
    with serving_client(trained_model_dir, max_body_bytes=100) as client:
        assert_protocol_error(client.post("/v2/models/xor/infer", content=b"x" * 101), 413)


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
def test_the_one_pair_answer_is_the_full_parse_answer(
    served_client: TestClient, datatype: str
) -> None:
    """The common one-pair body read without the full parse (answered from the cached row's
    kept answer after the first time), the same document with a key escaped (full parse), and
    with its fields in another order: the same bytes."""
    tensor = f'"name": "inputs", "shape": [1, 2], "datatype": "{datatype}", "data": [1, 0]'
    bodies = [
        f'{{"inputs": [{{{tensor}}}]}}',
        f'{{"\\u0069nputs": [{{{tensor}}}]}}',
        f'{{"inputs": [{{"data": [1, 0], "datatype": "{datatype}", "shape": [1, 2], '
        '"name": "inputs"}]}',
    ]
    answers = [
        served_client.post("/v2/models/xor/infer", content=body.encode()) for body in bodies * 2
    ]
    assert {response.status_code for response in answers} == {200}
    assert len({response.content for response in answers}) == 1
    outputs = {output["name"]: output for output in answers[0].json()["outputs"]}
    assert outputs["class_ids"]["data"] == [1]
