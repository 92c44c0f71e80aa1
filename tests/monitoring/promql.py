"""Metric names, offline: those a PromQL expression selects, and those an exposition offers.

No PromQL parser is at hand in Python, and promtool checks syntax but not names; this small
tokenizer only has to find the metric names of the expressions we write: string literals,
label matchers (``{...}``) and range or subquery brackets (``[...]``) are dropped, the label
lists of ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right`` skipped, and
functions, aggregations and keywords left out. An identifier called like a function that is not
a PromQL function raises ValueError, so a misspelt function is not taken for a metric either.
"""

from __future__ import annotations

import re
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

# Prometheus 2.x and 3.x functions (a superset: more is harmless here).
FUNCTIONS: Final = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "info",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
        "start",
        "end",
    ]
)
AGGREGATIONS: Final = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
# Followed by a parenthesised list of label names (optional after group_left/group_right).
LABEL_LIST_KEYWORDS: Final = frozenset(
    ["by", "without", "on", "ignoring", "group_left", "group_right"]
)
KEYWORDS: Final = frozenset(["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"])
# Series Prometheus writes itself for every target (and for alerts).
PROMETHEUS_SERIES: Final = frozenset(
    [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    ]
)

_STRING: Final = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_COMMENT: Final = re.compile(r"#[^\n]*")
_MATCHERS: Final = re.compile(r"\{[^{}]*\}")
_BRACKETS: Final = re.compile(r"\[[^\[\]]*\]")
_TOKEN: Final = re.compile(
    r"(?P<number>(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\w*)"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<other>\S)"
)

# What each metric type's family name gets as sample names (OpenMetrics and 0.0.4 text).
_SAMPLE_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def metric_names(expr: str) -> frozenset[str]:
    """The metric names ``expr`` selects (``foo`` of ``foo{a="b"}``, ``rate(foo[5m])``...)."""
    text = _STRING.sub('""', expr)
    text = _COMMENT.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]
    names: set[str] = set()
    index = 0
    while index < len(tokens):
        kind, token = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        index += 1
        if kind != "ident":
            continue
        word = token.lower()
        if word in LABEL_LIST_KEYWORDS:
            if following == "(":
                index = _after_closing_parenthesis(tokens, index, expr)
        elif word in KEYWORDS or (word in AGGREGATIONS and following in ("(", "by", "without")):
            continue
        elif following == "(":
            if token not in FUNCTIONS:
                raise ValueError(f"{expr!r}: unknown function {token}()")
        else:
            names.add(token)
    return frozenset(names)


def _after_closing_parenthesis(tokens: list[tuple[str | None, str]], index: int, expr: str) -> int:
    """The index after the ``)`` closing the ``(`` at ``tokens[index]``."""
    depth = 0
    for position in range(index, len(tokens)):
        token = tokens[position][1]
        depth += {"(": 1, ")": -1}.get(token, 0)
        if depth == 0:
            return position + 1
    raise ValueError(f"{expr!r}: unbalanced parentheses")


def exposed_series(exposition: str) -> frozenset[str]:
    """Every series name a scrape of ``exposition`` (Prometheus text format) can produce: each
    family's samples, also for a labelled family with no child yet (it still declares its
    name and type, e.g. a counter no error incremented)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return frozenset(names)
