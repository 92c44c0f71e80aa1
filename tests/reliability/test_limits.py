"""Limits on a real server: one client must not exhaust memory or workers.

Measured with uvicorn 0.54 on h11 (no httptools installed): bodies over the limit are refused
unread, deep JSON is a 400, too many pairs a 422, and slow clients do not block others (one
event loop, no worker per connection). Not yet bounded, and marked xfail with the fix in the
report: connections that never finish their headers (or never send a byte) are held forever,
headers are not capped in size.

A client that leaves part-way (or is cut off at the read deadline) leaves one 499 line, not a
500 with a traceback; pipelined requests before a malformed one are all answered, in order.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import Server
from tests.support.sockets import read_until_closed
from tests.support.waiting import wait_for

JSON = {"Content-Type": "application/json"}


def _address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def test_declared_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    with socket.create_connection(_address(server), timeout=5) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1073741824\r\n\r\n"
        )
        answer = b""
        while b"payload_too_large" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"payload_too_large" in answer


def test_too_many_pairs_is_a_422(server: Server) -> None:
    body = {"instances": [[0, 1]] * 10_001}
    response = httpx.post(f"{server.url}/predict", json=body, timeout=10)
    assert response.status_code == 422
    assert "at most 10000 allowed" in response.json()["error"]["message"]
    response = httpx.post(f"{server.url}/v1/models/xor:predict", json=body, timeout=10)
    assert response.status_code == 400


@pytest.mark.parametrize("depth", [1_000, 100_000, 500_000])
def test_deeply_nested_json_is_a_400(server: Server, depth: int) -> None:
    body = b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    for path, headers in (
        ("/predict", JSON),
        ("/v1/models/xor:predict", {}),
        ("/v2/models/xor/infer", {}),
    ):
        response = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=10)
        assert response.status_code in (400, 422), (path, response.text)
    assert httpx.get(f"{server.url}/health").status_code == 200


@pytest.fixture
def slow_clients(server: Server) -> Iterator[list[socket.socket]]:
    """50 connections: idle, half-sent headers, half-sent bodies."""
    sockets = []
    for index in range(50):
        sock = socket.create_connection(_address(server), timeout=5)
        if index % 3 == 1:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty")
        elif index % 3 == 2:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"inp'
            )
        sockets.append(sock)
    yield sockets
    for sock in sockets:
        sock.close()


def test_slow_clients_do_not_block_other_clients(
    server: Server, slow_clients: list[socket.socket]
) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(50):
            response = client.post("/predict", json={"inputs": [1, 0]})
            assert response.status_code == 200
    assert time.monotonic() - started < 5


def test_a_client_that_never_finishes_its_request_is_disconnected(
    server: Server, slow_clients: list[socket.socket]
) -> None:
    time.sleep(6)  # beyond uvicorn's timeout_keep_alive (5 s)
    for sock in slow_clients[:3]:
        sock.settimeout(0.5)
        try:
            answer: bytes | None = sock.recv(4096)
        except TimeoutError:
            answer = None  # still held open by the server
        assert answer is not None and (answer == b"" or answer.startswith(b"HTTP/1.1 408"))


@pytest.mark.parametrize("size", [70_000, 1_000_000])
def test_huge_headers_are_refused(server: Server, size: int) -> None:
    """431 in the service's error shape: over the default 64 KiB cap by a little (the whole
    request in one read) and by a lot (in many)."""
    series = 'xor_http_refused_total{code="headers_too_large"}'
    before = _metric(server, series)
    response = httpx.get(f"{server.url}/health/live", headers={"X-Big": "a" * size})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert _metric(server, series) == before + 1


def test_what_is_not_http_is_a_400_in_the_error_shape_and_counted(server: Server) -> None:
    series = 'xor_http_refused_total{code="malformed_request"}'
    before = _metric(server, series)
    with socket.create_connection(_address(server), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
        answer = read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/json" in head
    assert json.loads(body)["error"]["code"] == "malformed_request"
    assert _metric(server, series) == before + 1


def _metric(server: Server, series: str) -> float:
    """The value of one sample of /metrics, named with its labels as exposed."""
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"{series} is not exposed")


# --- clients that go away, and pipelining (issue 12, cases 4 and 5) ---------------------------

PAIR = b'{"inputs": [0, 1]}'


def _post(request_id: str, body: bytes = PAIR, length: int | None = None) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (request_id.encode(), len(body) if length is None else length, body)
    )


def _lines_of(server: Server, request_id: str) -> list[dict[str, Any]]:
    return [line for line in server.log_lines() if line.get("request_id") == request_id]


def _statuses(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics").text
    pattern = r'^xor_http_requests_total\{method="POST",route="/predict",status="(\d+)"\} (\S+)$'
    return {status: float(count) for status, count in re.findall(pattern, text, re.M)}


@pytest.mark.parametrize("cut_off_by", ["client", "read deadline"])
def test_a_request_whose_body_never_arrives_whole_is_a_499_not_a_500(
    server: Server, cut_off_by: str
) -> None:
    """Half a body, then the client goes (or stalls until the server's read deadline, 3 s):
    one INFO (client) or WARNING (deadline) line with 499, no traceback, no 5xx counted."""
    request_id = f"half-body-{cut_off_by.replace(' ', '-')}"
    before = _statuses(server)
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_post(request_id, b'{"inputs"', length=100))
        if cut_off_by == "read deadline":
            assert read_until_closed(sock) == b""  # the server closed it, with nothing to say
    wait_for(lambda: bool(_lines_of(server, request_id)), timeout=15, what="its line")
    (line,) = _lines_of(server, request_id)
    assert line["status"] == 499 and "exc_info" not in line
    if cut_off_by == "client":
        assert line["level"] == "INFO" and "client disconnected" in line["disconnected"]
    else:
        assert line["level"] == "WARNING" and "XOR_REQUEST_TIMEOUT_SECONDS" in line["disconnected"]
    assert not [x for x in server.log_lines() if x.get("level") in ("ERROR", "CRITICAL")]
    after = _statuses(server)
    assert after.get("499", 0) == before.get("499", 0) + 1
    assert after.get("500", 0) == 0


def test_pipelined_requests_before_a_malformed_one_are_all_answered(server: Server) -> None:
    """Two valid requests and a malformed one in one write: the two answers, then the 400,
    in order; each answer logged as sent was delivered, and no traceback."""
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_post("pipelined-1") + _post("pipelined-2") + b"NOT HTTP\x00\r\n\r\n")
        received = read_until_closed(sock)
    assert received.count(b"HTTP/1.1 ") == 3, received
    first, second, third = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and b"x-request-id: pipelined-1" in first
    assert second.startswith(b"200 ") and b"x-request-id: pipelined-2" in second
    assert third.startswith(b"400 ") and b"connection: close" in third
    ids = ("pipelined-1", "pipelined-2")
    wait_for(lambda: all(_lines_of(server, i) for i in ids), timeout=5, what="their lines")
    for request_id in ids:
        assert [line["status"] for line in _lines_of(server, request_id)] == [200]
    assert not [x for x in server.log_lines() if x.get("level") in ("ERROR", "CRITICAL")]
