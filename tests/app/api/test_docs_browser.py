"""/docs and /redoc in a real headless browser against a real server, with every name but
127.0.0.1 unresolvable: both render every operation of the app's OpenAPI, and ask nothing of
any other origin. The detector of outside requests is itself shown to catch them.

Screenshots go to the test's tmp dir (its path is printed; run with ``-s`` to see it).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from matplotlib import image

from app.api import docs
from tests.support import browser
from tests.support.server import Server, free_port, running_server

pytestmark = pytest.mark.browser

VERSION = 1700000000


@pytest.fixture(scope="module")
def chromium() -> str:
    return browser.chromium()


@pytest.fixture(scope="module")
def server(
    chromium: str, tmp_path_factory: pytest.TempPathFactory, trained_version: Path
) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("docs-server"), trained_version, VERSION) as live:
        yield live


@pytest.fixture(scope="module")
def operations(server: Server) -> list[dict[str, Any]]:
    """Every operation the server's OpenAPI document lists: method, path, id and summary."""
    document = httpx.get(f"{server.url}/openapi.json").json()
    found = [
        {"method": method, "path": path, **operation}
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert len(found) > 10  # the app's whole surface, not an empty document
    return found


@pytest.fixture(scope="module")
def rendered(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, browser.Rendered]:
    """Each page, rendered once by Chromium for the tests of this module."""
    tmp = tmp_path_factory.mktemp("chromium")
    return {
        page: browser.render(f"{server.url}{page}", tmp / page.strip("/"))
        for page in (docs.DOCS_PATH, docs.REDOC_PATH)
    }


def test_swagger_ui_lists_every_operation(
    rendered: dict[str, browser.Rendered], operations: list[dict[str, Any]]
) -> None:
    dom = rendered[docs.DOCS_PATH].dom
    # Swagger UI's operation blocks: id "operations-<tag>-<operationId>", class
    # "opblock opblock-<method>", the path in a data-path attribute.
    blocks = [
        (attrs, text)
        for attrs, text in browser.elements_with(dom, "id")
        if str(attrs["id"]).startswith("operations-")
        and "opblock" in str(attrs.get("class")).split()
    ]
    assert len(blocks) == len(operations), [attrs["id"] for attrs, _ in blocks]
    for operation in operations:
        (block,) = [
            (attrs, text)
            for attrs, text in blocks
            if str(attrs["id"]).endswith(f"-{operation['operationId']}")
        ]
        attrs, text = block
        assert f"opblock-{operation['method']}" in str(attrs["class"]).split()
        assert operation["summary"] in text
    paths = {attrs["data-path"] for attrs, _ in browser.elements_with(dom, "data-path")}
    assert paths == {operation["path"] for operation in operations}


def test_redoc_renders_every_operation(
    rendered: dict[str, browser.Rendered], operations: list[dict[str, Any]]
) -> None:
    sections = {
        str(attrs["data-section-id"]).removeprefix("operation/"): text
        for attrs, text in browser.elements_with(rendered[docs.REDOC_PATH].dom, "data-section-id")
        if str(attrs["data-section-id"]).startswith("operation/")
    }
    assert set(sections) == {operation["operationId"] for operation in operations}
    for operation in operations:
        text = sections[operation["operationId"]]
        assert operation["summary"] in text
        assert f"{operation['method']} {operation['path']}" in text  # ReDoc's endpoint line


@pytest.mark.parametrize("page", [docs.DOCS_PATH, docs.REDOC_PATH])
def test_pages_request_nothing_outside_the_server(
    rendered: dict[str, browser.Rendered], server: Server, page: str
) -> None:
    requests = rendered[page].requests
    assert rendered[page].requests_outside(server.url) == []
    requested = {request.url.removeprefix(server.url) for request in requests}
    script = docs.SWAGGER_JS if page == docs.DOCS_PATH else docs.REDOC_JS
    # The detector saw the page's own requests (it is not blind), all of them from the server.
    assert {f"{docs.assets_path()}/{script}", "/openapi.json"} <= requested


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """``directory`` served over HTTP on a loopback port; yields the site's URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()
        thread.join()


def test_the_detector_catches_every_kind_of_outside_request(chromium: str, tmp_path: Path) -> None:
    outside = {
        "https://cdn.outside.test/bundle.js",
        "https://styles.outside.test/theme.css",
        "http://images.outside.test/logo.png",
        "https://fonts.outside.test/face.woff2",
        "https://api.outside.test/data.json",
        "https://frames.outside.test/embedded.html",
    }
    site = tmp_path / "site"
    site.mkdir()
    (site / "local.css").write_text("body { color: #333 }\n")
    (site / "index.html").write_text(
        f"""<!DOCTYPE html>
<html><head><meta charset="utf-8">
<link rel="stylesheet" href="/local.css">
<script src="https://cdn.outside.test/bundle.js"></script>
<link rel="stylesheet" href="https://styles.outside.test/theme.css">
<style>
  @font-face {{ font-family: Outside; src: url(https://fonts.outside.test/face.woff2); }}
  body {{ font-family: Outside }}
</style>
</head><body><p>{len(outside)} requests outside</p>
<img src="http://images.outside.test/logo.png">
<iframe src="https://frames.outside.test/embedded.html"></iframe>
<script>fetch("https://api.outside.test/data.json").catch(() => {{}});</script>
</body></html>
"""
    )
    with static_site(site) as url:
        page = browser.render(f"{url}/index.html", tmp_path / "chromium")
    assert set(page.requests_outside(url)) == outside
    assert f"{url}/local.css" in {request.url for request in page.requests}


def rendered_area(png: Path) -> float:
    """The share of a screenshot's pixels that are not the page's white background."""
    pixels = image.imread(png)[..., :3]
    return float((pixels < 0.95).any(axis=-1).mean())


@pytest.mark.parametrize("page", [docs.DOCS_PATH, docs.REDOC_PATH])
def test_screenshot_shows_the_page(server: Server, tmp_path: Path, page: str) -> None:
    png = browser.screenshot(f"{server.url}{page}", tmp_path / f"{page.strip('/')}.png")
    print(f"screenshot of {page}: {png}")
    assert image.imread(png).shape[:2] == (2000, 1280)
    # A page that failed to render (a blank Swagger UI) is all background.
    assert rendered_area(png) > 0.05, png
