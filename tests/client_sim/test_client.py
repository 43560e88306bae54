"""The device's protocol client against a recording transport: which
credentials each call sends, with no server and no network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedge.client_sim.client import FedgeClient
from fedge.client_sim.transport import Reply


@dataclass
class RecordingTransport:
    """Answers every request with ``reply`` and remembers the token sent."""

    reply: Reply
    tokens: list[str | None] = field(default_factory=list)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
    ) -> Reply:
        self.tokens.append(token)
        return self.reply

    def close(self) -> None:
        return None


def ok(body: bytes) -> Reply:
    return Reply(200, body, "application/json")


def test_a_call_sends_exactly_the_token_it_is_given() -> None:
    transport = RecordingTransport(ok(b"{}"))
    client = FedgeClient(transport)
    client.token = "the-device-token"

    client._call("GET", "/v1/rounds/current", token="another-token")
    client._call("GET", "/v1/rounds/current", token=None)

    assert transport.tokens == ["another-token", None]


def test_enrolment_sends_no_token_and_later_calls_send_the_new_one() -> None:
    transport = RecordingTransport(ok(b'{"device_id": "d-1", "token": "t-1", "task": null}'))
    client = FedgeClient(transport)
    client.token = "left-over"

    client.enrol()
    client.task(idle=True, charging=False, unmetered=False)

    assert transport.tokens == [None, "t-1"]
