"""Which error shape a request is answered in, and the app's one exception handler.

Each API declares the URL prefix its routes live under and how it renders an
:class:`~app.errors.ApiError` (an :class:`ErrorShape`). A path under a declared prefix is
answered in that API's shape whether or not a route matched it (``/v1/models/nope`` is a TF
Serving 404, not the service's), everything else in the service's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.errors import ApiError, Detail, InvalidInput, MethodNotAllowed, NotFound

RenderApiError = Callable[[ApiError], Response]


@dataclass(frozen=True)
class ErrorShape:
    """An API's routes (``prefix``: a path segment, or "" for the rest) and its rendering."""

    prefix: str
    render: RenderApiError

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


class ErrorShapes:
    """The error shapes of the app's APIs; the first whose prefix owns a path wins."""

    def __init__(self, default: RenderApiError, shapes: Sequence[ErrorShape]) -> None:
        self._default = default
        self._shapes = tuple(shapes)

    def render(self, error: ApiError, path: str) -> Response:
        for shape in self._shapes:
            if shape.owns(path):
                return shape.render(error)
        return self._default(error)


def from_http_exception(exc: HTTPException) -> ApiError:
    """Starlette's routing errors (unknown path, wrong method) as the app's own errors."""
    if exc.status_code == 404:
        return NotFound("no such endpoint", headers=exc.headers)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"method not allowed; allowed: {allowed}", headers=exc.headers)
    error = ApiError(str(exc.detail), headers=exc.headers)
    # An HTTP status we do not raise ourselves: keep it, with a generic code.
    error.status = exc.status_code
    error.code = "http_error"
    return error


def from_validation_error(exc: RequestValidationError) -> InvalidInput:
    """FastAPI's parameter validation errors (no route of ours declares any, but a future one
    might) as the app's own 422."""
    details = [
        Detail(".".join(str(part) for part in item["loc"]), item["msg"]) for item in exc.errors()
    ]
    return InvalidInput("invalid request", details=details)


def exception_handler(
    shapes: ErrorShapes,
) -> Callable[[Request, Exception], Coroutine[Any, Any, Response]]:
    """The one handler for every error the FastAPI routes raise, in its API's shape."""

    # async on purpose: Starlette runs a sync exception handler in the threadpool.
    async def handle(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, HTTPException):
            error = from_http_exception(exc)
        elif isinstance(exc, RequestValidationError):
            error = from_validation_error(exc)
        else:  # registered only for the types above; the middleware renders the rest as 500
            raise exc
        return shapes.render(error, request.scope["path"])

    return handle
