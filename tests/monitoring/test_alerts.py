"""monitoring/alerts.yml: valid for promtool, unit-tested (alerts.test.yml) alert by alert, and
written against the metrics the app really exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.monitoring.promql import metric_names
from tests.monitoring.promtool import MONITORING, run_promtool

ALERTS_FILE: Final = MONITORING / "alerts.yml"
TESTS_FILE: Final = MONITORING / "alerts.test.yml"

# What the alerts are for, by name.
EXPECTED: Final = {
    "XorModelVersionSkew": "(a) replicas serve different versions for more than 5 minutes",
    "XorReplicaDown": "(b) a replica not scraped (up == 0)",
    "XorReplicaNotReady": "(b) a replica with no model (xor_model_ready == 0)",
    "XorNoReadyReplica": "(b) no replica ready at all",
    "XorHighErrorRatio": "(c) 5xx ratio above 5 % with traffic",
    "XorPredictLatencyHigh": "(d) p99 of /predict above 100 ms",
    "XorModelSyncErrors": "(e) S3 sync errors keep increasing",
    "XorModelSyncStale": "(f) last successful sync too old, on replicas that sync",
    "XorModelPollerStalled": "(g) last completed poll too old",
    "XorModelAccuracyLow": "(h) served evaluation accuracy below 1.0",
    "XorOverloaded": "(i) sustained overloaded 503s",
    "XorHttpRefusals": "(j) sustained refusals by the HTTP layer (400, 408, 431)",
}
JOB_SELECTOR: Final = 'job="xor-api"'
_SERIES_NAME: Final = re.compile(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    (group,) = load(ALERTS_FILE)["groups"]
    assert group["name"] == "xor-serving"
    return list(group["rules"])


def unit_tests() -> list[dict[str, Any]]:
    return list(load(TESTS_FILE)["tests"])


def alert_cases() -> list[dict[str, Any]]:
    return [case for test in unit_tests() for case in test.get("alert_rule_test", [])]


RULES: Final = {rule["alert"]: rule for rule in rules()}


def test_promtool_finds_the_rules_valid(promtool: str) -> None:
    completed = run_promtool(promtool, "check", "rules", ALERTS_FILE.relative_to(MONITORING.parent))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in completed.stdout
    assert "WARNING" not in completed.stdout + completed.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    completed = run_promtool(promtool, "test", "rules", TESTS_FILE.relative_to(MONITORING.parent))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "SUCCESS" in completed.stdout


def test_the_alerts_are_those_expected() -> None:
    assert sorted(RULES) == sorted(EXPECTED)
    assert len(rules()) == len(RULES)  # no name twice


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_alert_has_a_delay_a_severity_and_explains_itself(name: str) -> None:
    rule = RULES[name]
    assert re.fullmatch(r"[0-9]+[mh]", rule["for"]), rule.get("for")
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert set(rule["annotations"]) == {"summary", "description"}
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"]) > 80  # says what, why and what to do
    assert JOB_SELECTOR in rule["expr"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_alert_is_fired_and_missed_by_a_unit_test(name: str) -> None:
    cases = [case for case in alert_cases() if case["alertname"] == name]
    fired = [alert for case in cases for alert in case["exp_alerts"]]
    assert fired, f"no test case fires {name}"
    assert any(not case["exp_alerts"] for case in cases), f"no near miss of {name}"
    for alert in fired:
        # Exactly: promtool then compares every label and both annotations.
        assert alert["exp_labels"]["severity"] == RULES[name]["labels"]["severity"]
        assert set(alert["exp_annotations"]) == {"summary", "description"}


def test_unit_tests_name_only_existing_alerts() -> None:
    assert {case["alertname"] for case in alert_cases()} <= set(RULES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_alert_uses_only_metrics_the_app_exports(
    name: str, known_series: frozenset[str]
) -> None:
    used = metric_names(RULES[name]["expr"])
    assert used, RULES[name]["expr"]
    assert used <= known_series, f"not exported: {sorted(used - known_series)}"


def test_unit_tests_feed_only_metrics_the_app_exports(known_series: frozenset[str]) -> None:
    fed = set()
    for test in unit_tests():
        for series in test["input_series"]:
            match = _SERIES_NAME.match(series["series"])
            assert match, series["series"]
            fed.add(match[1])
    assert fed <= known_series, f"not exported: {sorted(fed - known_series)}"
