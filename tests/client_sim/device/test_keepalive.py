"""The thread fleet's keep-alive connections (``KeepAlivePool``) on a real HTTP server.

Every request still reaches the server with the device's token and body;
a few connections carry many devices' requests; a connection the server
closed is not reused; no answer is a TransportError, which the client
retries."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from fedge.client_sim.device.client import FedgeClient, RetryPolicy
from fedge.client_sim.device.keepalive import (
    KeepAlivePool,
    PooledTransport,
    device_transport,
    direct_http,
    fleet_connections,
)
from fedge.client_sim.device.transport import HttpTransport, TransportError
from tests.helpers.handler_server import handler_server


@dataclass
class Seen:
    """What the server saw: each request, and the client ports they came from."""

    requests: list[dict[str, object]] = field(default_factory=list)
    ports: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Close the connection after the answer to these paths (without saying so).
    drop_after: set[str] = field(default_factory=set)
    dropped: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, body: bytes) -> None:
            with seen.lock:
                seen.ports.add(self.client_address[1])
                seen.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "auth": self.headers.get("Authorization", ""),
                        "type": self.headers.get("Content-Type", ""),
                        "body": body,
                    }
                )
            if self.path == "/busy":
                reply, status = b'{"code": "busy"}', 503
            else:
                reply, status = json.dumps({"echo": body.decode()}).encode(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            if status == 503:
                self.send_header("Retry-After", "7")
            self.end_headers()
            self.wfile.write(reply)
            if self.path in seen.drop_after:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                seen.dropped.set()

        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            self._answer(self.rfile.read(int(self.headers["Content-Length"])))

        def log_message(self, *args: object) -> None:
            return None

    with handler_server(Handler) as url:
        yield url, seen


def test_each_request_reaches_the_server_with_its_token_and_body(
    server: tuple[str, Seen],
) -> None:
    url, seen = server
    pool = KeepAlivePool(url, 2)
    try:
        transport = pool.transport()
        as_json = transport.request("POST", "/v1/tasks", token="t-1", json_body={"idle": True})
        upload = transport.request("POST", "/v1/rounds/3/updates", token="t-2", data=b"\x00ab")
        busy = transport.request("GET", "/busy", token="t-3")
    finally:
        pool.close()
    assert (as_json.status, as_json.json()) == (200, {"echo": '{"idle": true}'})
    assert as_json.content_type == "application/json"
    assert (busy.status, busy.retry_after_s) == (503, 7.0)
    assert [(r["method"], r["path"], r["auth"], r["type"]) for r in seen.requests] == [
        ("POST", "/v1/tasks", "Bearer t-1", "application/json"),
        ("POST", "/v1/rounds/3/updates", "Bearer t-2", "application/octet-stream"),
        ("GET", "/busy", "Bearer t-3", ""),
    ]
    assert upload.status == 200 and seen.requests[1]["body"] == b"\x00ab"


def test_many_devices_share_a_few_connections(server: tuple[str, Seen]) -> None:
    url, seen = server
    pool = KeepAlivePool(url, 4)
    try:
        transports = [pool.transport() for _ in range(50)]
        with ThreadPoolExecutor(max_workers=4) as workers:
            replies = list(
                workers.map(
                    lambda i: transports[i].request("POST", "/x", token=f"d{i}", json_body=i),
                    range(50),
                )
            )
    finally:
        pool.close()
    assert [r.json() for r in replies] == [{"echo": str(i)} for i in range(50)]
    assert sorted(str(r["auth"]) for r in seen.requests) == sorted(
        f"Bearer d{i}" for i in range(50)
    )
    assert 1 <= len(seen.ports) <= 4  # not one connection per request or per device


def test_a_connection_the_server_closed_is_not_reused(server: tuple[str, Seen]) -> None:
    url, seen = server
    seen.drop_after.add("/first")
    pool = KeepAlivePool(url, 1)
    try:
        transport = pool.transport()
        assert transport.request("GET", "/first").status == 200
        assert seen.dropped.wait(10)
        # The server shut that connection after answering (no Connection:
        # close): the next request goes on a new one, and is answered.
        assert transport.request("GET", "/second").status == 200
    finally:
        pool.close()
    assert [r["path"] for r in seen.requests] == ["/first", "/second"]
    assert len(seen.ports) == 2


def test_no_answer_is_a_transport_error_that_the_client_retries() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = KeepAlivePool(f"http://127.0.0.1:{port}", 2)
    try:
        with pytest.raises(TransportError, match="GET /v1/x"):
            pool.transport().request("GET", "/v1/x")
        client = FedgeClient(pool.transport(), RetryPolicy(attempts=3, base_delay_s=0.0))
        with pytest.raises(TransportError):
            client.get("/v1/x")
        assert client.retries == 2
    finally:
        pool.close()


def test_only_plain_http_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert direct_http("http://127.0.0.1:8750")
    assert not direct_http("https://fedge.example.org")
    with pytest.raises(ValueError, match="plain http"):
        KeepAlivePool("https://fedge.example.org", 2)
    monkeypatch.setenv("http_proxy", "http://proxy.example.org:3128")
    assert not direct_http("http://fedge.example.org:8750")
    monkeypatch.setenv("no_proxy", "fedge.example.org")
    assert direct_http("http://fedge.example.org:8750")


def test_a_fleet_uses_the_pool_on_plain_http_and_requests_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    plain = fleet_connections(4, "http://127.0.0.1:8750")
    tls = fleet_connections(4, "https://fedge.example.org")
    try:
        assert isinstance(plain, KeepAlivePool)
        assert isinstance(device_transport(plain, "http://127.0.0.1:8750"), PooledTransport)
        assert not isinstance(tls, KeepAlivePool)
        assert isinstance(device_transport(tls, "https://fedge.example.org"), HttpTransport)
    finally:
        plain.close()
        tls.close()
