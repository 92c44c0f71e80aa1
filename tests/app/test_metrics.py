"""/metrics: Prometheus text with the served version's evaluation, and its JSON variant."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import INSTANCE_BUCKETS, LATENCY_BUCKETS, Metrics
from tests.support.versions import publish_copy
from tests.support.waiting import wait_for


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(client: TestClient, name: str, **labels: str) -> float | None:
    return samples(client).get((name, tuple(sorted(labels.items()))))


def test_served_model_and_its_evaluation(
    served_client: TestClient, trained_version: Path, trained_version_number: int
) -> None:
    evaluation = json.loads((trained_version / "assets.extra" / "evaluation.json").read_text())
    found = samples(served_client)
    assert found[("xor_model_version", ())] == trained_version_number
    assert found[("xor_model_ready", ())] == 1
    assert found[("xor_model_evaluation_accuracy", ())] == evaluation["metrics"]["accuracy"]
    for name, metric in evaluation["metrics"].items():
        assert found[("xor_model_evaluation", (("metric", name),))] == pytest.approx(metric)
    assert found[("xor_model_loads_total", (("outcome", "success"),))] == 1
    assert found[("xor_model_loads_total", (("outcome", "failure"),))] == 0
    assert found[("xor_model_load_duration_seconds_count", ())] == 1


def test_requests_and_predictions_are_counted(served_client: TestClient) -> None:
    before = samples(served_client)
    served_client.post("/predict", json={"instances": [[0, 1], [1, 0], [1, 1]]})
    served_client.post("/predict", json={"inputs": [2, 0]})
    served_client.get("/no/such/path")
    after = samples(served_client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = {"route": "/predict", "method": "POST"}
    assert delta("xor_http_requests_total", **route, status="200") == 1
    assert delta("xor_http_requests_total", **route, status="422") == 1
    assert delta("xor_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta("xor_http_request_duration_seconds_count", route="/predict") == 2
    assert delta("xor_predictions_total", class_id="1") == 2
    assert delta("xor_predictions_total", class_id="0") == 1
    assert delta("xor_prediction_instances_count") == 1
    assert delta("xor_prediction_instances_sum") == 3


def test_json_variant(
    served_client: TestClient, trained_version: Path, trained_version_number: int
) -> None:
    evaluation = json.loads((trained_version / "assets.extra" / "evaluation.json").read_text())
    response = served_client.get("/metrics", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json() == {
        "model_version": trained_version_number,
        "evaluated_at": evaluation["evaluated_at"],
        "evaluation": evaluation["metrics"],
    }
    assert type(response.json()["evaluation"]["global_step"]) is int


def test_without_a_model(client: TestClient) -> None:
    assert value(client, "xor_model_ready") == 0
    assert value(client, "xor_model_version") is None
    response = client.get("/metrics", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"


def served(client: TestClient, trained_version: Path, model_dir: Path, version: int) -> None:
    """Publish a copy of the trained version as ``version`` and wait until it is served."""
    publish_copy(trained_version, model_dir, version)
    wait_for(lambda: value(client, "xor_model_version") == version)


def test_after_a_swap_the_new_versions_numbers(
    client: TestClient, model_dir: Path, trained_version: Path
) -> None:
    served(client, trained_version, model_dir, 100)
    new = publish_copy(trained_version, model_dir, 101)
    evaluation_file = new / "assets.extra" / "evaluation.json"
    evaluation = json.loads(evaluation_file.read_text())
    evaluation["metrics"]["accuracy"] = 0.75
    evaluation["metrics"]["auc"] = 0.5
    evaluation_file.write_text(json.dumps(evaluation))
    wait_for(lambda: value(client, "xor_model_version") == 101)
    assert value(client, "xor_model_evaluation_accuracy") == 0.75
    assert value(client, "xor_model_evaluation", metric="auc") == 0.5
    assert value(client, "xor_model_loads_total", outcome="success") == 2
    body = client.get("/metrics", headers={"Accept": "application/json"}).json()
    assert body["model_version"] == 101
    assert body["evaluation"]["accuracy"] == 0.75


def test_corrupt_version_is_counted_and_the_old_one_keeps_serving(
    client: TestClient, model_dir: Path, trained_version: Path
) -> None:
    served(client, trained_version, model_dir, 200)
    broken = publish_copy(trained_version, model_dir, 201)
    (broken / "saved_model.pb").write_bytes(b"garbage")
    wait_for(lambda: value(client, "xor_model_loads_total", outcome="failure") == 1)
    for _ in range(5):
        response = client.post("/predict", json={"inputs": [0, 1]})
        assert response.status_code == 200
        assert response.json()["model_version"] == 200
    time.sleep(0.5)  # about five more polls: the unchanged broken version is not retried
    assert value(client, "xor_model_loads_total", outcome="failure") == 1
    assert client.get("/health").json()["model_version"] == 200


def test_the_poller_s_last_completed_scan(client: TestClient) -> None:
    """The initial scan sets it before the app serves; every poll (0.1 s here) moves it."""
    first = value(client, "xor_model_poll_last_success_timestamp_seconds")
    assert first is not None and 0 < first <= time.time()
    wait_for(
        lambda: (value(client, "xor_model_poll_last_success_timestamp_seconds") or 0) > first,
        what="a later completed scan",
    )


def test_the_request_path_metrics_export_as_prometheus_client_types_would() -> None:
    """The request path counts in plain Python (app.metrics._RequestPathCollector); its
    families must read exactly as the library's Counter and Histogram would export the same
    updates (names, HELP, labels, "le" bounds, values), values on bucket bounds included."""
    metrics = Metrics()
    registry = CollectorRegistry()
    requests = Counter(
        "xor_http_requests",
        "HTTP requests, by route template, method and status",
        ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "xor_http_request_duration_seconds",
        "HTTP request latency, by route template",
        ["route"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    predictions = Counter(
        "xor_predictions", "Predicted pairs, by predicted class", ["class_id"], registry=registry
    )
    instances = Histogram(
        "xor_prediction_instances",
        "Pairs per prediction request",
        buckets=INSTANCE_BUCKETS,
        registry=registry,
    )
    hits = Counter(
        "xor_response_cache_hits",
        "Rows answered from the response cache (XOR_RESPONSE_CACHE_ROWS), no model call",
        registry=registry,
    )
    misses = Counter(
        "xor_response_cache_misses",
        "Rows the response cache did not know: they waited for the model",
        registry=registry,
    )
    for class_id in ("0", "1"):
        predictions.labels(class_id)
    seconds = [*LATENCY_BUCKETS, 0.0, 0.0001, 0.0007, 3.0, 1e9]
    for i, duration in enumerate(seconds):
        route, status = ("/predict", 200) if i % 3 else ("/v1/models/{model_name}:predict", 404)
        metrics.request_finished(route, "POST", status, duration)
        requests.labels(route, "POST", str(status)).inc()
        latency.labels(route).observe(duration)
    for count in [*INSTANCE_BUCKETS, 3, 10_001, 50_000]:
        metrics.predicted({0: count - count // 2, 1: count // 2}, count)
        predictions.labels("0").inc(count - count // 2)
        if count // 2:
            predictions.labels("1").inc(count // 2)
        instances.observe(count)
    metrics.answered_from_cache(1)
    predictions.labels("1").inc()
    instances.observe(1)
    hits.inc()
    metrics.response_cache_used(hits=7, misses=3)
    hits.inc(7)
    misses.inc(3)

    names = {family.name for family in registry.collect()}

    def exported(text: str) -> list[tuple[str, str, str, list[tuple[str, Any, float]]]]:
        return sorted(
            (
                family.name,
                family.documentation,
                family.type,
                sorted(
                    (sample.name, sorted(sample.labels.items()), sample.value)
                    for sample in family.samples
                    if not sample.name.endswith("_created")
                ),
            )
            for family in text_string_to_metric_families(text)
            if family.name in names
        )

    expected = exported(generate_latest(registry).decode())
    assert len(expected) == 6 and sum(len(family[3]) for family in expected) == 49
    assert exported(metrics.exposition().decode()) == expected


@pytest.mark.parametrize("accept", ["application/json", "text/plain", ""])
def test_both_variants_say_they_vary_by_accept(served_client: TestClient, accept: str) -> None:
    response = served_client.get("/metrics", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.headers["vary"] == "Accept"
    expected = "application/json" if accept == "application/json" else "text/plain"
    assert response.headers["content-type"].startswith(expected)
