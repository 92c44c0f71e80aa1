"""The prediction routes as a plain ASGI application in front of FastAPI.

:class:`ServiceApp` is the service's ASGI application. A ``POST`` whose path matches one of the
prediction routes (:class:`HotRoute`) goes straight to :class:`PredictionRoutes`, wrapped in the
same middleware as the rest (request id, access log, metrics, body limit); every other request
(documentation, health, metrics, model, 404, 405) and the lifespan go to FastAPI. The
prediction routes are declared on FastAPI too, with the same handlers: that is what documents
them in OpenAPI, and what answers them when the plain way is turned off. Why a way of its own:
FastAPI's routing, exception middleware and dependency solving cost more than the rest of a
prediction (bench/NOTES.md).

Only the ASGI interface and Starlette's public ``Request``/``Response`` are used. Paths match as
Starlette's default ``{name}`` parameters do (one path segment, no conversion).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.dependencies import Services
from app.core.bits import Pair, one_pair_batch
from app.core.prediction import ModelOutputs
from app.errors import ApiError
from app.lifecycle.loading import LoadedModel


class PredictionRequest(Protocol):
    """What a prediction handler reads of its request: the ASGI scope, the path parameters and
    the body. Starlette's ``Request`` is one (FastAPI's routes and the fallback way pass it);
    the fused way (``app.server.fused``) passes a :class:`ReadRequest`, its body already read."""

    @property
    def scope(self) -> Scope: ...

    @property
    def path_params(self) -> dict[str, Any]: ...

    async def body(self) -> bytes: ...


class ReadRequest:
    """A :class:`PredictionRequest` whose body has been read whole."""

    __slots__ = ("_body", "path_params", "scope")

    def __init__(self, scope: Scope, path_params: dict[str, Any], body: bytes) -> None:
        self.scope = scope
        self.path_params = path_params
        self._body = body

    async def body(self) -> bytes:
        return self._body


def request_header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header ``name`` (lower-case, as ASGI servers send
    names), or None. Read from the raw list: a ``Headers`` object lower-cases every name first."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def query_items(scope: Scope) -> list[tuple[str, str]]:
    """The query string's ``(name, value)`` pairs, in order, as Starlette's
    ``request.query_params.multi_items()`` gives them."""
    query: bytes = scope.get("query_string", b"")
    return parse_qsl(query.decode("latin-1"), keep_blank_values=True)


async def one_pair_response(
    services: Services,
    model: LoadedModel,
    pair: Pair,
    form: Hashable,
    render: Callable[[ModelOutputs], bytes],
) -> Response:
    """The JSON answer to a request of one pair read by its API's exact form: ``render`` of the
    pair's outputs, kept beside the cached row under ``form``
    (:meth:`~app.core.prediction.PredictionService.answer_one`)."""
    body = await services.prediction.answer_one(one_pair_batch(pair), model, form, render)
    return Response(body, media_type="application/json")


Handler = Callable[[PredictionRequest, Services], Awaitable[Response]]

_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def template_regex(template: str) -> re.Pattern[str]:
    """The regex of a path template: each ``{name}`` one path segment, the rest literal."""
    parts = _PARAMETER.split(template)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(f"^{pattern}$")


@dataclass(frozen=True)
class HotRoute:
    """A ``POST`` prediction route: its path template (as declared on FastAPI), its handler,
    and how its API renders an error."""

    path: str
    handler: Handler
    render_error: Callable[[ApiError], Response]
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", template_regex(self.path))


class PredictionRoutes:
    """Pure ASGI app answering the :class:`HotRoute` requests :class:`ServiceApp` sends it."""

    def __init__(self, routes: Sequence[HotRoute], services: Services) -> None:
        self.routes = tuple(routes)
        self.services = services
        # The routes without parameters that no route before them would take, by path: found
        # without trying the patterns in turn (the same answer as trying them).
        self._literal: dict[str, HotRoute] = {}
        for index, route in enumerate(self.routes):
            path = route.path
            shadowed = any(before.regex.match(path) for before in self.routes[:index])
            if not _PARAMETER.search(path) and not shadowed:
                self._literal.setdefault(path, route)

    def route_for(self, method: str, path: str) -> tuple[HotRoute, dict[str, str]] | None:
        """The route that answers ``method path``, with its path parameters, if any."""
        if method != "POST":
            return None
        literal = self._literal.get(path)
        if literal is not None:
            return literal, {}
        for route in self.routes:
            match = route.regex.match(path)
            if match is not None:
                return route, match.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: HotRoute = scope["route"]
        request = Request(scope, receive, send)
        try:
            response = await route.handler(request, self.services)
        except ApiError as exc:
            response = route.render_error(exc)
        if response.background is None and type(response).__call__ is Response.__call__:
            # A plain Response's parts, sent as it would send them (its __call__ also looks
            # for background tasks and an ASGI extension: none here).
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        await response(scope, receive, send)


class ServiceApp:
    """The service's ASGI application: see the module docstring.

    ``api`` is the FastAPI application (routes, OpenAPI, lifespan, ``state``); ``predictions``
    the prediction routes and ``plain`` the middleware-wrapped app that serves them, or None
    when FastAPI answers everything.
    """

    def __init__(
        self, api: FastAPI, predictions: PredictionRoutes | None, plain: ASGIApp | None
    ) -> None:
        self.api = api
        self.predictions = predictions
        self.plain = plain

    @property
    def state(self) -> State:
        """FastAPI's application state (``state.services``: what the routes use)."""
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.predictions is not None and self.plain is not None:
            found = self.predictions.route_for(scope["method"], scope["path"])
            if found is not None:
                # As a router would: the matched route (its ``path`` labels the metrics) and the
                # path parameters the handlers read from ``request.path_params``.
                scope["route"], scope["path_params"] = found
                await self.plain(scope, receive, send)
                return
        await self.api(scope, receive, send)
