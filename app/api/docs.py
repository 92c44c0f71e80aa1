"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with their scripts, styles and icon served by
the app itself: the pages work with no internet. ``/`` redirects to ``/docs``.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, their icon from FastAPI's site and
ReDoc's fonts from Google; where none of these is reachable they stay blank. The pages here
are FastAPI's (``get_swagger_ui_html``, ``get_redoc_html``) pointed at the files the pinned
``fastapi-offline`` package ships (Swagger UI 5, ReDoc 2, FastAPI's icon); nothing else of
that package is used. The files are served under a path that names the package's version, so
browsers may keep them for a year without asking again: an upgrade changes the path. Scripts
and styles say ``charset=utf-8``: Swagger UI's page declares no charset, and its bundle read
as Latin-1 is a syntax error, a blank page.

None of these routes is in the OpenAPI document, and none is a prediction route, so the cap on
predictions in flight never applies to them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Scope

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
ASSETS_DISTRIBUTION = "fastapi-offline"
ASSETS_PACKAGE = "fastapi_offline"
# The files of the package's ``static`` directory that the pages use.
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
ASSET_FILES = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)

# Versioned paths never change content: cached for a year, not even revalidated.
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# The pages name the versioned assets: revalidated on each visit (an upgrade changes them).
# Their policy lets them load nothing from elsewhere: ReDoc 2.5 shows Redocly's logo from its
# CDN in the sidebar, unconditionally; blocked, the image hides itself. Inline scripts and
# styles: FastAPI's pages start Swagger UI inline, and both UIs set styles inline; ReDoc's
# search runs in a worker it makes from a blob.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "; ".join(
        (
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
        )
    ),
}
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def assets_directory() -> Path:
    """The installed directory holding :data:`ASSET_FILES`; a clear error if one is missing."""
    directory = importlib.resources.files(ASSETS_PACKAGE).joinpath("static")
    if not isinstance(directory, Path):  # e.g. installed zipped: StaticFiles needs a directory
        raise RuntimeError(f"{ASSETS_DISTRIBUTION} is not installed as files on disk: {directory}")
    missing = [name for name in ASSET_FILES if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(
            f"{directory} lacks {', '.join(missing)}: /docs and /redoc need them"
            f" (reinstall {ASSETS_DISTRIBUTION} from requirements.lock)"
        )
    return directory


def assets_path() -> str:
    """Where the assets are served: a path naming the installed package version."""
    return f"{DOCS_PATH}/assets/{importlib.metadata.version(ASSETS_DISTRIBUTION)}"


class DocsAssets(StaticFiles):
    """The assets, with a charset on text and caching headers for versioned files."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if response.status_code != 304:  # a 304 has no body, so no content type
            media_type = _MEDIA_TYPES.get(Path(full_path).suffix)
            if media_type is not None:
                response.headers["Content-Type"] = media_type
        response.headers["Cache-Control"] = ASSET_CACHE_CONTROL
        return response


def add_docs(api: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc``, their assets and the ``/`` redirect on ``api``, which must
    be created with ``docs_url=None, redoc_url=None`` (or it would serve FastAPI's CDN pages)."""
    if api.docs_url is not None or api.redoc_url is not None:
        raise ValueError(
            "create FastAPI with docs_url=None and redoc_url=None: add_docs serves them"
        )
    if api.openapi_url is None:
        raise ValueError("the documentation pages need the OpenAPI document (openapi_url)")
    openapi_url = api.openapi_url
    assets = assets_path()
    api.mount(assets, DocsAssets(directory=assets_directory()), name="docs-assets")

    def root_path(request: Request) -> str:
        # Behind a proxy that strips a prefix, the pages must name it (as FastAPI's do).
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> Response:
        root = root_path(request)
        response = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{assets}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{assets}/{FAVICON}",
            swagger_ui_parameters=api.swagger_ui_parameters,
        )
        response.headers.update(PAGE_HEADERS)
        return response

    async def redoc(request: Request) -> Response:
        root = root_path(request)
        response = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{api.title} - ReDoc",
            redoc_js_url=f"{root}{assets}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{assets}/{FAVICON}",
            with_google_fonts=False,
        )
        response.headers.update(PAGE_HEADERS)
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse(root_path(request) + DOCS_PATH, status_code=307)

    api.add_route(DOCS_PATH, swagger_ui, include_in_schema=False)
    api.add_route(REDOC_PATH, redoc, include_in_schema=False)
    api.add_route("/", home, include_in_schema=False)
