"""Real clients against a real ``python -m app`` process: tritonclient (/v2), TF Serving's
documented REST requests (/v1), and version pinning across hot reloads.

One module-scoped server (default body limit, so batches of 1000 fit in JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton  # type: ignore[import-untyped]
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from tests.support.server import Server, running_server
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for

FIRST_VERSION = 2000
OUTPUTS = ["logits", "logistic", "probabilities", "class_ids", "classes"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_version: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("protocols")
    with running_server(tmp, trained_version, FIRST_VERSION) as server:
        yield server


@pytest.fixture(scope="module")
def triton_client(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def pairs(rows: int) -> np.ndarray:
    index = np.arange(rows)
    return np.stack([(index >> 1) & 1, index & 1], axis=1)


def test_triton_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("xor")
    assert triton_client.is_model_ready("xor", str(FIRST_VERSION))
    assert not triton_client.is_model_ready("xor", "1")
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    metadata = triton_client.get_model_metadata("xor")
    assert metadata["name"] == "xor"
    assert str(FIRST_VERSION) in metadata["versions"]
    assert metadata["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": [-1, 2]}]
    assert [o["name"] for o in metadata["outputs"]] == OUTPUTS
    with pytest.raises(InferenceServerException) as raised:
        triton_client.get_model_metadata("other")
    assert raised.value.status() == "404"


@pytest.mark.parametrize("rows", [1, 1000])
@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize(
    "binary_out", [True, False, None], ids=["binary-out", "json-out", "default"]
)
@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        ("FP32", np.float32),
        ("FP64", np.float64),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("BOOL", np.bool_),
    ],
)
def test_triton_infer(
    triton_client: triton.InferenceServerClient,
    rows: int,
    binary_in: bool,
    binary_out: bool | None,
    datatype: str,
    dtype: type,
) -> None:
    features: np.ndarray = pairs(rows).astype(dtype)
    infer_input = triton.InferInput("inputs", list(features.shape), datatype)
    infer_input.set_data_from_numpy(features, binary_data=binary_in)
    outputs = (
        None
        if binary_out is None
        else [triton.InferRequestedOutput(name, binary_data=binary_out) for name in OUTPUTS]
    )
    result = triton_client.infer("xor", [infer_input], outputs=outputs, request_id="r1")
    response = result.get_response()
    assert response["model_name"] == "xor" and response["id"] == "r1"
    expected = (features[:, 0].astype(int) ^ features[:, 1].astype(int)).reshape(rows, 1)
    class_ids = result.as_numpy("class_ids")
    assert class_ids.dtype == np.int64 and class_ids.shape == (rows, 1)
    assert np.array_equal(class_ids, expected)
    classes = result.as_numpy("classes")
    assert classes.shape == (rows, 1)
    assert [c.decode() if isinstance(c, bytes) else c for c in classes.reshape(-1)] == [
        str(c) for c in expected.reshape(-1)
    ]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (rows, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert result.as_numpy("logits").shape == result.as_numpy("logistic").shape == (rows, 1)


def test_triton_bad_value_is_a_400(triton_client: triton.InferenceServerClient) -> None:
    for binary in (True, False):
        infer_input = triton.InferInput("inputs", [1, 2], "FP32")
        infer_input.set_data_from_numpy(np.array([[0, 2]], dtype=np.float32), binary_data=binary)
        with pytest.raises(InferenceServerException) as raised:
            triton_client.infer("xor", [infer_input])
        assert raised.value.status() == "400"
        assert "must be 0 or 1, got 2" in raised.value.message()


# The request examples of TF Serving's api_rest.md, adapted to this model's input.
TF_SERVING_EXAMPLES = [
    ({"instances": [[1.0, 0.0], [0.0, 0.0]]}, "predictions"),
    (
        {
            "signature_name": "serving_default",
            "instances": [{"inputs": [1.0, 0.0]}, {"inputs": [0.0, 0.0]}],
        },
        "predictions",
    ),
    ({"inputs": {"inputs": [[1.0, 0.0], [0.0, 0.0]]}}, "outputs"),
    ({"inputs": [[1.0, 0.0], [0.0, 0.0]]}, "outputs"),
]


@pytest.mark.parametrize(("body", "key"), TF_SERVING_EXAMPLES)
def test_tf_serving_documented_requests(server: Server, body: dict[str, object], key: str) -> None:
    # As curl -d sends it: no JSON Content-Type.
    response = httpx.post(
        f"{server.url}/v1/models/xor:predict",
        content=json.dumps(body),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == [key]
    if key == "predictions":
        assert [p["class_ids"] for p in answer[key]] == [[1], [0]]
        assert [p["classes"] for p in answer[key]] == [["1"], ["0"]]
        assert all(len(p["probabilities"]) == 2 for p in answer[key])
    else:
        assert answer[key]["class_ids"] == [[1], [0]]
        assert [len(row) for row in answer[key]["probabilities"]] == [2, 2]


def test_metrics_label_protocol_routes_by_template(server: Server) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    assert 'route="/v1/models/{model_name}:predict"' in text
    assert 'route="/v2/models/{model_name}/infer"' in text
    assert 'route="/v1/models/xor:predict"' not in text


def test_pinned_version_survives_one_reload(
    server: Server, trained_version: Path, triton_client: triton.InferenceServerClient
) -> None:
    """Last in the module: it publishes new versions into the shared server's model dir."""
    pinned = f"{server.url}/v1/models/xor/versions/{FIRST_VERSION}:predict"
    body = {"instances": [[0, 1]]}
    assert httpx.post(pinned, json=body).status_code == 200

    publish_copy(trained_version, server.model_dir, FIRST_VERSION + 1)
    wait_for(lambda: httpx.get(f"{server.url}/health").json()["model_version"] == FIRST_VERSION + 1)
    listed = httpx.get(f"{server.url}/v1/models/xor").json()["model_version_status"]
    assert [s["version"] for s in listed] == [str(FIRST_VERSION + 1), str(FIRST_VERSION)]
    assert {s["state"] for s in listed} == {"AVAILABLE"}
    response = httpx.post(pinned, json=body)
    assert response.status_code == 200
    assert response.json()["predictions"][0]["class_ids"] == [1]
    infer_input = triton.InferInput("inputs", [1, 2], "FP32")
    infer_input.set_data_from_numpy(np.array([[1, 1]], dtype=np.float32))
    result = triton_client.infer("xor", [infer_input], model_version=str(FIRST_VERSION))
    assert result.get_response()["model_version"] == str(FIRST_VERSION)
    assert result.as_numpy("class_ids").tolist() == [[0]]
    unpinned = triton_client.infer("xor", [infer_input])
    assert unpinned.get_response()["model_version"] == str(FIRST_VERSION + 1)

    publish_copy(trained_version, server.model_dir, FIRST_VERSION + 2)
    wait_for(lambda: httpx.post(pinned, json=body).status_code == 404)
    assert set(httpx.post(pinned, json=body).json()) == {"error"}
    listed = httpx.get(f"{server.url}/v1/models/xor").json()["model_version_status"]
    assert [s["version"] for s in listed] == [str(FIRST_VERSION + 2), str(FIRST_VERSION + 1)]
    assert not triton_client.is_model_ready("xor", str(FIRST_VERSION))
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer("xor", [infer_input], model_version=str(FIRST_VERSION))
    assert raised.value.status() == "404"
    unloaded = [e for e in server.log_lines() if e.get("event") == "model_unloaded"]
    assert [e["model_version"] for e in unloaded] == [FIRST_VERSION]
