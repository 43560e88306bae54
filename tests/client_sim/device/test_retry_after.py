"""The device client waits as long as the server's ``Retry-After`` says.

A refusal for now (429 with a code, or 503) carries ``Retry-After``. The
client used to retry on its own backoff (50 ms doubling, full jitter) and
come back long before the server asked it to, so a rate-limited fleet
hammered the server with requests that were sure to be refused. A real
HTTP server here (the standard library's, on loopback) answers as told.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from fedge.client_sim.device.client import FedgeClient, ProtocolError, RetryPolicy
from fedge.client_sim.device.transport import HttpTransport
from tests.helpers.handler_server import handler_server


@dataclass
class Script:
    """What the server answers, in order: (status, Retry-After or None)."""

    answers: list[tuple[int, str | None]]
    seen: list[float] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script(answers=[])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.seen.append(time.monotonic())
            status, retry_after = script.answers.pop(0) if script.answers else (200, None)
            body = json.dumps(
                {"ok": True} if status == 200 else {"code": "rate_limited", "message": "slow down"}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    with handler_server(Handler) as url:
        yield url, script


def test_a_429_is_retried_after_the_server_s_retry_after(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(429, "1"), (503, "1")]
    client = FedgeClient(HttpTransport(url), RetryPolicy(attempts=5, max_delay_s=0.1))

    reply = client._call("GET", "/v1/anything", token=None)

    assert reply.status == 200
    gaps = [b - a for a, b in zip(script.seen, script.seen[1:], strict=False)]
    assert len(gaps) == 2
    # Each retry came no sooner than the server asked (the own backoff is at most 0.1 s).
    assert all(gap >= 0.95 for gap in gaps), gaps


def test_a_retry_after_past_the_client_s_patience_is_an_error_now(
    server: tuple[str, Script],
) -> None:
    """A server (or a hostile proxy) asking for an hour does not hold the
    device's thread for an hour: the refusal is raised at once, its code kept."""
    url, script = server
    script.answers = [(429, "3600")]
    client = FedgeClient(HttpTransport(url), RetryPolicy(attempts=5, max_retry_after_s=30.0))

    with pytest.raises(ProtocolError) as refused:
        client._call("GET", "/v1/anything", token=None)

    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert len(script.seen) == 1


def test_an_unreadable_retry_after_falls_back_to_the_client_s_backoff(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.answers = [(429, "soon"), (429, "-5")]
    client = FedgeClient(HttpTransport(url), RetryPolicy(attempts=5, max_delay_s=0.1))

    assert client._call("GET", "/v1/anything", token=None).status == 200
    assert len(script.seen) == 3
