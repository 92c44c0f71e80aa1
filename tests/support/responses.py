"""The two error shapes on the wire: the service's own and the protocols' (TF Serving, OIP)."""

from __future__ import annotations

from typing import Any

import httpx


def assert_service_error(
    response: httpx.Response, *statuses: int, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {"code", "message", "details": [{"loc", "msg"}]}}`` with one of
    ``statuses`` (and ``code``, if given); returns the inner error object."""
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    for detail in error["details"]:
        assert set(detail) == {"loc", "msg"}
    return dict(error)


def assert_protocol_error(response: httpx.Response, status: int) -> str:
    """``{"error": "<message>"}`` with ``status``; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return str(body["error"])
