"""tests/monitoring/promql.py: metric names out of PromQL, and out of an exposition."""

from __future__ import annotations

import pytest

from tests.monitoring.promql import exposed_series, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('xor_model_ready{job="xor-api"} == 0', {"xor_model_ready"}),
        (
            'histogram_quantile(0.99, sum by (job, le) (rate(d_bucket{route="/predict"}[5m])))'
            " > 0.1 and on (job) sum by (job) (increase(d_count[5m])) >= 20",
            {"d_bucket", "d_count"},
        ),
        ("sum(rate(a_total[1m])) by (instance) / ignoring(reason) group_left b", {"a_total", "b"}),
        ("max without (instance) (v) - min(v) offset 5m > 1e-3", {"v"}),
        ("time() - ts and on (job, instance) other", {"ts", "other"}),
        ('absent(r{job="x"} == 1)', {"r"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("count(x) by (le) or vector(0)", {"x"}),
        ("rate(c[$__rate_interval]) * on (a) group_right (b) d", {"c", "d"}),
        ('e{name="sum(by) rate"}  # rate(fake[1m])', {"e"}),
        ("quantile_over_time(0.5, q[10m:1m]) > bool 0x1F", {"q"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_an_unknown_function_is_not_taken_for_a_metric() -> None:
    with pytest.raises(ValueError, match=r"unknown function histogram_quantil\(\)"):
        metric_names("histogram_quantil(0.9, x_bucket)")


def test_exposed_series_include_families_without_samples() -> None:
    exposition = (
        "# HELP errors_total Errors\n"
        "# TYPE errors_total counter\n"
        "# HELP requests_total Requests\n"
        "# TYPE requests_total counter\n"
        'requests_total{route="/"} 1.0\n'
        "# HELP latency_seconds Latency\n"
        "# TYPE latency_seconds histogram\n"
        "# HELP ready Ready\n"
        "# TYPE ready gauge\n"
        "ready 1.0\n"
    )
    assert exposed_series(exposition) == {
        "errors_total",
        "errors_created",
        "requests_total",
        "requests_created",
        "latency_seconds_bucket",
        "latency_seconds_sum",
        "latency_seconds_count",
        "latency_seconds_created",
        "ready",
    }
