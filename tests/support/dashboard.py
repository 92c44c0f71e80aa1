"""The Grafana dashboard's queries (monitoring/grafana/xor.json), runnable as plain PromQL.

:func:`dashboard_queries` lists every target's expression, panels nested in (collapsed) rows
included; :func:`runnable` replaces Grafana's own variables so that an expression can be sent
to Prometheus's ``/api/v1/query`` or written into a rules file as is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from tests.support import REPO

DASHBOARD: Final = REPO / "monitoring" / "grafana" / "xor.json"

# `$name` or `${name}` (Grafana also has `${name:format}`, which the dashboard does not use).
_VARIABLE: Final = re.compile(r"\$(?:\{(?P<braced>\w+)\}|(?P<bare>\w+))")
_DURATION_PART: Final = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_MS: Final = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}


def panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel of ``dashboard``, rows included, and the panels a collapsed row holds."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every target of every panel of the dashboard at
    ``path``, in the dashboard's order; a target without an ``expr`` raises ValueError."""
    dashboard = json.loads(path.read_text())
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                raise ValueError(
                    f"{path}: panel {panel.get('title')!r}, target {target.get('refId')!r}: "
                    "no PromQL expression (expr)"
                )
            queries.append((str(panel["title"]), expr))
    return queries


def duration_ms(duration: str) -> int:
    """Milliseconds of a Prometheus duration such as ``1m`` or ``1h30m``."""
    parts = _DURATION_PART.findall(duration)
    if not parts or "".join(number + unit for number, unit in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(number) * _UNIT_MS[unit] for number, unit in parts)


def runnable(
    expr: str, rate_interval: str = "1m", *, interval: str = "15s", range_: str = "1h"
) -> str:
    """``expr`` with Grafana's variables replaced: ``$__rate_interval`` by ``rate_interval``,
    ``$__interval`` by ``interval``, ``$__range`` by ``range_`` (and their ``_ms``/``_s``
    forms by numbers). Any other variable raises ValueError: Prometheus would not know it."""
    duration_ms(rate_interval)  # a typo fails here, not in Prometheus
    values = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__interval_ms": str(duration_ms(interval)),
        "__range": range_,
        "__range_ms": str(duration_ms(range_)),
        "__range_s": str(duration_ms(range_) // 1000),
    }

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name not in values:
            raise ValueError(f"{expr!r}: unknown variable ${name} (known: {sorted(values)})")
        return values[name]

    return _VARIABLE.sub(replace, expr)
