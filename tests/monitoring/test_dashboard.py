"""monitoring/grafana/xor.json: a dashboard Grafana imports, on a ``${datasource}`` variable,
whose every query is valid PromQL over the metrics the app really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import pytest

from tests.monitoring.promql import metric_names
from tests.monitoring.promtool import run_promtool
from tests.support.dashboard import DASHBOARD, dashboard_queries, duration_ms, panels, runnable

DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
# The panels the dashboard is for, by title.
EXPECTED_PANELS: Final = {
    "Request rate by route and status",
    "/predict latency (p50, p90, p99)",
    "Batch sizes (pairs per model call)",
    "Served version per replica",
    "Evaluation accuracy per replica",
    "Sync age per replica",
    "Poll age per replica",
    "In-flight prediction requests",
    "Overloaded 503 rate",
    "Response cache hits (share of rows)",
    "Refused by the HTTP layer (400, 408, 431)",
}
QUERIES: Final = dashboard_queries()


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def query_id(query: tuple[str, str]) -> str:
    return f"{query[0]}: {query[1][:60]}"


def test_it_is_a_dashboard_of_its_own_uid() -> None:
    board = dashboard()
    assert board["uid"] == "xor-serving"
    assert board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    assert board["id"] is None  # imported as a new dashboard, wherever


def test_its_datasource_is_a_prometheus_variable() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in panels(dashboard())]
    assert len(ids) == len(set(ids))
    assert all(isinstance(panel_id, int) for panel_id in ids)


def test_it_has_the_expected_panels() -> None:
    titles = {panel["title"] for panel in panels(dashboard()) if panel["type"] != "row"}
    assert titles >= EXPECTED_PANELS


def test_every_panel_queries_the_datasource_variable() -> None:
    for panel in panels(dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


@pytest.mark.parametrize("query", QUERIES, ids=query_id)
def test_each_query_selects_the_job_and_rates_over_the_rate_interval(
    query: tuple[str, str],
) -> None:
    _, expr = query
    assert 'job="xor-api"' in expr
    # Grafana sizes $__rate_interval to the scrape interval and the zoom: no fixed windows.
    assert set(re.findall(r"\[[^\]]*\]", expr)) <= {"[$__rate_interval]"}


def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool checks expressions only in rules files: each query becomes a recording rule.
    records = [
        {"record": f"dashboard:query_{index}", "expr": runnable(expr)}
        for index, (_, expr) in enumerate(QUERIES)
    ]
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": records}]}))
    completed = run_promtool(promtool, "check", "rules", rules)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"SUCCESS: {len(records)} rules found" in completed.stdout


@pytest.mark.parametrize("query", QUERIES, ids=query_id)
def test_each_query_uses_only_metrics_the_app_exports(
    query: tuple[str, str], known_series: frozenset[str]
) -> None:
    used = metric_names(runnable(query[1]))
    assert used
    assert used <= known_series, f"not exported: {sorted(used - known_series)}"


def test_queries_include_those_of_collapsed_rows(tmp_path: Path) -> None:
    board = {
        "panels": [
            {"type": "stat", "id": 1, "title": "top", "targets": [{"refId": "A", "expr": "up"}]},
            {
                "type": "row",
                "id": 2,
                "title": "collapsed",
                "collapsed": True,
                "panels": [
                    {
                        "type": "timeseries",
                        "id": 3,
                        "title": "inner",
                        "targets": [
                            {"refId": "A", "expr": "rate(a_total[$__rate_interval])"},
                            {"refId": "B", "expr": "b"},
                        ],
                    }
                ],
            },
        ]
    }
    path = tmp_path / "board.json"
    path.write_text(json.dumps(board))
    assert dashboard_queries(path) == [
        ("top", "up"),
        ("inner", "rate(a_total[$__rate_interval])"),
        ("inner", "b"),
    ]


def test_a_target_without_an_expression_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "board.json"
    path.write_text(json.dumps({"panels": [{"title": "p", "targets": [{"refId": "A"}]}]}))
    with pytest.raises(ValueError, match="panel 'p', target 'A': no PromQL expression"):
        dashboard_queries(path)


def test_runnable_replaces_grafanas_variables() -> None:
    assert runnable("rate(x[$__rate_interval])") == "rate(x[1m])"
    assert runnable("rate(x[${__rate_interval}])", "2m") == "rate(x[2m])"
    assert runnable("max_over_time(x[$__interval])", interval="30s") == "max_over_time(x[30s])"
    assert runnable("increase(x[$__range]) / $__range_s", range_="6h") == (
        "increase(x[6h]) / 21600"
    )
    assert runnable("x > $__interval_ms", interval="1m30s") == "x > 90000"


def test_runnable_refuses_variables_prometheus_cannot_know() -> None:
    with pytest.raises(ValueError, match=r"unknown variable \$instance"):
        runnable('up{instance="$instance"}')
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        runnable("rate(x[$__rate_interval])", "1 minute")


def test_duration_ms() -> None:
    assert duration_ms("1m") == 60_000
    assert duration_ms("1h30m") == 5_400_000
    assert duration_ms("250ms") == 250
    with pytest.raises(ValueError):
        duration_ms("5")
