"""The prediction routes' short way through the app: same middleware, same handlers, no detour.

A FastAPI request passes some fifteen layers before a route's function runs: the app's
built-in middleware (server errors, telemetry, body limit), exception handling, an exit stack,
the router trying each route in turn, the route's request/response wrapper with two more exit
stacks, dependency solving, parameter parsing. For the prediction routes, whose functions take
only the ``Request`` and parse their bodies themselves, all of that is bookkeeping: measured
with wrk here (c=32, the ceiling app, interleaved rounds) it was ~30 % of a single-pair
request's cost (1,370-1,580 against 1,920-2,700 req/s).

:class:`ServiceApp` is the FastAPI app with one addition: a ``POST`` whose path matches one of
the routes marked :func:`hot_path` is sent straight to that route's function, wrapped in the
app's own user middleware (built the way Starlette builds its stack, so request ids, logs,
metrics and body limits stay exactly as on every other route), and an exception it raises is
rendered by the app's own exception handler for that type. Anything else (other methods, other
paths) takes the ordinary way, so 404s, 405s and the OpenAPI schema are unchanged. The routes
stay declared on their routers: that is what documents them and what the fast path dispatches
to.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]

_HOT_PATH_ENDPOINTS: set[Callable[..., Any]] = set()


def hot_path(endpoint: Endpoint) -> Endpoint:
    """Mark a ``POST`` route's function for the fast path (apply it below ``@router.post``).

    The function must take the ``Request`` alone: no dependencies, no parameters to parse.
    """
    _HOT_PATH_ENDPOINTS.add(endpoint)
    return endpoint


@dataclass(frozen=True)
class _HotRoute:
    route: APIRoute
    regex: re.Pattern[str]
    app: ASGIApp


class ServiceApp(FastAPI):
    """FastAPI, with the :func:`hot_path` routes served the short way (see the module)."""

    # Off only to compare both ways in tests.
    fast_path_enabled = True
    _hot_routes: list[_HotRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.fast_path_enabled:
            found = self._match(scope["path"])
            if found is not None:
                hot, match = found
                route = hot.route
                scope["app"] = self
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = {
                    name: route.param_convertors[name].convert(value)
                    for name, value in match.groupdict().items()
                }
                await hot.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def hot_route_for(self, scope: Scope) -> APIRoute | None:
        """The hot route the fast path would serve ``scope`` with, if any (for tests)."""
        found = self._match(scope["path"])
        return None if found is None else found[0].route

    def _match(self, path: str) -> tuple[_HotRoute, re.Match[str]] | None:
        if self._hot_routes is None:
            self._hot_routes = self._build_hot_routes()
        for hot in self._hot_routes:
            match = hot.regex.match(path)
            if match is not None:
                return hot, match
        return None

    def _build_hot_routes(self) -> list[_HotRoute]:
        hot_routes = []
        for route in self.router.routes:
            if not isinstance(route, APIRoute) or route.endpoint not in _HOT_PATH_ENDPOINTS:
                continue
            dependant = route.dependant
            if route.methods != {"POST"} or any(
                (
                    dependant.dependencies,
                    dependant.path_params,
                    dependant.query_params,
                    dependant.header_params,
                    dependant.cookie_params,
                    dependant.body_params,
                )
            ):
                raise TypeError(
                    f"{route.path}: a hot path route must be POST and take the Request alone"
                )
            app: ASGIApp = self._route_app(route.endpoint)
            for middleware in reversed(self.user_middleware):
                app = middleware.cls(app, *middleware.args, **middleware.kwargs)
            hot_routes.append(_HotRoute(route, route.path_regex, app))
        return hot_routes

    def _route_app(self, endpoint: Callable[..., Any]) -> ASGIApp:
        handlers = self.exception_handlers

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive, send)
            try:
                response: Response = await endpoint(request)
            except Exception as exc:
                handler = next((handlers[t] for t in type(exc).__mro__ if t in handlers), None)
                if handler is None:
                    raise  # the outermost middleware answers 500, as on the ordinary way
                handled = handler(request, exc)
                response = await handled if inspect.isawaitable(handled) else handled
            await response(scope, receive, send)

        return app
