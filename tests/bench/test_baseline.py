"""The pure parts of ``python -m bench --baseline``: medians, ratios, verdicts, the report and
the check that the baseline server imports the baseline's own code."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench.baseline import (
    BaselineResults,
    Comparison,
    app_origin,
    check_app_origin,
    first_of_round,
    module_inside,
    render,
)
from bench.run import REPO, Load
from bench.run import main as run_main
from tests.bench.fakes import MACHINE


def load(server: str, rps: float, p99: float, errors: int = 0, endpoint: str = "predict") -> Load:
    return Load(server, 32, rps, p99 / 2, p99, errors, endpoint)


def comparison(
    baseline: list[tuple[float, float]], working: list[tuple[float, float]]
) -> Comparison:
    return Comparison(
        "predict",
        [load("baseline", rps, p99) for rps, p99 in baseline],
        [load("working", rps, p99) for rps, p99 in working],
    )


# Five rounds each, (req/s, p99 ms); medians: baseline 1000 req/s, 20 ms; working 1100, 21 ms.
BASELINE = [(900.0, 25.0), (1000.0, 20.0), (1200.0, 19.0), (950.0, 22.0), (1050.0, 18.0)]
WORKING = [(1100.0, 21.0), (1000.0, 30.0), (1300.0, 20.0), (1150.0, 21.0), (1000.0, 19.0)]


def test_medians_and_ratios() -> None:
    c = comparison(BASELINE, WORKING)
    assert c.baseline_median.requests_per_second == 1000
    assert c.working_median.requests_per_second == 1100
    assert c.baseline_median.p99_ms == 20
    assert c.working_median.p99_ms == 21
    assert c.throughput_ratio == pytest.approx(1.1)
    assert c.p99_ratio == pytest.approx(1.05)
    # Each round's working / baseline, in round order.
    assert c.round_ratios == pytest.approx([1100 / 900, 1.0, 1300 / 1200, 1150 / 950, 1000 / 1050])
    assert c.throughput_met and c.p99_met
    assert c.errors == 0


def test_verdicts_at_and_beyond_the_limits() -> None:
    # Equal medians meet the throughput criterion; p99 exactly 10 % up meets the other.
    at_limits = comparison([(1000.0, 20.0)] * 5, [(1000.0, 22.0)] * 5)
    assert at_limits.throughput_met
    assert at_limits.p99_met
    assert "(beats it)" not in at_limits.verdict()
    # One req/s short of the baseline's median and p99 11 % up: both missed.
    beyond = comparison([(1000.0, 20.0)] * 5, [(999.0, 22.2)] * 5)
    assert not beyond.throughput_met
    assert not beyond.p99_met
    assert beyond.verdict() == (
        "req/s 1.00 x the baseline's median: **not met**; p99 +11.0 % (at most +10 %): "
        "**not met**; failed requests: 0"
    )


def test_the_criteria_compare_medians_not_single_rounds() -> None:
    # Working loses two rounds of five badly but its median beats the baseline's.
    c = comparison(
        [(1000.0, 20.0)] * 5,
        [(500.0, 40.0), (1010.0, 20.0), (1020.0, 20.0), (600.0, 40.0), (1030.0, 20.0)],
    )
    assert min(c.round_ratios) == 0.5
    assert c.throughput_met and c.p99_met
    assert c.verdict().startswith("req/s 1.01 x the baseline's median: met (beats it); p99 +0.0 %")


def test_zero_baseline_gives_no_ratio_and_no_pass() -> None:
    c = comparison([(0.0, 0.0)] * 5, [(1000.0, 20.0)] * 5)
    assert math.isnan(c.throughput_ratio)
    assert math.isnan(c.p99_ratio)
    assert not c.p99_met
    assert "req/s n/a the baseline's median" in c.verdict()


def test_errors_are_summed_over_both_servers() -> None:
    c = Comparison(
        "v1",
        [load("baseline", 1000, 20, errors=2, endpoint="v1")] * 5,
        [load("working", 1000, 20, errors=3, endpoint="v1")] * 5,
    )
    assert c.errors == 25


def test_the_first_server_alternates_by_round() -> None:
    assert [first_of_round(n)[0] for n in range(5)] == [
        "baseline",
        "working",
        "baseline",
        "working",
        "baseline",
    ]
    assert all(sorted(first_of_round(n)) == ["baseline", "working"] for n in range(5))


def results(errors: int = 0) -> BaselineResults:
    samples = {
        "predict": {
            "baseline": [load("baseline", rps, p99) for rps, p99 in BASELINE],
            "working": [load("working", rps, p99) for rps, p99 in WORKING],
        },
        "v1": {
            "baseline": [load("baseline", 1000, 20, endpoint="v1")] * 5,
            "working": [load("working", 900, 23, errors, endpoint="v1")] * 5,
        },
    }
    return BaselineResults(
        machine=MACHINE,
        baseline_dir="/tmp/xor-baseline",
        baseline_commit="1c5b09c",
        working_commit="1c5b09c-dirty",
        rounds=5,
        seconds_per_point=3,
        connections=32,
        first=[first_of_round(n)[0] for n in range(5)],
        samples=samples,
        ready_seconds={"baseline": 2.5, "working": 2.25},
    )


def test_report_from_fixed_numbers() -> None:
    text = render(results())
    lines = text.splitlines()
    assert lines[0] == "# Baseline comparison"
    assert "another checkout at `1c5b09c`" in text
    assert "/tmp/xor-baseline" not in text  # no machine path in a committed report
    assert "this working tree at `1c5b09c-dirty`" in text
    assert "at 32 connections" in text
    assert "5 interleaved rounds of 3 s" in text
    # The summary: one row per API, in ENDPOINTS' order.
    assert "| `/predict` | 1000 | 1100 | 1.10 x | 20.00 | 21.00 | 1.05 x | met | met |" in lines
    assert (
        "| `/v1/models/xor:predict` | 1000 | 900 | 0.90 x | 20.00 | 23.00 | 1.15 x "
        "| **not met** | **not met** |"
    ) in lines
    assert text.index("| `/predict` |") < text.index("| `/v1/models/xor:predict` |")
    # The detail of /predict: every round with its own ratio, then the medians.
    assert (
        "| 1 | baseline | 900 | 1100 | 1.22 x | 12.50 | 10.50 | 25.00 | 21.00 | 0.84 x |" in lines
    )
    assert (
        "| 2 | working | 1000 | 1000 | 1.00 x | 10.00 | 15.00 | 20.00 | 30.00 | 1.50 x |" in lines
    )
    assert (
        "| **median** | | 1000 | 1100 | 1.10 x | 10.00 | 10.50 | 20.00 | 21.00 | 1.05 x |"
    ) in lines
    assert "Per-round req/s ratios: 1.22 x, 1.00 x, 1.08 x, 1.21 x, 0.95 x." in lines
    assert (
        "**Verdict**: req/s 1.10 x the baseline's median: met (beats it); p99 +5.0 % "
        "(at most +10 %): met; failed requests: 0."
    ) in lines
    assert (
        "**Verdict**: req/s 0.90 x the baseline's median: **not met**; p99 +15.0 % "
        "(at most +10 %): **not met**; failed requests: 0."
    ) in lines
    assert "**Start to ready** (one start each): baseline 2.50 s, working 2.25 s." in lines
    assert "/v2/" not in text  # not measured, not reported


def test_report_counts_failed_requests() -> None:
    failed = results(errors=1)
    assert failed.errors == 5
    assert "failed requests: 5." in render(failed)


def test_module_inside(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "app").mkdir(parents=True)
    init = checkout / "app" / "__init__.py"
    init.touch()
    assert module_inside(init, checkout)
    assert module_inside(str(init), checkout)
    assert not module_inside(REPO / "app" / "__init__.py", checkout)
    # A sibling whose name merely starts the same is not inside.
    assert not module_inside(tmp_path / "checkout-other" / "app" / "__init__.py", checkout)
    # Symbolic links are resolved on both sides.
    link = tmp_path / "link"
    link.symlink_to(checkout)
    assert module_inside(link / "app" / "__init__.py", checkout)
    assert module_inside(init, link)


def test_check_app_origin_fails_loudly(tmp_path: Path) -> None:
    check_app_origin("baseline", str(tmp_path / "app" / "__init__.py"), tmp_path)
    with pytest.raises(RuntimeError, match=r"baseline would import app from .* not from"):
        check_app_origin("baseline", str(REPO / "app" / "__init__.py"), tmp_path)


def test_app_origin_follows_cwd_and_pythonpath(tmp_path: Path) -> None:
    """What the runner checks before starting the baseline: with the checkout as cwd and
    PYTHONPATH, its ``app`` wins over the venv's editable install of the working tree."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").touch()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert module_inside(app_origin(tmp_path, {"PYTHONPATH": str(tmp_path)}), tmp_path)
    assert module_inside(app_origin(elsewhere, {"PYTHONPATH": str(tmp_path)}), tmp_path)
    # Neither cwd nor PYTHONPATH: the installed working tree, which the check would refuse.
    origin = app_origin(elsewhere, {"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert not module_inside(origin, tmp_path)
    assert module_inside(origin, REPO)
    with pytest.raises(RuntimeError):
        check_app_origin("baseline", origin, tmp_path)


def test_rounds_below_the_minimum_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--baseline", str(tmp_path), "--rounds", "4"])
    assert exit_info.value.code == 2
    assert "--rounds must be at least 5" in capsys.readouterr().err


def test_a_directory_that_is_no_checkout_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        run_main([f"--baseline={tmp_path}"])
    assert "is not a checkout of this repository" in capsys.readouterr().err


def test_without_baseline_the_ordinary_bench_parses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bench ")
    assert "--batch-pairs" in out


def test_with_baseline_help_is_the_comparison_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--baseline", "/nonexistent", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bench --baseline DIR ")
    assert "--connections" in out
    assert "--batch-pairs" not in out
