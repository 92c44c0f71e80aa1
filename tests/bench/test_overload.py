"""The pure parts of ``python -m bench.overload``: its request bodies, percentiles and report."""

from __future__ import annotations

import collections
import json
import math

import pytest

from bench.overload import Burst, Probe, Run, percentile, predict_body, render


@pytest.mark.parametrize("size", [1_000, 65_537, 1_000_000])
def test_bodies_are_valid_json_of_exactly_the_size_asked(size: int) -> None:
    padded, pairs = predict_body(size, "padded"), predict_body(size, "pairs")
    assert len(padded) == len(pairs) == size
    assert json.loads(padded) == {"instances": [[0, 1]]}
    assert len(json.loads(pairs)["instances"]) > size // 10  # parsed whole to be refused


def test_a_body_too_small_for_its_request_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        predict_body(10, "padded")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7.0], 0.99) == 7
    assert math.isnan(percentile([], 0.5))


def test_the_report_states_the_targets() -> None:
    probes = [Probe("/health/live", 0.1, True), Probe("/health/ready", 2.0, False)]
    burst = Burst(collections.Counter({"200": 64, "503": 536}), 1.5, 700.0, 1.2)
    run = Run("abc123", 600, 1_000_000, "padded", {}, probes, burst, 500.0, 650.0, 590.0, 60, 0)
    report = render(run)
    assert "| /health/ready | 1 | 1 | 2000 | 2000 | 2000 |" in report
    assert "200: 64, 503: 536" in report
    assert "health p99 <= 1000 ms: NOT met" in report
    assert "RSS within 20 % of baseline after 60 s: met" in report  # +18 %
