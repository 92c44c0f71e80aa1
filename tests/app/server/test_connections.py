"""One connection of the guarded httptools protocol (``app.server.uvicorn_hooks``), in process:
pipelined requests are answered in order up to a refused one, and every request on a lost
connection learns it.

The protocol runs on a real event loop over a transport that records what is written (and, as
uvloop's does, raises on a write after ``close``), fed bytes by the test as a client would send
them. The app answers each request with its path, once the test lets it (``gates``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.server.middleware import DISCONNECT_REASON
from app.server.uvicorn_hooks import ResponseNotDelivered, guarded_httptools


class RecordingTransport(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: asyncio.Protocol | None = None
        self.written = bytearray()
        self.closing = False
        self.closed = asyncio.Event()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}
        return addresses.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)
            self.loop.call_soon(self.closed.set)

    def lose(self) -> None:
        """The client is gone (a reset): the protocol is told, as the event loop tells it."""
        self.closing = True
        assert self.protocol is not None
        self.protocol.connection_lost(ConnectionResetError())
        self.closed.set()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@dataclass
class PathApp:
    """Answers 200 with the request's path once ``gates[path]`` is set (at once without one);
    records each request's scope state and what its ``send`` raised."""

    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    send_errors: dict[str, BaseException] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        self.started.append(path)
        self.states[path] = scope["state"]
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = message.get("more_body", False)
        if path in self.gates:
            await self.gates[path].wait()
        body = path.encode()
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
        try:
            await send(start)
            await send({"type": "http.response.body", "body": body})
        except OSError as exc:
            self.send_errors[path] = exc


def get(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path.encode()


def responses(written: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``written`` (bodies sized by content-length)."""
    answers = []
    rest = written
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(headers.get(b"content-length", b"0"))
        answers.append((int(lines[0].split()[1]), rest[:length]))
        rest = rest[length:]
    return answers


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connect(
    loop: asyncio.AbstractEventLoop,
    app: PathApp,
    *,
    read_timeout: float = 30.0,
    max_header_bytes: int = 65_536,
    refused: list[str] | None = None,
) -> tuple[HttpToolsProtocol, RecordingTransport]:
    """A connection of the guarded protocol; the codes of its refusals go to ``refused``."""
    config = uvicorn.Config(app, lifespan="off", log_config=None, proxy_headers=False)
    on_refused = refused.append if refused is not None else None
    protocol_class = guarded_httptools(read_timeout, max_header_bytes, on_refused)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = RecordingTransport(loop)
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


def run_until_closed(loop: asyncio.AbstractEventLoop, transport: RecordingTransport) -> None:
    loop.run_until_complete(asyncio.wait_for(transport.closed.wait(), timeout=30))
    loop.run_until_complete(asyncio.sleep(0))  # callbacks scheduled by the close


def test_pipelined_requests_before_a_malformed_one_are_answered_first(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    app = PathApp()
    refused: list[str] = []
    protocol, transport = connect(loop, app, refused=refused)
    with caplog.at_level(logging.INFO):
        protocol.data_received(get("/a") + get("/b") + b"GARBAGE \x00\x01 HTTP/1.1\r\n\r\n")
        protocol.data_received(b"MORE GARBAGE\r\n\r\n")  # not read: refused once
        run_until_closed(loop, transport)
    (first, second, (status, body)) = responses(bytes(transport.written))
    assert [first, second] == [(200, b"/a"), (200, b"/b")]
    assert status == 400
    assert json.loads(body)["error"] == {
        "code": "malformed_request",
        "message": "not a valid HTTP request (its request line, headers or chunked framing)",
        "details": [],
    }
    assert refused == ["malformed_request"]
    # One line says it, with the code: uvicorn's own ("Invalid HTTP request received.") is not
    # written as well.
    refusals = [r for r in caplog.records if getattr(r, "event", None) == "request_refused"]
    assert [(r.levelno, getattr(r, "code", None)) for r in refusals] == [
        (logging.WARNING, "malformed_request")
    ]
    assert not [r for r in caplog.records if r.name == "uvicorn.error"]
    assert app.send_errors == {}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_oversized_headers_after_a_pipelined_request_are_refused_after_its_answer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    app = PathApp(gates={"/a": asyncio.Event()})
    protocol, transport = connect(loop, app, max_header_bytes=200)
    protocol.data_received(get("/a") + b"GET /b HTTP/1.1\r\nx-big: ")
    protocol.data_received(b"a" * 300)  # /a is still being answered
    loop.run_until_complete(asyncio.sleep(0))
    assert transport.written == b"" and not transport.closing
    app.gates["/a"].set()
    run_until_closed(loop, transport)
    assert [status for status, _ in responses(bytes(transport.written))] == [200, 431]


def error_of(body: bytes) -> str:
    """The code of a refusal's body (the service's JSON error shape)."""
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"}
    code: str = error["code"]
    return code


@pytest.mark.parametrize("pieces", [1, 2, 7])
def test_headers_over_the_cap_are_431_however_they_arrive(
    loop: asyncio.AbstractEventLoop, pieces: int
) -> None:
    """Also a header block that ends within the read that carries it (one write of the whole
    request), which the byte count alone, taken as data arrives, let through."""
    app = PathApp()
    refused: list[str] = []
    protocol, transport = connect(loop, app, max_header_bytes=200, refused=refused)
    request = b"GET /big HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 300 + b"\r\n\r\n"
    step = -(-len(request) // pieces)
    for start in range(0, len(request), step):
        protocol.data_received(request[start : start + step])
    run_until_closed(loop, transport)
    ((status, body),) = responses(bytes(transport.written))
    assert (status, error_of(body)) == (431, "headers_too_large")
    assert b"200 bytes (XOR_MAX_HEADER_BYTES)" in body
    assert app.started == []
    assert refused == ["headers_too_large"]  # once, however many reads followed


@pytest.mark.parametrize(("over", "status"), [(0, 200), (1, 431)])
def test_the_cap_counts_request_line_and_headers_as_sent(
    loop: asyncio.AbstractEventLoop, over: int, status: int
) -> None:
    app = PathApp()
    request = b"POST /ok HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 100 + b"\r\n\r\n"
    protocol, transport = connect(loop, app, max_header_bytes=len(request) - over)
    protocol.data_received(request)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert [status for status, _ in responses(bytes(transport.written))] == [status]


def test_oversized_headers_pipelined_in_one_read_are_refused_after_the_answer_before(
    loop: asyncio.AbstractEventLoop,
) -> None:
    app = PathApp()
    protocol, transport = connect(loop, app, max_header_bytes=200)
    big = b"GET /big HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 300 + b"\r\n\r\n"
    protocol.data_received(get("/a") + big + get("/c"))
    run_until_closed(loop, transport)
    (first, (status, body)) = responses(bytes(transport.written))
    assert first == (200, b"/a")
    assert (status, error_of(body)) == (431, "headers_too_large")
    assert app.started == ["/a"]


def test_a_request_not_arriving_in_time_is_refused_after_the_answer_before_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    app = PathApp(gates={"/a": asyncio.Event()})
    refused: list[str] = []
    protocol, transport = connect(loop, app, read_timeout=0.01, refused=refused)
    protocol.data_received(get("/a") + b"GET /b HTTP/1.1\r\nhost")  # /b never finishes
    loop.run_until_complete(asyncio.sleep(0.05))  # /b's read deadline passes
    assert transport.written == b""
    app.gates["/a"].set()
    run_until_closed(loop, transport)
    (first, (status, body)) = responses(bytes(transport.written))
    assert first == (200, b"/a")
    assert (status, error_of(body)) == (408, "request_timeout")
    assert refused == ["request_timeout"]


def test_a_lost_connection_reaches_every_request_on_it(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn marks only the newest request disconnected: the one being answered wrote into
    a closed transport (a traceback, and a response logged as sent). Here its ``send`` raises
    and the pipelined one that never started is logged as not answered."""
    app = PathApp(gates={"/a": asyncio.Event()})
    protocol, transport = connect(loop, app)
    protocol.data_received(get("/a") + get("/b"))
    loop.run_until_complete(asyncio.sleep(0))
    assert app.started == ["/a"]
    with caplog.at_level(logging.INFO):
        transport.lose()
        app.gates["/a"].set()
        loop.run_until_complete(asyncio.sleep(0.01))
    assert isinstance(app.send_errors.get("/a"), ResponseNotDelivered)
    assert app.started == ["/a"] and transport.written == b""
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "pipelined_not_answered"]
    assert line.levelno == logging.INFO and line.count == 1  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_body_cut_off_by_the_read_deadline_tells_the_app_why(
    loop: asyncio.AbstractEventLoop,
) -> None:
    app = PathApp()
    protocol, transport = connect(loop, app, read_timeout=0.01)
    protocol.data_received(b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12345")
    run_until_closed(loop, transport)
    reason = app.states["/slow"][DISCONNECT_REASON]
    assert "did not arrive within 0.01 s" in reason and "XOR_REQUEST_TIMEOUT_SECONDS" in reason
    assert transport.written == b""


def test_each_request_on_a_kept_alive_connection_gets_the_whole_read_deadline(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The deadline's one timer per connection was armed by the first request: requests that
    come later are still given the whole deadline from their own first byte, and one that
    stalls is refused once it has passed, not before."""
    app = PathApp()
    protocol, transport = connect(loop, app, read_timeout=0.3)
    for index in range(4):  # 0.4 s of complete requests, past the first request's deadline
        protocol.data_received(get(f"/{index}"))
        loop.run_until_complete(asyncio.sleep(0.1))
    assert not transport.closing
    started = loop.time()
    protocol.data_received(b"GET /stalled HTTP/1.1\r\nhost")
    run_until_closed(loop, transport)
    waited = loop.time() - started
    assert 0.25 <= waited <= 1.0, waited
    assert [status for status, _ in responses(bytes(transport.written))] == [200] * 4 + [408]


def test_a_connection_lost_leaves_no_deadline_timer(loop: asyncio.AbstractEventLoop) -> None:
    app = PathApp()
    protocol, transport = connect(loop, app, read_timeout=0.05)
    protocol.data_received(b"GET /half HTTP/1.1\r\nhost")
    transport.lose()
    loop.run_until_complete(asyncio.sleep(0.1))  # the deadline would have passed
    assert transport.written == b""
    assert protocol._timer is None  # type: ignore[attr-defined]


def test_an_answered_request_is_freed_without_the_garbage_collector(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The send that reports undeliverable responses refers to its request; once answered,
    the request must not stay in a reference cycle: freed by reference counting, it leaves the
    collector nothing to do (cyclic garbage per request made a 1.5 ms collection every ~50 ms
    at 32 connections)."""
    app = PathApp()
    protocol, transport = connect(loop, app)
    gc.collect()
    gc.disable()
    try:
        protocol.data_received(get("/first"))
        loop.run_until_complete(asyncio.sleep(0.01))
        first = weakref.ref(protocol.cycle)
        protocol.data_received(get("/second"))  # the protocol moves on to the next request
        loop.run_until_complete(asyncio.sleep(0.01))
        assert [status for status, _ in responses(bytes(transport.written))] == [200, 200]
        assert first() is None
    finally:
        gc.enable()
