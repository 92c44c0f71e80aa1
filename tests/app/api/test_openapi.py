"""/openapi.json and /docs describe every endpoint and the real error responses."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

ROUTES = {
    ("/predict", "post"),
    ("/health", "get"),
    ("/health/ready", "get"),
    ("/health/live", "get"),
    ("/metrics", "get"),
    ("/model", "get"),
    ("/v1/models/{model_name}", "get"),
    ("/v1/models/{model_name}/versions/{version}", "get"),
    ("/v1/models/{model_name}/metadata", "get"),
    ("/v1/models/{model_name}/versions/{version}/metadata", "get"),
    ("/v1/models/{model_name}:predict", "post"),
    ("/v1/models/{model_name}/versions/{version}:predict", "post"),
    ("/v1/models/{model_name}/labels/{label}", "get"),
    ("/v1/models/{model_name}/labels/{label}/metadata", "get"),
    ("/v1/models/{model_name}/labels/{label}:predict", "post"),
    ("/v2", "get"),
    ("/v2/health/live", "get"),
    ("/v2/health/ready", "get"),
    ("/v2/models/{model_name}", "get"),
    ("/v2/models/{model_name}/versions/{model_version}", "get"),
    ("/v2/models/{model_name}/ready", "get"),
    ("/v2/models/{model_name}/versions/{model_version}/ready", "get"),
    ("/v2/models/{model_name}/infer", "post"),
    ("/v2/models/{model_name}/versions/{model_version}/infer", "post"),
}


def schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_every_route_is_documented(served_client: TestClient) -> None:
    paths = schema(served_client)["paths"]
    assert {(path, method) for path, item in paths.items() for method in item} == ROUTES
    for path, method in ROUTES:
        operation = paths[path][method]
        assert operation.get("summary") and operation.get("description"), path
    assert served_client.get("/docs").status_code == 200


def test_predict_documents_its_body_and_error_responses(served_client: TestClient) -> None:
    document = schema(served_client)
    operation = document["paths"]["/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert {"one pair", "batch"} <= set(body["examples"])
    assert len(body["schema"]["oneOf"]) == 2
    responses = operation["responses"]
    for status in ("400", "413", "415", "422", "503"):
        ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorResponse"
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PredictResponse"
    )
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_readiness_documents_both_bodies(served_client: TestClient) -> None:
    responses = schema(served_client)["paths"]["/health/ready"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/HealthOk")
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/HealthUnavailable"
    )


def test_protocol_routes_document_their_bodies_and_error_shape(served_client: TestClient) -> None:
    document = schema(served_client)
    predict = document["paths"]["/v1/models/{model_name}:predict"]["post"]
    examples = predict["requestBody"]["content"]["application/json"]["examples"]
    assert {"row", "named row", "columnar"} <= set(examples)
    infer = document["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert "Inference-Header-Content-Length" in {p["name"] for p in infer["parameters"]}
    assert "application/octet-stream" in infer["responses"]["200"]["content"]
    for operation in (predict, infer):
        for status in ("400", "404", "413", "503"):
            ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ProtocolErrorResponse"
    error = document["components"]["schemas"]["ProtocolErrorResponse"]
    assert error["properties"]["error"]["type"] == "string"


def test_the_503s_of_the_prediction_routes_document_both_causes(
    served_client: TestClient,
) -> None:
    paths = served_client.get("/openapi.json").json()["paths"]
    for path in (
        "/predict",
        "/v1/models/{model_name}:predict",
        "/v2/models/{model_name}/infer",
    ):
        description = paths[path]["post"]["responses"]["503"]["description"]
        assert "XOR_MAX_IN_FLIGHT" in description, path
        assert "no model is loaded" in description.lower(), path
    assert "overloaded" in paths["/predict"]["post"]["responses"]["503"]["description"]
