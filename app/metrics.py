"""Prometheus metrics in a per-app registry (several apps can live in one process).

The served model's gauges (version, evaluation) are collected at scrape time from the model
store, so they always describe the version that is served, also right after a swap.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import accumulate
from typing import TYPE_CHECKING, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from app.errors import HeadersTooLarge, MalformedRequest, RequestTimeout

if TYPE_CHECKING:
    from app.lifecycle.loading import LoadedModel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# What the HTTP layer refuses before any route (app.server.uvicorn_hooks), by error code.
HTTP_REFUSAL_CODES = (MalformedRequest.code, RequestTimeout.code, HeadersTooLarge.code)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_CALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
INSTANCE_BUCKETS = (1, 2, 4, 8, 16, 64, 256, 1024, 4096, 10_000)
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


# How prometheus_client writes a bucket's bound (untyped in the library).
_le = cast(Callable[[float], str], floatToGoString)


class _Tally:
    """A histogram's buckets and sum, in plain Python (see :class:`_RequestPathCollector`)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative), +Inf last
        self.total = 0.0

    def observe(self, value: float) -> None:
        # Bucket i holds value <= bounds[i], as Prometheus's "le".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = list(accumulate(self.counts))
        labels = [_le(bound) for bound in self.bounds] + ["+Inf"]
        return list(zip(labels, map(float, cumulative), strict=True))


class _RequestPathCollector(Collector):
    """The metrics every prediction request updates, counted in plain Python under one lock
    and turned into metric families when scraped: a prometheus_client ``Counter.inc`` or
    ``Histogram.observe`` is several Python calls and a lock each, and a request made seven of
    them (a quarter of its cost in the app, bench/NOTES.md). Same names, labels and buckets as
    the library's types would export, without their ``_created`` series."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Tally] = {}
        self.classes: dict[int, int] = {0: 0, 1: 0}  # both exported from the start
        self.instances = _Tally(INSTANCE_BUCKETS)
        self.cache_hits = 0
        self.cache_misses = 0

    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            tally = self.latency.get(route)
            if tally is None:
                tally = self.latency[route] = _Tally(LATENCY_BUCKETS)
            tally.observe(seconds)

    def predicted(self, class_counts: Mapping[int, int], instances: int, hits: int = 0) -> None:
        with self.lock:
            for class_id, count in class_counts.items():
                if count:
                    self.classes[class_id] = self.classes.get(class_id, 0) + count
            self.instances.observe(instances)
            self.cache_hits += hits

    def cache_used(self, hits: int, misses: int) -> None:
        with self.lock:
            self.cache_hits += hits
            self.cache_misses += misses

    def collect(self) -> Iterator[Metric]:
        with self.lock:  # one consistent moment
            requests = sorted(self.requests.items())
            latency = sorted(
                (route, tally.buckets(), tally.total) for route, tally in self.latency.items()
            )
            classes = sorted(self.classes.items())
            instances = (self.instances.buckets(), self.instances.total)
            hits, misses = self.cache_hits, self.cache_misses
        family = CounterMetricFamily(
            "xor_http_requests",
            "HTTP requests, by route template, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in requests:
            family.add_metric([route, method, str(status)], float(count))
        yield family
        histogram = HistogramMetricFamily(
            "xor_http_request_duration_seconds",
            "HTTP request latency, by route template",
            labels=["route"],
        )
        for route, buckets, total in latency:
            histogram.add_metric([route], buckets, total)
        yield histogram
        family = CounterMetricFamily(
            "xor_predictions", "Predicted pairs, by predicted class", labels=["class_id"]
        )
        for class_id, count in classes:
            family.add_metric([str(class_id)], float(count))
        yield family
        histogram = HistogramMetricFamily(
            "xor_prediction_instances", "Pairs per prediction request"
        )
        histogram.add_metric([], *instances)
        yield histogram
        yield CounterMetricFamily(
            "xor_response_cache_hits",
            "Rows answered from the response cache (XOR_RESPONSE_CACHE_ROWS), no model call",
            value=float(hits),
        )
        yield CounterMetricFamily(
            "xor_response_cache_misses",
            "Rows the response cache did not know: they waited for the model",
            value=float(misses),
        )


class Metrics:
    """All of the service's metrics; also the model store's load observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_path = _RequestPathCollector()
        self.registry.register(self._request_path)
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
        self.poll_last_success = Gauge(
            "xor_model_poll_last_success_timestamp_seconds",
            "When the model store last completed a scan of the model dir (0: none yet); "
            "a poller stuck on a load or a read stops moving it",
            registry=self.registry,
        )
        self.http_overloaded = Counter(
            "xor_http_requests_overloaded",
            "Prediction requests answered 503 overloaded at once (XOR_MAX_IN_FLIGHT were in "
            "flight), by route template",
            ["route"],
            registry=self.registry,
        )
        self.http_refused = Counter(
            "xor_http_refused",
            "Requests refused by the HTTP layer before any route saw them, by error code: "
            "malformed_request (not HTTP), request_timeout (headers not in time), "
            "headers_too_large; the connection is closed",
            ["code"],
            registry=self.registry,
        )
        for code in HTTP_REFUSAL_CODES:
            self.http_refused.labels(code)  # at 0 from the start: rate() needs the series
        self.batch_rows = Histogram(
            "xor_batch_rows",
            "Pairs per model call (micro-batching gathers concurrent requests)",
            buckets=INSTANCE_BUCKETS,
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
            buckets=LATENCY_BUCKETS,
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
        for outcome in ("success", "failure"):
            self.model_loads.labels(outcome)

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

    def refused(self, code: str) -> None:
        """A request refused by the HTTP layer (``app.server.uvicorn_hooks``)."""
        self.http_refused.labels(code).inc()

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
        # Bounded: routes are templates, methods the few httptools parses, statuses the
        # service's own.
        self._request_path.request_finished(route, method, status, seconds)

    def predicted(self, class_counts: Mapping[int, int], instances: int) -> None:
        self._request_path.predicted(class_counts, instances)

    def answered_from_cache(self, class_id: int) -> None:
        """A one-row request answered from the response cache: one hit, one prediction."""
        self._request_path.predicted({class_id: 1}, 1, hits=1)

    def response_cache_used(self, *, hits: int, misses: int) -> None:
        self._request_path.cache_used(hits, misses)

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
