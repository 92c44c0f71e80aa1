"""The uvicorn internals that ``app.server.uvicorn_hooks`` overrides keep the shape it expects.

A failure here after a uvicorn upgrade names the hook that must be checked against the new
uvicorn (and the reason it exists) before the upper bound in pyproject.toml is raised.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from app.server.uvicorn_hooks import (
    UVICORN_PARSE_ERROR_LINE,
    GracefulServer,
    guarded_httptools,
    listening_url,
)

READ_GUARD = "guarded_httptools (read deadline, header cap, draining at shutdown)"
PIPELINE = "guarded_httptools (pipelined answers before a refusal, lost connections reported)"
TAKEOVER = "GracefulServer.shutdown (serving the accept queue at shutdown)"
ANNOUNCE = "GracefulServer.startup (saying where the server listens, once it does)"
DELAY = "GracefulServer.handle_exit/on_tick (the shutdown delay, XOR_SHUTDOWN_DELAY_SECONDS)"


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize(
    ("callback", "parameters"),
    [
        ("connection_made", ["self", "transport"]),
        ("connection_lost", ["self", "exc"]),
        ("data_received", ["self", "data"]),
        ("on_message_begin", ["self"]),
        ("on_headers_complete", ["self"]),
        ("on_message_complete", ["self"]),
        ("shutdown", ["self"]),
        ("on_response_complete", ["self"]),
        ("send_400_response", ["self", "msg"]),
    ],
)
def test_the_protocol_callbacks_the_guard_extends_keep_their_shape(
    callback: str, parameters: list[str]
) -> None:
    method = getattr(HttpToolsProtocol, callback, None)
    assert callable(method), f"uvicorn's HttpToolsProtocol lost {callback}(): {READ_GUARD}"
    assert _parameters(method) == parameters, (
        f"HttpToolsProtocol.{callback} now takes {_parameters(method)}: {READ_GUARD}"
    )


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def test_a_protocol_holds_the_state_the_guard_reads() -> None:
    loop = asyncio.new_event_loop()
    try:
        protocol_class = guarded_httptools(read_timeout=1.0, max_header_bytes=100)
        protocol = protocol_class(
            config=uvicorn.Config(_app), server_state=ServerState(), app_state={}, _loop=loop
        )
        assert isinstance(protocol, HttpToolsProtocol)
        assert protocol.loop is loop, f"the protocol keeps no event loop in .loop: {READ_GUARD}"
        # Read from the instance's dict: uvicorn types .cycle as never None, yet starts it so.
        assert vars(protocol).get("cycle", "missing") is None, (
            f"a new protocol does not start with .cycle None: {READ_GUARD}"
        )
    finally:
        loop.close()
    cycle_source = inspect.getsource(RequestResponseCycle.__init__)
    for attribute in ("self.keep_alive", "self.response_complete"):
        assert attribute in cycle_source, (
            f"RequestResponseCycle no longer sets {attribute}: {READ_GUARD}"
        )


def test_the_request_cycle_keeps_what_the_pipelining_guard_uses() -> None:
    """Each request's ``send`` is replaced by one that raises on a lost connection: the app
    must get the cycle's ``send`` as looked up per call; the guard reads and sets the cycle's
    state, and sees uvicorn's 400 and completed responses through overridable methods."""
    cycle_source = inspect.getsource(RequestResponseCycle.__init__)
    for attribute in (
        "self.disconnected",
        "self.more_body",
        "self.message_event",
        "self.scope",
        "self.transport",
    ):
        assert attribute in cycle_source, (
            f"RequestResponseCycle no longer sets {attribute}: {PIPELINE}"
        )
    assert "self.send" in inspect.getsource(RequestResponseCycle.run_asgi), PIPELINE
    assert inspect.iscoroutinefunction(RequestResponseCycle.send), PIPELINE
    assert _parameters(RequestResponseCycle.send) == ["self", "message"], PIPELINE
    assert "self.send_400_response(" in inspect.getsource(HttpToolsProtocol.data_received), (
        f"uvicorn answers a malformed request other than through send_400_response: {PIPELINE}"
    )
    headers_source = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    for expression in ("on_response=self.on_response_complete", "self.pipeline", "self.cycle ="):
        assert expression in headers_source, f"on_headers_complete lost {expression}: {PIPELINE}"
    protocol_source = inspect.getsource(HttpToolsProtocol.__init__)
    for attribute in ("self.pipeline", "self.flow"):
        assert attribute in protocol_source, f"HttpToolsProtocol has no {attribute}: {PIPELINE}"
    assert callable(getattr(FlowControl, "pause_reading", None)), PIPELINE


def test_the_header_count_reads_what_uvicorn_collects() -> None:
    """The header cap's count of a parsed request reads its URL and ``(name, value)`` headers
    as uvicorn collects them per request, and stops the parser by raising from a callback,
    which uvicorn answers through ``send_400_response`` (overridden to say 431)."""
    assert 'self.url = b""' in inspect.getsource(HttpToolsProtocol.on_message_begin), READ_GUARD
    assert "self.headers = []" in inspect.getsource(HttpToolsProtocol.on_message_begin), READ_GUARD
    assert "self.url += url" in inspect.getsource(HttpToolsProtocol.on_url), READ_GUARD
    assert "self.headers.append((name, value))" in inspect.getsource(HttpToolsProtocol.on_header)
    received = inspect.getsource(HttpToolsProtocol.data_received)
    assert "except httptools.HttpParserError:" in received, READ_GUARD
    assert "self.send_400_response(" in received, READ_GUARD
    # The line uvicorn logs then, which the guard's own (with the refusal's code) replaces.
    assert f'msg = "{UVICORN_PARSE_ERROR_LINE}"' in received, READ_GUARD


def test_protocols_are_built_with_the_arguments_the_takeover_passes() -> None:
    assert _parameters(HttpToolsProtocol.__init__)[:4] == [
        "self",
        "config",
        "server_state",
        "app_state",
    ], f"HttpToolsProtocol's constructor changed: {TAKEOVER} builds protocols as uvicorn does"
    startup = inspect.getsource(uvicorn.Server.startup)
    for argument in ("config=config", "server_state=self.server_state", "self.lifespan.state"):
        assert argument in startup, (
            f"uvicorn's Server.startup no longer builds protocols with {argument}: {TAKEOVER}"
        )


def test_the_server_shutdown_the_takeover_extends_keeps_its_shape() -> None:
    assert _parameters(uvicorn.Server.shutdown) == ["self", "sockets"], TAKEOVER
    assert inspect.iscoroutinefunction(uvicorn.Server.shutdown), TAKEOVER
    assert "self.servers" in inspect.getsource(uvicorn.Server.startup), (
        f"uvicorn's Server keeps its listening servers elsewhere than .servers: {TAKEOVER}"
    )
    # Exactly four methods of uvicorn's Server are overridden (and two private helpers added).
    overridden = {
        name
        for name, value in vars(GracefulServer).items()
        if callable(value) and not name.startswith("__")
    }
    assert overridden == {
        "shutdown",
        "startup",
        "handle_exit",
        "on_tick",
        "_new_protocol",
        "_close_after_each_response",
    }


def test_the_signal_handling_the_delay_extends_keeps_its_shape() -> None:
    """The delay lets uvicorn's handler run, then takes back its ``should_exit``; the main loop
    must still ask ``on_tick`` whether to exit, and ``on_tick`` still renew the default headers
    (the delay adds ``connection: close`` to them again after it)."""
    assert _parameters(uvicorn.Server.handle_exit) == ["self", "sig", "frame"], DELAY
    handler = inspect.getsource(uvicorn.Server.handle_exit)
    assert "self.should_exit = True" in handler, DELAY
    assert "self.force_exit = True" in handler, DELAY
    assert "self.handle_exit" in inspect.getsource(uvicorn.Server.capture_signals), DELAY
    assert _parameters(uvicorn.Server.on_tick) == ["self", "counter"], DELAY
    assert inspect.iscoroutinefunction(uvicorn.Server.on_tick), DELAY
    tick = inspect.getsource(uvicorn.Server.on_tick)
    assert "self.server_state.default_headers = " in tick, DELAY
    assert "if self.should_exit:" in tick, DELAY
    assert "self.on_tick(" in inspect.getsource(uvicorn.Server.main_loop), DELAY
    assert isinstance(ServerState().default_headers, list), DELAY
    send = inspect.getsource(RequestResponseCycle.send)
    assert "self.default_headers + " in send, f"default headers no longer sent: {DELAY}"
    assert "self.keep_alive = False" in send, f"connection: close no longer honoured: {DELAY}"


def test_the_server_startup_the_announcement_extends_keeps_its_shape() -> None:
    assert _parameters(uvicorn.Server.startup) == ["self", "sockets"], ANNOUNCE
    assert inspect.iscoroutinefunction(uvicorn.Server.startup), ANNOUNCE
    startup = inspect.getsource(uvicorn.Server.startup)
    # The listeners are in .servers before .started says so.
    assert startup.index("self.servers = ") < startup.index("self.started = True"), ANNOUNCE


def test_the_announcement_gets_the_port_the_server_really_took() -> None:
    """Port 0: the kernel picks; the URL handed over must be the one a client can reach, and
    it is handed over while the server accepts connections."""
    heard: list[tuple[str, bool]] = []

    def on_listening(url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            heard.append((url, server.started))
        server.should_exit = True

    server = GracefulServer(
        uvicorn.Config(_app, host="127.0.0.1", port=0, lifespan="off", log_config=None),
        on_listening,
    )
    asyncio.run(server.serve())
    ((url, started),) = heard
    assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+", url) and not url.endswith(":0")
    assert started


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (("127.0.0.1", 8000), "http://127.0.0.1:8000"),
        (("0.0.0.0", 8000), "http://127.0.0.1:8000"),
        (("::", 8000, 0, 0), "http://[::1]:8000"),
        (("::1", 9000, 0, 0), "http://[::1]:9000"),
        (("10.1.2.3", 80), "http://10.1.2.3:80"),
        ("/run/xor.sock", "unix:/run/xor.sock"),
    ],
)
def test_a_listeners_address_reads_as_the_url_a_client_here_uses(address: Any, url: str) -> None:
    assert listening_url(address) == url
