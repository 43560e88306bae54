"""Training leases of a real ``fedge serve --aggregation async`` survive a
kill -9: after the restart a device that held a lease still uploads on its
base version (staleness within the bound), asking again gives it the same
task, and the concurrency count is rebuilt from the store (not reset to
zero, which would let more devices train at once than ``--concurrency``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from fedge.server.http.app import shutdown
from tests.helpers.live_server import running
from tests.helpers.stores import Stores
from tests.server.conftest import AppFactory, DatabaseOf, on_each_store
from tests.server.helpers import auth, constant_update, join, json_at, settled
from tests.server.http.test_http import Device
from tests.server.rounds.test_async import async_app
from tests.server.rounds.test_rounds import enrol

FLAGS = [
    "--aggregation", "async", "--buffer", "2", "--concurrency", "3",
    "--max-staleness", "2", "--max-update-norm", "1000", "--deadline", "300",
]  # fmt: skip


@pytest.fixture
def app_database(stores: Stores) -> DatabaseOf:
    return on_each_store(stores)


def ask(device: Device) -> dict[str, Any]:
    response = requests.post(
        f"{device.url}/v1/tasks", json={}, headers=auth(device.token), timeout=10
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_leases_and_the_concurrency_count_survive_kill_9(tiny_keras: Path, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    args = ["--model", str(tiny_keras), *FLAGS]
    with running(data, args, log) as server:
        a, b, c = (Device(server.url) for _ in range(3))
        base1 = a.task()["base_checkpoint"]
        b.task()
        task_c = c.task()
        assert a.upload(server.url, 1, constant_update(1, base1, 1.0)).status_code == 201
        assert b.upload(server.url, 1, constant_update(1, base1, 2.0)).status_code == 201
        assert settled(json_at(server.url), 1)["state"] == "closed"
        server.kill_hard()  # version 2 is open; C still trains on version 1

    with running(data, args, log) as server:
        c.url = server.url
        d, e, f = (Device(server.url) for _ in range(3))
        again = ask(c)  # the same lease: no second slot
        assert again["task"] is not None and again["task"]["round_id"] == 1
        assert again["task"]["deadline_at"] == task_c["deadline_at"]
        assert d.task()["round_id"] == 2
        assert e.task()["round_id"] == 2
        refused = ask(f)  # C, D and E train: three of three
        assert refused["task"] is None and refused["reason"] == "concurrency_full", refused
        receipt = c.upload(server.url, 1, constant_update(1, base1, 3.0))
        assert receipt.status_code == 201, receipt.text
        assert receipt.json()["round_id"] == 2  # in version 2's buffer, staleness 1
        assert f.task()["round_id"] == 2  # C's slot is free again


def test_leases_are_rebuilt_from_each_store(make_app: AppFactory, tmp_path: Path) -> None:
    settings = {"buffer": 2, "concurrency": 2, "max_staleness": 1}
    app = async_app(make_app, tmp_path / "data", **settings)
    client = app.test_client()
    a, b, c = (enrol(client)[1] for _ in range(3))
    held = join(client, a)
    join(client, b)
    shutdown(app)

    app = async_app(make_app, tmp_path / "data", **settings)
    client = app.test_client()
    again = client.post("/v1/tasks", json={}, headers=auth(a)).get_json()
    refused = client.post("/v1/tasks", json={}, headers=auth(c)).get_json()
    stats = client.get("/v1/stats").get_json()["aggregation"]

    assert again["task"]["deadline_at"] == held["deadline_at"]  # the same lease, not a new one
    assert (refused["task"], refused["reason"]) == (None, "concurrency_full")
    assert stats["concurrency"] == {"in_use": 2, "limit": 2}


def test_a_lease_granted_again_on_the_same_version_is_rebuilt_from_its_new_time(
    make_app: AppFactory, tmp_path: Path
) -> None:
    settings = {"buffer": 2, "concurrency": 2, "max_staleness": 1, "lease_s": 1.0}
    app = async_app(make_app, tmp_path / "data", **settings)
    client = app.test_client()
    a = enrol(client)[1]
    first = join(client, a)
    time.sleep(1.2)  # the lease ended; asking again grants a new one on version 1
    second = join(client, a)
    assert second["round_id"] == first["round_id"] == 1
    assert second["deadline_at"] > first["deadline_at"]
    shutdown(app)

    app = async_app(make_app, tmp_path / "data", **settings)
    client = app.test_client()
    stats = client.get("/v1/stats").get_json()["aggregation"]
    again = client.post("/v1/tasks", json={}, headers=auth(a)).get_json()

    assert stats["concurrency"]["in_use"] == 1
    assert again["task"]["deadline_at"] == second["deadline_at"]
