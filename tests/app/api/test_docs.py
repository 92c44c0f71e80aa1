"""/docs and /redoc are served with their assets by the app (no CDN), / redirects to /docs; none
of it is in OpenAPI or under the cap on predictions in flight. The pages in a real browser:
test_docs_browser.py."""

from __future__ import annotations

import functools
import importlib.metadata
import re
from pathlib import Path

import anyio
import pytest
import starlette.responses
from fastapi import FastAPI

from app.api import docs
from app.api.hot import ServiceApp
from tests.app.server.test_overload import send, while_one_is_held
from tests.support.apps import WAYS, TestClient, served_app

# Any absolute URL: the pages may name none (their assets and /openapi.json are relative).
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[^\s"'<>]+""")
REFERENCES = re.compile(r"""(?:src|href)="([^"]+)"|url: '([^']+)'|spec-url="([^"]+)\"""")


def references(page: str) -> set[str]:
    """The URLs a page's HTML loads: scripts, styles, icon, and the OpenAPI document."""
    return {next(group for group in match.groups() if group) for match in REFERENCES.finditer(page)}


@pytest.mark.parametrize("page", [docs.DOCS_PATH, docs.REDOC_PATH])
def test_pages_load_everything_from_the_app_itself(served_client: TestClient, page: str) -> None:
    response = served_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert ABSOLUTE_URL.findall(response.text) == []
    loaded = references(response.text)
    assets = docs.assets_path()
    expected_js = docs.SWAGGER_JS if page == docs.DOCS_PATH else docs.REDOC_JS
    assert f"{assets}/{expected_js}" in loaded and f"{assets}/{docs.FAVICON}" in loaded
    assert "/openapi.json" in loaded
    for url in loaded:
        assert served_client.get(url).status_code == 200, url


@pytest.mark.parametrize("page", [docs.DOCS_PATH, docs.REDOC_PATH])
def test_pages_are_revalidated_and_may_load_nothing_from_elsewhere(
    served_client: TestClient, page: str
) -> None:
    headers = served_client.get(page).headers
    assert headers["cache-control"] == "no-cache"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    for directive, sources in policy.items():  # no source outside the app: no host, no scheme
        assert all(
            source.startswith("'") or source in ("data:", "blob:") for source in sources.split()
        ), directive


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        (docs.SWAGGER_JS, "text/javascript; charset=utf-8"),
        (docs.SWAGGER_CSS, "text/css; charset=utf-8"),
        (docs.REDOC_JS, "text/javascript; charset=utf-8"),
        (docs.FAVICON, "image/png"),
    ],
)
def test_assets_are_served_with_a_charset_and_cached_for_good(
    served_client: TestClient, name: str, content_type: str
) -> None:
    url = f"{docs.assets_path()}/{name}"
    response = served_client.get(url)
    assert response.status_code == 200
    assert response.content == (docs.assets_directory() / name).read_bytes()
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = served_client.get(url, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["cache-control"] == response.headers["cache-control"]


def test_scripts_say_utf_8_whatever_the_systems_mime_table(
    served_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's own table (no /etc/mime.types, as in slim images) has application/javascript,
    # to which Starlette adds no charset: Swagger UI's bundle would be read as Latin-1.
    monkeypatch.setattr(
        starlette.responses, "guess_type", lambda *_: ("application/javascript", None)
    )
    response = served_client.get(f"{docs.assets_path()}/{docs.SWAGGER_JS}")
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"


def test_assets_live_under_a_path_naming_the_package_version() -> None:
    assert docs.assets_path() == f"/docs/assets/{importlib.metadata.version('fastapi-offline')}"


def test_the_bundles_are_swagger_ui_5_and_redoc_2() -> None:
    # What the pages are written for: FastAPI's own pages load swagger-ui-dist@5 and redoc@2.
    directory = docs.assets_directory()
    swagger = (directory / docs.SWAGGER_JS).read_text(encoding="utf-8")
    redoc = (directory / docs.REDOC_JS).read_text(encoding="utf-8")
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', swagger)
    assert re.search(r'" ReDoc Version: ","2\.\d+\.\d+"', redoc)


def test_an_unknown_asset_is_a_404_in_the_service_error_shape(served_client: TestClient) -> None:
    for path in (f"{docs.assets_path()}/nope.js", f"{docs.assets_path()}/../../openapi.json"):
        response = served_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_root_redirects_to_the_docs(served_client: TestClient) -> None:
    response = served_client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == docs.DOCS_PATH


def test_behind_a_proxy_prefix_the_pages_name_it(trained_model_dir: Path) -> None:
    from app.main import create_app
    from tests.support.apps import serving_settings

    app = create_app(serving_settings(trained_model_dir))
    with TestClient(app, root_path="/xor") as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/xor/docs"
        for page in (docs.DOCS_PATH, docs.REDOC_PATH):
            loaded = references(client.get(page).text)
            assert loaded and all(url.startswith("/xor/") for url in loaded), loaded


def test_none_of_it_is_in_openapi(served_client: TestClient) -> None:
    paths = served_client.get("/openapi.json").json()["paths"]
    assert not {"/", docs.DOCS_PATH, docs.REDOC_PATH} & set(paths)
    assert not [path for path in paths if path.startswith(f"{docs.DOCS_PATH}/")]


@pytest.fixture(scope="module", params=WAYS)
def capped_app(request: pytest.FixtureRequest, trained_model_dir: Path) -> ServiceApp:
    return served_app(trained_model_dir, request.param, max_in_flight=1)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 307),
        (docs.DOCS_PATH, 200),
        (docs.REDOC_PATH, 200),
        ("/openapi.json", 200),
        (f"{docs.assets_path()}/{docs.SWAGGER_JS}", 200),
        (f"{docs.assets_path()}/{docs.REDOC_JS}", 200),
    ],
)
def test_docs_are_not_capped_while_predictions_are(
    capped_app: ServiceApp, path: str, status: int
) -> None:
    held, answer = anyio.run(
        while_one_is_held, capped_app, functools.partial(send, capped_app, "GET", path)
    )
    assert held.status == 200
    assert answer.status == status, answer.body


def test_add_docs_refuses_an_app_that_serves_fastapis_cdn_pages() -> None:
    with pytest.raises(ValueError, match="docs_url"):
        docs.add_docs(FastAPI())
    with pytest.raises(ValueError, match="openapi_url"):
        docs.add_docs(FastAPI(docs_url=None, redoc_url=None, openapi_url=None))


def test_a_missing_asset_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs, "ASSET_FILES", (*docs.ASSET_FILES, "swagger-ui-bundle.min.js"))
    with pytest.raises(RuntimeError, match=r"lacks swagger-ui-bundle\.min\.js: /docs and /redoc"):
        docs.assets_directory()
