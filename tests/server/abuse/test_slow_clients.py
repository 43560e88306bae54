"""Attack: slow clients (issue 22).

Before: 50 connections trickling a request byte by byte were never timed out
(waitress's ``channel_timeout`` counts inactivity only, and the connection
limit was 2,000). Now a request's headers must arrive within
``request_header_timeout_s`` and the whole request within
``request_timeout_s`` of its first byte, however steadily it trickles, and
one address holds at most ``max_connections_per_address`` connections.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.server.abuse.live import serve


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def connect(stack: ExitStack, url: str) -> socket.socket:
    sock = stack.enter_context(socket.create_connection(address(url), timeout=10))
    sock.settimeout(0)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset)."""
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def trickle(socks: list[socket.socket], prefix: bytes, seconds: float) -> Iterator[float]:
    """Send ``prefix`` then one byte every 0.1 s on every socket; yields the
    time each socket was found closed by the server."""
    started = time.monotonic()
    for sock in socks:
        sock.sendall(prefix)
    open_socks = set(socks)
    while open_socks and time.monotonic() - started < seconds:
        for sock in list(open_socks):
            with contextlib.suppress(OSError):  # closed: recv says so
                sock.send(b"a")
            if closed_by_server(sock):
                open_socks.discard(sock)
                yield time.monotonic() - started
        time.sleep(0.1)


def test_trickling_headers_are_cut_at_the_header_deadline(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"request_header_timeout_s": 1.0, "request_timeout_s": 3.0}
    with serve(tmp_path, **settings) as live, ExitStack() as stack:
        socks = [connect(stack, live.url) for _ in range(50)]
        closed_at = list(trickle(socks, b"GET /healthz HTTP/1.1\r\nX-Slow: ", seconds=8.0))
        answered = requests.get(f"{live.url}/healthz", timeout=10)

    assert len(closed_at) == 50
    assert max(closed_at) < 4.0  # 1 s deadline, checked every second or at the next byte
    assert answered.status_code == 200


def test_a_trickling_body_is_cut_at_the_request_deadline(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"request_header_timeout_s": 1.0, "request_timeout_s": 2.0}
    head = (
        b"POST /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 60000\r\n\r\n"
    )
    with serve(tmp_path, **settings) as live, ExitStack() as stack:
        socks = [connect(stack, live.url) for _ in range(10)]
        closed_at = list(trickle(socks, head, seconds=8.0))

    assert len(closed_at) == 10
    assert min(closed_at) > 1.5 and max(closed_at) < 5.0


def test_one_address_holds_at_most_its_share_of_connections(tmp_path: Path) -> None:
    with serve(tmp_path, max_connections_per_address=10) as live, ExitStack() as stack:
        socks = [connect(stack, live.url) for _ in range(15)]
        time.sleep(1.0)  # the server has accepted them all
        refused = [sock for sock in socks if closed_by_server(sock)]
        for sock in socks[:1]:
            sock.close()
        time.sleep(0.5)
        answered = requests.get(f"{live.url}/healthz", timeout=10)

    assert len(refused) == 5
    assert answered.status_code == 200
