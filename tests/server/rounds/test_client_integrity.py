"""The device client against a real server: what it refuses to trust."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.client_sim.device.transport import HttpTransport
from fedge.server.http.context import context_of
from fedge.server.http.serve import BackgroundServer
from tests.server.conftest import AppFactory, on_each_store
from tests.server.helpers import rows_of

# The Python client against each store.
app_database = pytest.fixture(on_each_store, name="app_database")


def test_a_checkpoint_whose_bytes_do_not_match_its_id_is_refused(make_app: AppFactory) -> None:
    app = make_app()
    with BackgroundServer(app) as server:
        client = FedgeClient(HttpTransport(server.url))
        client.enrol()
        base = client.task(idle=True, charging=False, unmetered=False)["task"]["base_checkpoint"]
        path: Path = context_of(app).config.data_dir / "checkpoints" / f"{base}.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[:-4] + b"\x00\x00\x80\x7f")  # the last weight flipped to inf

        with pytest.raises(ProtocolError) as caught:
            client.checkpoint(base)

        assert caught.value.code == "checkpoint_mismatch"
        client.transport.close()


def test_a_retried_enrolment_does_not_create_a_second_device(make_app: AppFactory) -> None:
    app = make_app()
    with BackgroundServer(app) as server:
        client = FedgeClient(HttpTransport(server.url))

        client.enrol()

        ((request,),) = rows_of(app, "SELECT enrol_request FROM devices")
        assert request is not None  # the client sent a request id the server can match
        client.transport.close()


def test_a_call_sends_exactly_the_token_it_is_given(make_app: AppFactory) -> None:
    """Regression: ``_call`` dropped a string token and sent its own."""
    with BackgroundServer(make_app()) as server:
        a, b = FedgeClient(HttpTransport(server.url)), FedgeClient(HttpTransport(server.url))
        a.enrol()
        b.enrol()
        a.token = "not-a-token"  # what a call would send if it ignored its argument
        body = {"idle": True, "charging": False, "unmetered": False}

        given = a._call("POST", "/v1/tasks", json_body=body, token=b.token)
        with pytest.raises(ProtocolError) as without:
            a._call("POST", "/v1/tasks", json_body=body, token=None)

        assert given.status == 200
        assert without.value.status == 401
        a.transport.close()
        b.transport.close()


def test_later_calls_send_the_token_enrolment_returned(make_app: AppFactory) -> None:
    with BackgroundServer(make_app()) as server:
        client = FedgeClient(HttpTransport(server.url))
        client.token = "left-over"

        client.enrol()
        answer = client.task(idle=True, charging=False, unmetered=False)

        assert client.token != "left-over"
        assert answer["task"] is not None
        client.transport.close()
