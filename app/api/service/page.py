"""The model page: ``GET /model`` for a browser (``Accept: text/html``).

What the served version learned, for a person: its evaluation metrics, its training curve
(loss and accuracy by step), its decision surface over [0, 1]², the loaded versions and the
labels, and a form to try a pair. Built here, on the server, from what the loader prepared
(``LoadedModel.surface`` and ``.history``, computed once when the version was loaded): the
request only formats. Inline CSS and SVG, one small inline script (the form), nothing from
anywhere else; the Content-Security-Policy allows exactly that, by a nonce per response.

The plotted data is embedded as ``<script type="application/json" id="model-data">``, so a
test (or a person) can check the picture against the API: the surface's corners against
``/predict``, the curve's last step against the evaluation, the metrics against ``/metrics``.
Everything from the version's files is escaped (``html.escape``; ``<``, ``>`` and ``&`` as
``\\u00XX`` in the JSON block).
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.responses import Response

from app.lifecycle.loading import DecisionSurface, LoadedModel, TrainingHistory

DATA_ELEMENT_ID = "model-data"
# The surface's colours: P(class 1) from 0 (blue, class 0) through 0.5 (white) to 1 (red).
_CLASS_0 = (33, 102, 172)
_MIDDLE = (247, 247, 247)
_CLASS_1 = (178, 24, 43)
# Colour levels of the heatmap: cells of one level next to each other in a row are one rect.
_LEVELS = 40
_CELL = 8  # px per grid cell
_CURVE_WIDTH, _CURVE_HEIGHT = 600, 280
_CURVE_MARGIN = (66, 60, 40, 20)  # left, right, bottom, top
# Up to this many points, each is marked on the curve (a few summaries make a few segments).
_MARKED_POINTS = 60

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d2330; margin: 0; background: #f4f5f7; }
header { background: #1d2330; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #c5cad6; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 20px;
       padding: 20px 32px; }
section { background: #fff; border-radius: 8px; padding: 16px 20px;
          box-shadow: 0 1px 3px rgba(0, 0, 0, .12); }
h2 { font-size: 17px; margin: 0 0 10px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e5ea; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
#versions { grid-column: 1 / -1; }
#versions td { white-space: nowrap; }
svg.plot { width: 100%; height: auto; max-width: 640px; }
.note { color: #5b6272; font-size: 13px; }
.missing { background: #fff4e0; border-left: 4px solid #e0a030; padding: 8px 12px; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
form { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
select, button { font: inherit; padding: 4px 10px; }
output { display: block; margin-top: 10px; font-family: ui-monospace, monospace; }
"""

_SCRIPT = """
(() => {
  const form = document.getElementById("try");
  const answer = document.getElementById("try-answer");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const pair = [Number(form.elements.x1.value), Number(form.elements.x2.value)];
    answer.textContent = "asking /predict...";
    try {
      const response = await fetch(form.dataset.endpoint, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({inputs: pair}),
      });
      const body = await response.json();
      if (!response.ok) {
        answer.textContent = `${response.status}: ${body.error ? body.error.message : ""}`;
        return;
      }
      const p = body.predictions[0];
      answer.textContent = `[${pair.join(", ")}] -> class ${p.class_id}, ` +
        `P(1) = ${p.probabilities[1].toFixed(4)} (version ${body.model_version})`;
    } catch (error) {
      answer.textContent = String(error);
    }
  });
})();
"""


def content_security_policy(nonce: str) -> str:
    """Nothing but this page's own nonced style and script, and requests to the server."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "img-src 'self'",
            "connect-src 'self'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def page_data(
    model: LoadedModel, loaded: Sequence[LoadedModel], labels: dict[str, Any]
) -> dict[str, Any]:
    """What the page plots and lists, as embedded in it (JSON)."""
    surface = model.surface
    history = model.history
    return {
        "model_version": model.version,
        "loaded_at": model.loaded_at_text,
        "evaluated_at": model.evaluation.get("evaluated_at"),
        "metrics": model.metrics,
        "surface": None
        if surface is None
        else {
            "of": "P(class 1)",
            "layout": "probability[i][j] is at x1 = axis[i], x2 = axis[j]",
            "axis": surface.axis,
            "probability": surface.probability,
        },
        "surface_problem": model.surface_problem,
        "history": None
        if history is None
        else {
            "loss_of": history.loss_of,
            "accuracy_of": history.accuracy_of,
            "points": [
                {"step": step, "loss": loss, "accuracy": accuracy}
                for step, loss, accuracy in history.points
            ],
        },
        "history_problem": model.history_problem,
        "versions": [_version_row(other, model) for other in loaded],
        **labels,
    }


def _version_row(model: LoadedModel, served: LoadedModel) -> dict[str, Any]:
    metrics = model.metrics
    return {
        "model_version": model.version,
        "loaded_at": model.loaded_at_text,
        "accuracy": metrics.get("accuracy"),
        "global_step": metrics.get("global_step"),
        "served": model is served,
    }


def _json_block(data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    # Inside <script>, "</script>" or "<!--" in a string would end or change the element.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(
    model: LoadedModel,
    loaded: Sequence[LoadedModel],
    labels: dict[str, Any],
    *,
    predict_url: str,
) -> Response:
    """The model page of ``model`` (the served version) as an HTML response."""
    nonce = secrets.token_urlsafe(18)
    data = page_data(model, loaded, labels)
    title = f"XOR model, version {model.version}"
    body = "\n".join(
        (
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_escape(title)}</title>",
            f'<style nonce="{nonce}">{_STYLE}</style>',
            "</head><body>",
            "<header>",
            f"<h1>{_escape(title)}</h1>",
            f"<p>{_escape(model.path)} &middot; loaded {_escape(model.loaded_at_text)} "
            f"&middot; evaluated {_escape(model.evaluation.get('evaluated_at', '(no date)'))} "
            "&middot; as JSON: the same URL with <code>Accept: application/json</code></p>",
            "</header>",
            "<main>",
            _surface_section(model.surface, model.surface_problem),
            _curve_section(model.history, model.history_problem),
            _metrics_section(model.metrics),
            _try_section(predict_url),
            _versions_section(data["versions"], labels),
            "</main>",
            f'<script type="application/json" id="{DATA_ELEMENT_ID}">{_json_block(data)}</script>',
            f'<script nonce="{nonce}">{_SCRIPT}</script>',
            "</body></html>",
        )
    )
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": content_security_policy(nonce),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept",
        },
    )


def _missing(message: str) -> str:
    return f'<p class="missing">{_escape(message)}</p>'


def _colour(probability: float) -> str:
    level = min(_LEVELS - 1, int(probability * _LEVELS))
    share = (level + 0.5) / _LEVELS
    if share < 0.5:
        low, high, t = _CLASS_0, _MIDDLE, share * 2
    else:
        low, high, t = _MIDDLE, _CLASS_1, share * 2 - 1
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(low, high, strict=True))


def _surface_section(surface: DecisionSurface | None, problem: str | None) -> str:
    heading = "<h2>Decision surface: P(class 1) over [0, 1]&sup2;</h2>"
    if surface is None:
        return f'<section id="surface">{heading}{_missing(problem or "not computed")}</section>'
    n = len(surface.axis)
    size = n * _CELL
    left, top = 44, 10
    parts = [
        f'<svg id="surface-plot" class="plot" viewBox="0 0 {size + left + 90} {size + top + 44}" '
        'role="img" aria-label="decision surface">',
        f'<g transform="translate({left},{top})" shape-rendering="crispEdges">',
    ]
    # Row j is x2 = axis[j], drawn from the bottom up; runs of one colour are one rect.
    for j in range(n):
        y = (n - 1 - j) * _CELL
        i = 0
        while i < n:
            fill = _colour(surface.probability[i][j])
            start = i
            while i < n and _colour(surface.probability[i][j]) == fill:
                i += 1
            parts.append(
                f'<rect x="{start * _CELL}" y="{y}" width="{(i - start) * _CELL}" '
                f'height="{_CELL}" fill="{fill}"/>'
            )
    parts.append("</g>")
    # The four training pairs, at the corners, with the model's P(class 1) there.
    for i, j in ((0, 0), (0, n - 1), (n - 1, 0), (n - 1, n - 1)):
        cx = left + i * _CELL + _CELL / 2
        cy = top + (n - 1 - j) * _CELL + _CELL / 2
        p = surface.probability[i][j]
        anchor = "start" if i == 0 else "end"
        dx = 8 if i == 0 else -8
        dy = 16 if j == n - 1 else -8
        parts.append(
            f'<circle cx="{cx}" cy="{cy}" r="5" fill="#fff" stroke="#1d2330" '
            f'stroke-width="2" data-corner="{round(surface.axis[i])},{round(surface.axis[j])}"/>'
            f'<text x="{cx + dx}" y="{cy + dy}" text-anchor="{anchor}">'
            f"({round(surface.axis[i])}, {round(surface.axis[j])}): {p:.4f}</text>"
        )
    # Axes and the colour scale.
    parts.append(
        f'<text x="{left + size / 2}" y="{top + size + 32}" text-anchor="middle">x1</text>'
        f'<text x="{left - 30}" y="{top + size / 2}" text-anchor="middle">x2</text>'
        f'<text x="{left}" y="{top + size + 16}" text-anchor="middle">0</text>'
        f'<text x="{left + size}" y="{top + size + 16}" text-anchor="middle">1</text>'
        f'<text x="{left - 8}" y="{top + size}" text-anchor="end">0</text>'
        f'<text x="{left - 8}" y="{top + 10}" text-anchor="end">1</text>'
    )
    scale_x = left + size + 24
    parts.append(
        '<defs><linearGradient id="scale" x1="0" y1="1" x2="0" y2="0">'
        f'<stop offset="0" stop-color="{_colour(0.0)}"/>'
        f'<stop offset="0.5" stop-color="{_colour(0.5)}"/>'
        f'<stop offset="1" stop-color="{_colour(1.0)}"/></linearGradient></defs>'
        f'<rect x="{scale_x}" y="{top}" width="16" height="{size}" fill="url(#scale)" '
        'stroke="#8a90a0"/>'
        f'<text x="{scale_x + 22}" y="{top + 10}">1</text>'
        f'<text x="{scale_x + 22}" y="{top + size / 2 + 4}">0.5</text>'
        f'<text x="{scale_x + 22}" y="{top + size}">0</text>'
    )
    parts.append("</svg>")
    note = (
        f'<p class="note">The served model on a {n} &times; {n} grid, computed once when the '
        "version was loaded (red: class 1, blue: class 0).</p>"
    )
    return f'<section id="surface">{heading}{"".join(parts)}{note}</section>'


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    return [low + (high - low) * k / (count - 1) for k in range(count)]


def _polyline(points: Iterable[tuple[float, float]], colour: str, name: str) -> str:
    coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return (
        f'<polyline data-series="{name}" points="{coordinates}" fill="none" '
        f'stroke="{colour}" stroke-width="2"/>'
    )


def _curve_section(history: TrainingHistory | None, problem: str | None) -> str:
    heading = "<h2>Training curve</h2>"
    if history is None:
        message = f"No training curve: {problem or 'none recorded'}."
        return f'<section id="curve">{heading}{_missing(message)}</section>'
    steps = [point[0] for point in history.points]
    losses = [point[1] for point in history.points]
    first, last = min(0, steps[0]), steps[-1]
    top_loss = max(max(losses), 1e-12)
    left, right, bottom, top = _CURVE_MARGIN
    width = _CURVE_WIDTH - left - right
    height = _CURVE_HEIGHT - top - bottom

    def x(step: float) -> float:
        return left + (step - first) / max(last - first, 1) * width

    def y(share: float) -> float:
        return top + (1 - share) * height

    parts = [
        f'<svg id="curve-plot" class="plot" viewBox="0 0 {_CURVE_WIDTH} {_CURVE_HEIGHT}" '
        f'role="img" aria-label="training curve" data-last-step="{last}">',
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" '
        'stroke="#c5cad6"/>',
    ]
    for share in _ticks(0, 1):
        parts.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            'stroke="#eef0f3"/>'
            f'<text x="{left - 6}" y="{y(share) + 4:.1f}" text-anchor="end">'
            f"{top_loss * share:.3g}</text>"
            f'<text x="{left + width + 6}" y="{y(share) + 4:.1f}">{share:.2f}</text>'
        )
    for step in _ticks(first, last):
        parts.append(
            f'<text x="{x(step):.1f}" y="{top + height + 16}" text-anchor="middle">'
            f"{round(step)}</text>"
        )
    parts.append(
        _polyline(((x(s), y(loss / top_loss)) for s, loss, _ in history.points), "#2166ac", "loss")
    )
    parts.append(
        _polyline(((x(s), y(accuracy)) for s, _, accuracy in history.points), "#d6604d", "accuracy")
    )
    if len(steps) <= _MARKED_POINTS:
        for s, loss, accuracy in history.points:
            parts.append(
                f'<circle cx="{x(s):.1f}" cy="{y(loss / top_loss):.1f}" r="3" fill="#2166ac"/>'
                f'<circle cx="{x(s):.1f}" cy="{y(accuracy):.1f}" r="3" fill="#d6604d"/>'
            )
    parts.append(
        f'<text x="{left + width / 2}" y="{_CURVE_HEIGHT - 6}" text-anchor="middle">'
        "global step</text>"
        f'<text transform="translate(16,{top + height / 2}) rotate(-90)" text-anchor="middle" '
        'fill="#2166ac">loss</text>'
        f'<text transform="translate({_CURVE_WIDTH - 14},{top + height / 2}) rotate(90)" '
        'text-anchor="middle" fill="#d6604d">accuracy</text>'
        "</svg>"
    )
    notes = [f"{len(steps)} points, the last at step {last}."]
    if history.loss_of:
        notes.append(f"Loss: {history.loss_of}.")
    if history.accuracy_of:
        notes.append(f"Accuracy: {history.accuracy_of}.")
    note = f'<p class="note">{_escape(" ".join(notes))}</p>'
    return f'<section id="curve">{heading}{"".join(parts)}{note}</section>'


def _metrics_section(metrics: dict[str, float | int]) -> str:
    rows = "".join(
        f'<tr><th>{_escape(name)}</th><td class="number" data-metric="{_escape(name)}">'
        f"{_escape(_number(value))}</td></tr>"
        for name, value in metrics.items()
    )
    return (
        '<section id="metrics"><h2>Evaluation</h2>'
        f"<table><tbody>{rows}</tbody></table>"
        '<p class="note">The version\'s evaluation.json, as <code>/metrics</code> serves it.'
        "</p></section>"
    )


def _try_section(predict_url: str) -> str:
    options = '<option value="0">0</option><option value="1">1</option>'
    return (
        '<section id="try-section"><h2>Try a pair</h2>'
        f'<form id="try" data-endpoint="{_escape(predict_url)}">'
        f'<label>x1 <select name="x1">{options}</select></label>'
        f'<label>x2 <select name="x2">{options}</select></label>'
        '<button type="submit">Predict</button></form>'
        '<output id="try-answer" for="try"></output>'
        f'<p class="note">Sends <code>{{"inputs": [x1, x2]}}</code> to '
        f"<code>{_escape(predict_url)}</code>.</p></section>"
    )


def _versions_section(versions: list[dict[str, Any]], labels: dict[str, Any]) -> str:
    by_version: dict[int, list[str]] = {}
    for name, version in labels["labels"].items():
        by_version.setdefault(version, []).append(name)
    rows = "".join(
        f'<tr data-version="{_escape(row["model_version"])}">'
        f"<td>{_escape(row['model_version'])}</td>"
        f"<td>{'serving' if row['served'] else 'loaded'}</td>"
        f"<td>{_escape(', '.join(sorted(by_version.get(row['model_version'], []))) or '-')}</td>"
        f'<td class="number">{_escape(_optional(row["accuracy"]))}</td>'
        f'<td class="number">{_escape(_optional(row["global_step"]))}</td>'
        f"<td>{_escape(row['loaded_at'])}</td></tr>"
        for row in versions
    )
    extra = [
        f"Canary share: {labels['canary_percent']}%."
        if labels["labels"]
        else "No labels (no labels.json, or no stable label in it): the newest version serves."
    ]
    if labels.get("labels_error"):
        extra.append(f"labels.json: {labels['labels_error']}")
    for label, problem in sorted(labels.get("label_problems", {}).items()):
        extra.append(f"Label {label}: {problem}")
    notes = "".join(f'<p class="note">{_escape(text)}</p>' for text in extra)
    return (
        '<section id="versions"><h2>Loaded versions and labels</h2>'
        "<table><thead><tr><th>version</th><th>state</th><th>labels</th>"
        '<th class="number">accuracy</th><th class="number">global step</th>'
        f"<th>loaded at</th></tr></thead><tbody>{rows}</tbody></table>"
        f"{notes}</section>"
    )


def _optional(value: float | int | None) -> str:
    return "" if value is None else _number(value)
