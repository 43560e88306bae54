"""A fleet's shared connection pool (``shared_session``) on a real HTTP server.

requests reads the environment at every request of a session that trusts
it: a ``.netrc`` lookup and the proxy variables each time, and a ``.netrc``
entry for the server's host replaces the device's bearer token with its
basic credentials. The fleet's session reads the environment once.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from fedge.client_sim.device.transport import HttpTransport, shared_session
from tests.helpers.handler_server import handler_server


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[str]]]:
    """A server that notes each request's Authorization header."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return None

    with handler_server(Handler) as url:
        yield url, seen


def test_a_netrc_entry_does_not_replace_the_device_token(
    echo_server: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = echo_server
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = shared_session(4, url)
    try:
        transport = HttpTransport(url, session=session)
        for _ in range(3):
            assert transport.request("GET", "/v1/x", token="device-token").status == 200
    finally:
        session.close()
    assert seen == ["Bearer device-token"] * 3


def test_the_environment_is_read_once_not_per_request(
    echo_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests.sessions

    url, seen = echo_server
    calls: list[str] = []
    original = requests.sessions.get_netrc_auth

    def counting(request_url: str, raise_errors: bool = False) -> object:
        calls.append(request_url)
        return original(request_url, raise_errors)

    monkeypatch.setattr(requests.sessions, "get_netrc_auth", counting)
    session = shared_session(4, url)
    try:
        transport = HttpTransport(url, session=session)
        for _ in range(5):
            transport.request("GET", "/v1/x", token="t")
    finally:
        session.close()
    assert len(seen) == 5
    assert calls == []
