"""The model page in a real headless Chromium against a real server (the session's version,
trained by the training CLI): what it plots is what the API answers, it asks nothing of any
other origin, and it draws something.

The screenshot goes to the test's tmp dir (its path is printed; run with ``-s`` to see it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from matplotlib import image

from app.api.service.page import DATA_ELEMENT_ID
from app.lifecycle.loading import SURFACE_POINTS
from tests.support import browser
from tests.support.server import Server, running_server

pytestmark = pytest.mark.browser

VERSION = 1700000000
PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]
_DATA = re.compile(
    rf'<script type="application/json" id="{DATA_ELEMENT_ID}">(.*?)</script>', re.DOTALL
)
_EVALUATION = re.compile(r'^xor_model_evaluation\{metric="([^"]+)"\} (\S+)$', re.MULTILINE)


@pytest.fixture(scope="module")
def chromium() -> str:
    return browser.chromium()


@pytest.fixture(scope="module")
def server(
    chromium: str, tmp_path_factory: pytest.TempPathFactory, trained_version: Path
) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("page-server"), trained_version, VERSION) as live:
        yield live


@pytest.fixture(scope="module")
def rendered(server: Server, tmp_path_factory: pytest.TempPathFactory) -> browser.Rendered:
    return browser.render(f"{server.url}/model", tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="module")
def data(rendered: browser.Rendered) -> dict[str, Any]:
    """The data the page embeds, read from the DOM Chromium built."""
    (block,) = _DATA.findall(rendered.dom)
    document: dict[str, Any] = json.loads(block)
    return document


def test_the_surface_corners_are_predicts_answers(server: Server, data: dict[str, Any]) -> None:
    assert data["model_version"] == VERSION
    probability = data["surface"]["probability"]
    last = SURFACE_POINTS - 1
    for x1, x2 in PAIRS:
        answer = httpx.post(f"{server.url}/predict", json={"inputs": [x1, x2]}).json()
        (prediction,) = answer["predictions"]
        shown = probability[x1 * last][x2 * last]
        assert round(shown) == prediction["class_id"], (x1, x2, shown)
        assert abs(shown - prediction["probabilities"][1]) <= 1e-3, (x1, x2, shown)


def test_the_curve_ends_at_the_evaluations_global_step(
    server: Server, data: dict[str, Any], rendered: browser.Rendered
) -> None:
    model = httpx.get(f"{server.url}/model").json()
    global_step = model["evaluation"]["metrics"]["global_step"]
    points = data["history"]["points"]
    assert points[-1]["step"] == global_step
    (curve,) = [a for a, _ in browser.elements_with(rendered.dom, "data-last-step")]
    assert curve["data-last-step"] == str(global_step)
    series = {a["data-series"] for a, _ in browser.elements_with(rendered.dom, "data-series")}
    assert series == {"loss", "accuracy"}


def test_the_metrics_shown_are_those_of_metrics(
    server: Server, data: dict[str, Any], rendered: browser.Rendered
) -> None:
    exposition = httpx.get(f"{server.url}/metrics").text
    served = {name: float(value) for name, value in _EVALUATION.findall(exposition)}
    assert "accuracy" in served and "global_step" in served
    shown = {
        str(attrs["data-metric"]): float(text)
        for attrs, text in browser.elements_with(rendered.dom, "data-metric")
    }
    assert shown.keys() == served.keys() == data["metrics"].keys()
    for name, value in served.items():
        assert shown[name] == pytest.approx(value, rel=1e-5, abs=1e-12), name
        assert data["metrics"][name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


def test_the_page_requests_nothing_outside_the_server(
    server: Server, rendered: browser.Rendered
) -> None:
    # No stylesheet, script, font or image of its own either: all of it is inline.
    assert rendered.requests_outside(server.url) == []
    assert {request.url for request in rendered.requests} <= {f"{server.url}/favicon.ico"}


def rendered_area(png: Path) -> float:
    """The share of a screenshot's pixels that are not white (the page's cards are)."""
    pixels = image.imread(png)[..., :3]
    return float((pixels < 0.95).any(axis=-1).mean())


def red_and_blue(png: Path) -> tuple[float, float]:
    """The shares of clearly red and clearly blue pixels: the surface's two classes."""
    pixels = image.imread(png)[..., :3]
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    red = (r > 0.6) & (g < 0.45) & (b < 0.45)
    blue = (b > 0.55) & (r < 0.4)
    return float(red.mean()), float(blue.mean())


def test_the_screenshot_shows_the_page(server: Server, tmp_path: Path) -> None:
    png = browser.screenshot(f"{server.url}/model", tmp_path / "model-page.png")
    print(f"screenshot of /model: {png}")
    assert png.stat().st_size > 20_000
    assert image.imread(png).shape[:2] == (2000, 1280)
    assert rendered_area(png) > 0.05, png
    # The heatmap drew both classes (a page whose style or SVG were blocked would not).
    red, blue = red_and_blue(png)
    assert red > 0.005 and blue > 0.005, (red, blue, png)
