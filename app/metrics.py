"""Prometheus metrics in a per-app registry (several apps can live in one process).

The served model's gauges (version, evaluation) are collected at scrape time from the model
store, so they always describe the version that is served, also right after a swap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from app.lifecycle.loading import LoadedModel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_CALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_INSTANCE_BUCKETS = (1, 2, 4, 8, 16, 64, 256, 1024, 4096, 10_000)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _FileProblemsCollector(Collector):
    def __init__(self, problems: Callable[[], Mapping[int, str]]) -> None:
        self._problems = problems

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "xor_model_files_problem",
            "1 for a loaded version whose files vanished or changed on disk since it was "
            "loaded (it keeps serving from memory)",
            labels=["model_version", "problem"],
        )
        for version, problem in sorted(self._problems().items()):
            gauge.add_metric([str(version), problem], 1.0)
        yield gauge


class _LabelsCollector(Collector):
    def __init__(self, labels: Callable[[], tuple[Mapping[str, int], int]]) -> None:
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        versions, canary_percent = self._labels()
        gauge = GaugeMetricFamily(
            "xor_model_label_version",
            "Version serving each label of labels.json (a label whose version cannot be "
            "served stays on the version that served it)",
            labels=["label"],
        )
        for name, version in sorted(versions.items()):
            gauge.add_metric([name], float(version))
        yield gauge
        percent = GaugeMetricFamily(
            "xor_model_canary_percent",
            "Share of requests naming no version that the canary label serves (0 without one)",
        )
        percent.add_metric([], float(canary_percent))
        yield percent


class _InFlightCollector(Collector):
    def __init__(self, in_flight: Callable[[], int]) -> None:
        self._in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "xor_http_requests_in_flight",
            "Prediction requests being served now (capped by XOR_MAX_IN_FLIGHT)",
        )
        gauge.add_metric([], float(self._in_flight()))
        yield gauge


class _ServedModelCollector(Collector):
    def __init__(self, current: Callable[[], LoadedModel | None]) -> None:
        self._current = current

    def collect(self) -> Iterator[Metric]:
        model = self._current()  # once: every gauge describes the same version
        ready = GaugeMetricFamily("xor_model_ready", "1 while a model is loaded and served")
        ready.add_metric([], 1.0 if model is not None else 0.0)
        yield ready
        if model is None:
            return
        version = GaugeMetricFamily("xor_model_version", "Version number of the served model")
        version.add_metric([], float(model.version))
        yield version
        loaded = GaugeMetricFamily(
            "xor_model_loaded_timestamp_seconds", "When the served model was swapped in"
        )
        loaded.add_metric([], model.loaded_at.timestamp())
        yield loaded
        metrics = model.metrics
        accuracy = GaugeMetricFamily(
            "xor_model_evaluation_accuracy", "Test accuracy of the served model (evaluation.json)"
        )
        accuracy.add_metric([], metrics["accuracy"])
        yield accuracy
        evaluation = GaugeMetricFamily(
            "xor_model_evaluation",
            "Every numeric metric in the served model's evaluation.json",
            labels=["metric"],
        )
        for name, value in sorted(metrics.items()):
            evaluation.add_metric([name], value)
        yield evaluation


class Metrics:
    """All of the service's metrics; also the model store's load observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_loads = Counter(
            "xor_model_loads",
            "Model version load attempts, by outcome (success, failure)",
            ["outcome"],
            registry=self.registry,
        )
        self.model_load_duration = Histogram(
            "xor_model_load_duration_seconds",
            "Time to load, check and warm up a version",
            buckets=_LOAD_BUCKETS,
            registry=self.registry,
        )
        self.response_cache_hits = Counter(
            "xor_response_cache_hits",
            "Rows answered from the response cache (XOR_RESPONSE_CACHE_ROWS), no model call",
            registry=self.registry,
        )
        self.response_cache_misses = Counter(
            "xor_response_cache_misses",
            "Rows the response cache did not know: they waited for the model",
            registry=self.registry,
        )
        self.poll_last_success = Gauge(
            "xor_model_poll_last_success_timestamp_seconds",
            "When the model store last completed a scan of the model dir (0: none yet); "
            "a poller stuck on a load or a read stops moving it",
            registry=self.registry,
        )
        self.http_requests = Counter(
            "xor_http_requests",
            "HTTP requests, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_overloaded = Counter(
            "xor_http_requests_overloaded",
            "Prediction requests answered 503 overloaded at once (XOR_MAX_IN_FLIGHT were in "
            "flight), by route template",
            ["route"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "xor_http_request_duration_seconds",
            "HTTP request latency, by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "xor_predictions",
            "Predicted pairs, by predicted class",
            ["class_id"],
            registry=self.registry,
        )
        self.instances_per_request = Histogram(
            "xor_prediction_instances",
            "Pairs per prediction request",
            buckets=_INSTANCE_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "xor_batch_rows",
            "Pairs per model call (micro-batching gathers concurrent requests)",
            buckets=_INSTANCE_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "xor_batch_requests",
            "Requests per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.batch_queue_wait = Histogram(
            "xor_batch_queue_wait_seconds",
            "Time a request waited for its model call to start",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_call_duration = Histogram(
            "xor_model_call_duration_seconds",
            "Time of one model (signature) call, one batch, as the event loop waits for it",
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self.label_problems = Counter(
            "xor_model_label_problems",
            "Labels that could not move to the version labels.json names, by label and reason "
            "(version_missing, version_failed); counted once per label and version",
            ["label", "reason"],
            registry=self.registry,
        )
        self.labels_file_problems = Counter(
            "xor_model_labels_file_problems",
            "Times labels.json became unreadable or invalid (the last good labels kept applying)",
            registry=self.registry,
        )
        self.sync_errors = Counter(
            "xor_model_sync_errors",
            "Failed syncs from XOR_MODEL_SOURCE, by reason (checksum_mismatch, missing_files, "
            "unreachable, access_denied, bucket_missing, invalid_document, cache_io); each "
            "retry with backoff counts again",
            ["reason"],
            registry=self.registry,
        )
        self.sync_duration = Histogram(
            "xor_model_sync_duration_seconds",
            "Time of one sync from XOR_MODEL_SOURCE (an idle one is two conditional GETs)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.sync_bytes = Counter(
            "xor_model_sync_bytes",
            "Bytes of version files downloaded from XOR_MODEL_SOURCE (checked against their "
            "manifests)",
            registry=self.registry,
        )
        self.sync_requests = Counter(
            "xor_model_sync_requests",
            "Requests the sync made to XOR_MODEL_SOURCE, by kind (labels, index: one "
            "conditional GET each per poll; list: one full listing; download: one version "
            "download attempted, i.e. its manifest, a listing of its prefix and each file)",
            ["kind"],
            registry=self.registry,
        )
        self.sync_last_success = Gauge(
            "xor_model_sync_last_success_timestamp_seconds",
            "When the last sync from XOR_MODEL_SOURCE completed without an error (0: none yet)",
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        for outcome in ("success", "failure"):
            self.model_loads.labels(outcome)
        # Both classes exported from the start, their children kept for the request path.
        self._class_children = {c: self.predictions.labels(str(c)) for c in (0, 1)}

    def watch(self, current: Callable[[], LoadedModel | None]) -> None:
        """Report the served model (``current()`` is called once per scrape)."""
        self.registry.register(_ServedModelCollector(current))

    def watch_files(self, problems: Callable[[], Mapping[int, str]]) -> None:
        """Report loaded versions whose files changed on disk (``problems()`` once per scrape)."""
        self.registry.register(_FileProblemsCollector(problems))

    def watch_labels(self, labels: Callable[[], tuple[Mapping[str, int], int]]) -> None:
        """Report which version serves each label, and the canary's share (``labels()`` once
        per scrape: label -> version, percent)."""
        self.registry.register(_LabelsCollector(labels))

    def label_problem(self, *, label: str, reason: str) -> None:
        self.label_problems.labels(label, reason).inc()

    def labels_file_problem(self) -> None:
        self.labels_file_problems.inc()

    def watch_in_flight(self, in_flight: Callable[[], int]) -> None:
        """Report the prediction requests in flight (``in_flight()`` once per scrape: nothing
        is counted on the request path)."""
        self.registry.register(_InFlightCollector(in_flight))

    def overloaded(self, route: str) -> None:
        self.http_overloaded.labels(route).inc()

    def load_finished(self, *, success: bool, seconds: float) -> None:
        self.model_loads.labels("success" if success else "failure").inc()
        self.model_load_duration.observe(seconds)

    def scan_finished(self, *, timestamp: float) -> None:
        self.poll_last_success.set(timestamp)

    def watch_sync(self, reasons: Iterable[str]) -> None:
        """Export each of the sync's error ``reasons`` at 0 from the start."""
        for reason in reasons:
            self.sync_errors.labels(reason)

    def sync_finished(self, *, success: bool, seconds: float, timestamp: float) -> None:
        self.sync_duration.observe(seconds)
        if success:
            self.sync_last_success.set(timestamp)

    def sync_error(self, *, reason: str) -> None:
        self.sync_errors.labels(reason).inc()

    def sync_downloaded(self, *, size: int) -> None:
        self.sync_bytes.inc(size)

    def sync_requests_made(self, *, kind: str, count: int) -> None:
        self.sync_requests.labels(kind).inc(count)

    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        # The labelled children, looked up once per (route, method, status): ``labels()`` takes
        # a lock and builds a key each time. Bounded: routes are templates, methods the few
        # httptools parses, statuses the service's own.
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(route, method, str(status)),
                self.http_latency.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def predicted(self, class_counts: dict[int, int], instances: int) -> None:
        for class_id, count in class_counts.items():
            if not count:
                continue
            child = self._class_children.get(class_id)
            if child is None:
                child = self.predictions.labels(str(class_id))
            child.inc(count)
        self.instances_per_request.observe(instances)

    def response_cache_used(self, *, hits: int, misses: int) -> None:
        if hits:
            self.response_cache_hits.inc(hits)
        if misses:
            self.response_cache_misses.inc(misses)

    def model_call_finished(self, seconds: float) -> None:
        self.model_call_duration.observe(seconds)

    def batch_finished(
        self, *, rows: int, requests: int, queue_waits: list[float], seconds: float
    ) -> None:
        self.model_call_finished(seconds)
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        for wait in queue_waits:
            self.batch_queue_wait.observe(wait)

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)
