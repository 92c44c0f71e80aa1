"""One HTTP request to an ASGI app, by hand: its body arrives when the test says, its client
may leave, and the server's ``send`` may fail as on a closed connection.

What a TestClient cannot do: hold a request in flight while another is sent, or lose the
client part-way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Scope


@dataclass
class Answer:
    """What the app sent back, and how often it asked for the body."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reads: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


def http_scope(
    method: str,
    path: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    state: dict[str, Any] | None = None,
) -> Scope:
    """The scope uvicorn would build for ``method path`` with ``headers``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "server": ("testserver", 80),
        "client": ("testclient", 50000),
        "state": dict(state or {}),
    }


async def call(
    app: ASGIApp,
    scope: Scope,
    parts: Sequence[bytes] = (b"",),
    *,
    client_leaves: bool = False,
    hold: anyio.Event | None = None,
    reading: anyio.Event | None = None,
    send_error: OSError | None = None,
) -> Answer:
    """Run one request: ``parts`` of its body in turn (the last with ``more_body`` false).

    ``client_leaves``: the client is gone (``http.disconnect``) where the last part would come.
    ``hold``: the last part waits for this event (the request stays in flight until then).
    ``reading`` is set when the app first asks for the body. ``send_error``: every ``send``
    raises it, as a server does once the connection is closed.
    """
    answer = Answer()
    remaining = list(parts)

    async def receive() -> Message:
        answer.reads += 1
        if reading is not None:
            reading.set()
        if client_leaves and len(remaining) <= 1:
            return {"type": "http.disconnect"}
        if hold is not None and len(remaining) == 1:
            await hold.wait()
        if not remaining:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": remaining.pop(0), "more_body": len(remaining) > 0}

    async def send(message: Message) -> None:
        if send_error is not None:
            raise send_error
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    await app(scope, receive, send)
    return answer
