"""Raw sockets as an HTTP client that the test controls byte by byte."""

from __future__ import annotations

import socket


def read_until_closed(sock: socket.socket, timeout: float = 15) -> bytes:
    """Everything the server sends on ``sock`` until it closes the connection."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received
