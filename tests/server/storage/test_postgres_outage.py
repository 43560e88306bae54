"""PostgreSQL stopped for a few seconds under a running ``fedge serve
--database`` (and under two workers): requests answer 503
``database_unavailable`` meanwhile, the servers recover by themselves when
the database is back (same processes), and the updates acknowledged before
the outage are in the round they close."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.live_server import running
from tests.helpers.postgres import PostgresCluster, started
from tests.server.helpers import auth, constant_update, json_at, settled
from tests.server.http.test_http import ROUND_FLAGS, Device
from tests.server.storage.test_postgres_workers import (
    DEVICES,
    Fleet,
    Weights,
    assert_close,
    closed_weights,
    health,
    reference,  # noqa: F401  (the fixture: round 1's aggregate by one SQLite server)
    workers,
)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: the test stops it, others must not notice."""
    with started() as cluster:
        yield cluster


def until_stored(device: Device, url: str, body: bytes) -> list[requests.Response]:
    """Upload until the server answers something other than 503 (at most 30 s)."""
    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers.append(device.upload(url, 1, body))
        if answers[-1].status_code != 503:
            break
        time.sleep(0.2)
    return answers


def test_the_server_answers_503_while_postgres_is_down_and_recovers(
    own_cluster: PostgresCluster, tiny_keras: Path, tmp_path: Path
) -> None:
    url = own_cluster.new_database("outage")
    args = ["--model", str(tiny_keras), *ROUND_FLAGS, "--database", url]
    with running(tmp_path / "data", args, tmp_path / "log") as server:
        devices = [Device(server.url) for _ in range(3)]
        tasks = [d.task() for d in devices]  # every device takes its seat
        base = tasks[0]["base_checkpoint"]
        before = devices[0].upload(server.url, 1, constant_update(1, base, 1.0))

        own_cluster.pause()
        try:
            during = devices[1].upload(server.url, 1, constant_update(1, base, 2.0))
            current = requests.get(f"{server.url}/v1/rounds/current", timeout=30)
            task = requests.post(
                f"{server.url}/v1/tasks", json={}, headers=auth(devices[2].token), timeout=30
            )
        finally:
            own_cluster.resume()

        after = until_stored(devices[1], server.url, constant_update(1, base, 2.0))
        last = devices[2].upload(server.url, 1, constant_update(1, base, 6.0))
        closed = settled(json_at(server.url), 1)
        body = requests.get(
            f"{server.url}/v1/checkpoints/{closed['result_checkpoint']}",
            headers=auth(devices[0].token),
            timeout=30,
        ).content
        still_running = server.process.poll() is None

    assert before.status_code == 201
    for refused in (during, current, task):
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "database_unavailable"
        assert refused.headers["Retry-After"] == "1"
    assert [a.status_code for a in after[:-1]] == [503] * (len(after) - 1)
    assert after[-1].status_code == 201, after[-1].text
    assert last.status_code == 201, last.text
    assert still_running and closed["state"] == "closed"
    assert closed["metrics"]["updates"] == 3  # the one acknowledged before is counted
    np.testing.assert_allclose(decode_checkpoint(body).weights["dense/bias"], [3.0, 3.0])


def test_two_workers_ride_out_an_outage_with_one_aggregator_after_it(
    own_cluster: PostgresCluster,
    reference: Weights,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Both workers lose the database (and the aggregator its lease's
    connection); they answer 503 meanwhile, and after it one of them holds
    the lease again, rebuilds the sum, and round 1 closes with every update."""
    url = own_cluster.new_database("outage_workers")
    with workers(url, tmp_path) as servers:
        urls = [s.url for s in servers]
        fleet = Fleet.enrol(urls)
        half = DEVICES // 2
        first = fleet.upload(list(range(half)), lambda i: urls[i % 2])
        assert {a.status_code for a in first} == {201}

        own_cluster.pause()
        try:
            during = [requests.get(f"{u}/healthz", timeout=30) for u in urls]
        finally:
            own_cluster.resume()

        for i in range(half, DEVICES):  # each device retries while it is told 503
            answers = until_stored_on(fleet, i, urls[i % 2])
            assert answers[-1].status_code == 201, answers[-1].text
        weights = closed_weights(urls[1], fleet)
        holders = [health(s)["aggregator"] for s in servers]

    for refused in during:
        assert refused.status_code == 503 and refused.json()["code"] == "database_unavailable"
    assert_close(weights, reference)
    assert holders[0] is not None and holders[0]["worker_id"] == holders[1]["worker_id"]
    assert sorted(h["this_worker"] for h in holders) == [False, True]


def until_stored_on(fleet: Fleet, index: int, url: str) -> list[requests.Response]:
    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers.append(fleet.devices[index].upload(url, 1, fleet.body(index)))
        if answers[-1].status_code != 503:
            break
        time.sleep(0.2)
    return answers
