"""Several ``fedge serve --database`` workers on one PostgreSQL database and
one data directory, over real HTTP, with one elected aggregator.

The same updates of a fleet of 200 devices (random deltas, one per
device, sent to the workers in turn; two and three workers) close round 1
into the aggregate a single SQLite server makes of them (1e-6: the sum's
order differs); an event committed by one worker
reaches an SSE stream on the other; kill -9 of a worker that is not the
aggregator loses no receipted update; kill -9 of the aggregator mid-round
hands the lease to the other worker within 5 s, which rebuilds the sum
from the stored updates and closes the round once, with the same aggregate;
an aggregator that hangs (SIGSTOP) loses the lease within its timeout, and
steps down when it wakes, without a second close.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from numpy.typing import NDArray

from fedge.wire.update_codec import Update, UpdateMeta, decode_checkpoint, encode_update
from tests.helpers.live_server import LiveServer, running
from tests.helpers.postgres import PostgresCluster
from tests.helpers.subscriber import subscribed, take
from tests.server.helpers import auth, json_at, settled
from tests.server.http.test_http import Device

DEVICES = 200  # a round's target: every device's update
FLAGS = ["--rounds-target", str(DEVICES), "--rounds-min", str(DEVICES), "--deadline", "600"]
ADMIN = auth("admin-secret")  # tests.helpers.live_server.start's default
Weights = dict[str, NDArray[Any]]


def update(round_id: int, base: str, shapes: dict[str, tuple[int, ...]], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    deltas = {n: (0.01 * rng.normal(size=s)).astype(np.float32) for n, s in shapes.items()}
    meta = UpdateMeta(round_id=round_id, base_checkpoint=base, num_examples=1 + seed % 5)
    return encode_update(Update(meta=meta, deltas=deltas))


def checkpoint(url: str, token: str, checkpoint_id: str) -> Weights:
    body = requests.get(
        f"{url}/v1/checkpoints/{checkpoint_id}", headers=auth(token), timeout=30
    ).content
    return decode_checkpoint(body).weights


@dataclass(frozen=True)
class Fleet:
    """Devices enrolled on the workers in turn, each with its round-1 seat."""

    devices: list[Device]
    base: str
    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def enrol(cls, urls: list[str]) -> Fleet:
        devices = [Device(urls[i % len(urls)]) for i in range(DEVICES)]
        tasks = [d.task() for d in devices]
        base = tasks[0]["base_checkpoint"]
        weights = checkpoint(urls[0], devices[0].token, base)
        return cls(devices, base, {n: w.shape for n, w in weights.items()})

    def body(self, index: int) -> bytes:
        return update(1, self.base, self.shapes, seed=index)

    def upload(self, indices: list[int], url_of: Any) -> list[requests.Response]:
        """Upload the updates of ``indices`` in parallel, each to ``url_of(index)``."""
        with ThreadPoolExecutor(6) as pool:
            return list(
                pool.map(lambda i: self.devices[i].upload(url_of(i), 1, self.body(i)), indices)
            )


def closed_weights(url: str, fleet: Fleet) -> Weights:
    record = settled(json_at(url), 1, timeout=60)
    assert record["state"] == "closed", record
    return checkpoint(url, fleet.devices[0].token, record["result_checkpoint"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Weights:
    """Round 1's aggregate of every device's update by one SQLite server."""
    root = tmp_path_factory.mktemp("reference")
    with running(root / "data", FLAGS, root / "server.log") as server:
        fleet = Fleet.enrol([server.url])
        answers = fleet.upload(list(range(DEVICES)), lambda i: server.url)
        assert {a.status_code for a in answers} == {201}
        return closed_weights(server.url, fleet)


@contextmanager
def workers(
    url: str, root: Path, count: int = 2, settings: dict[str, str] | None = None
) -> Iterator[list[LiveServer]]:
    """``count`` workers on one database and data directory, started in
    order (the first takes the aggregator's lease), named w0, w1...;
    ``settings``: more ``FEDGE_*`` variables for each."""
    with ExitStack() as stack:
        started = []
        for index in range(count):
            environ = {**os.environ, **(settings or {}), "FEDGE_WORKER_ID": f"w{index}"}
            args = [*FLAGS, "--database", url]
            log = root / f"w{index}.log"
            started.append(stack.enter_context(running(root / "data", args, log, environ=environ)))
        yield started


def health(server: LiveServer) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{server.url}/healthz", timeout=10).json()
    return body


def assert_close(ours: Weights, theirs: Weights) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-6)


def rounds_closed(cluster: PostgresCluster, database: str) -> list[tuple[Any, ...]]:
    return cluster.sql(
        "SELECT kind, COUNT(*) FROM events WHERE kind LIKE 'round_%' GROUP BY kind ORDER BY kind",
        database,
    )


def test_three_workers_aggregate_as_one_server_does(
    postgres_cluster: PostgresCluster, reference: Weights, tmp_path: Path
) -> None:
    url = postgres_cluster.new_database("three_workers")
    with workers(url, tmp_path, count=3) as servers:
        urls = [s.url for s in servers]
        fleet = Fleet.enrol(urls)
        answers = fleet.upload(list(range(DEVICES)), lambda i: urls[(i + 1) % 3])
        assert [a.status_code for a in answers] == [201] * DEVICES, answers[0].text
        assert_close(closed_weights(urls[2], fleet), reference)
        assert sorted(health(s)["aggregator"]["this_worker"] for s in servers) == [
            False,
            False,
            True,
        ]
    assert dict(rounds_closed(postgres_cluster, "three_workers"))["round_closed"] == 1


def test_two_workers_aggregate_as_one_server_does_and_share_events(
    postgres_cluster: PostgresCluster, reference: Weights, tmp_path: Path
) -> None:
    url = postgres_cluster.new_database("two_workers")
    with workers(url, tmp_path) as (w0, w1):
        first, second = health(w0), health(w1)
        assert first["aggregator"]["this_worker"] is True
        assert second["worker_id"] == "w1"
        assert second["aggregator"]["worker_id"] == "w0"
        assert second["aggregator"]["this_worker"] is False
        assert 0 <= second["aggregator"]["lease_age_s"] < 120
        assert 0 <= second["aggregator"]["heartbeat_age_s"] < 5  # beats every tick (0.5 s)

        fleet = Fleet.enrol([w0.url, w1.url])
        urls = [w0.url, w1.url]
        answers = fleet.upload(list(range(DEVICES)), lambda i: urls[(i + 1) % 2])
        assert [a.status_code for a in answers] == [201] * DEVICES, answers[0].text

        assert_close(closed_weights(w1.url, fleet), reference)
        assert dict(rounds_closed(postgres_cluster, "two_workers"))["round_closed"] == 1

        # An event committed by w0 (an admin ends round 2) reaches a stream on w1.
        with subscribed(w1.url, after=None, types=["round"]) as (_, received):
            time.sleep(0.5)  # the stream is open
            sent = time.monotonic()
            ended = requests.post(
                f"{w0.url}/v1/admin/rounds/current/end", headers=ADMIN, timeout=30
            )
            assert ended.status_code == 200, ended.text
            seen = take(received, 2, timeout=10)
            latency = time.monotonic() - sent
        assert [(e.data["round_id"], e.data["state"]) for e in seen] == [
            (2, "abandoned"),
            (3, "open"),
        ]
        print(f"event from w0 seen on w1's stream after {latency * 1000:.0f} ms")
        assert latency < 5.0  # generous: the notification, not the 1 s fallback poll

        # The admin route of the worker that does not run the rounds says who does.
        refused = requests.post(f"{w1.url}/v1/admin/rounds/current/end", headers=ADMIN, timeout=30)
        assert refused.status_code == 409 and refused.json()["code"] == "not_aggregator"
        assert "w0" in refused.json()["message"]


def test_kill_9_of_a_worker_loses_no_receipted_update(
    postgres_cluster: PostgresCluster, reference: Weights, tmp_path: Path
) -> None:
    url = postgres_cluster.new_database("kill_worker")
    with workers(url, tmp_path) as (w0, w1):
        fleet = Fleet.enrol([w0.url, w1.url])
        half = list(range(DEVICES // 2))

        def kill_soon() -> None:
            time.sleep(0.15)
            w1.kill_hard()

        with ThreadPoolExecutor(1) as pool:  # w1 dies while uploads to it are in flight
            killing = pool.submit(kill_soon)
            answers: list[tuple[int, requests.Response | None]] = []
            for i in half:
                try:
                    answers.append((i, fleet.devices[i].upload(w1.url, 1, fleet.body(i))))
                except requests.ConnectionError:
                    answers.append((i, None))
            killing.result()
        receipted = {
            fleet.devices[i].id for i, a in answers if a is not None and a.status_code == 201
        }
        stored = {
            row[0]
            for row in postgres_cluster.sql(
                "SELECT device_id FROM updates WHERE round_id = 1", "kill_worker"
            )
        }
        assert receipted <= stored  # every receipt stands
        # The devices without a receipt (or all, as a device would) retry on w0.
        retried = fleet.upload(list(range(DEVICES)), lambda i: w0.url)
        assert {a.status_code for a in retried} <= {200, 201}  # a retry: its first receipt
        assert_close(closed_weights(w0.url, fleet), reference)


def test_kill_9_of_the_aggregator_hands_the_round_to_another_worker(
    postgres_cluster: PostgresCluster, reference: Weights, tmp_path: Path
) -> None:
    url = postgres_cluster.new_database("kill_aggregator")
    with workers(url, tmp_path) as (w0, w1):
        fleet = Fleet.enrol([w0.url, w1.url])
        urls = [w0.url, w1.url]
        first = fleet.upload(list(range(DEVICES // 2)), lambda i: urls[i % 2])
        assert {a.status_code for a in first} == {201}

        w0.kill_hard()
        killed = time.monotonic()
        while not health(w1)["aggregator"] or not health(w1)["aggregator"]["this_worker"]:
            assert time.monotonic() - killed < 5.0, health(w1)
            time.sleep(0.05)
        print(f"w1 took the aggregator's lease {time.monotonic() - killed:.2f} s after kill -9")

        rest = fleet.upload(list(range(DEVICES // 2, DEVICES)), lambda i: w1.url)
        assert {a.status_code for a in rest} == {201}
        assert_close(closed_weights(w1.url, fleet), reference)
        assert dict(rounds_closed(postgres_cluster, "kill_aggregator"))["round_closed"] == 1


def test_kill_9_of_the_aggregator_mid_close_lets_another_worker_close_the_round_once(
    postgres_cluster: PostgresCluster, reference: Weights, tmp_path: Path
) -> None:
    """The aggregator moves round 1 to closing and cannot finish: its new
    checkpoint cannot be written (a file stands where the checkpoints
    directory was, which stops root as well), so it retries each tick. It
    is killed there; once the directory is back, the other worker takes
    the lease, rebuilds the sum and closes the round, once."""
    url = postgres_cluster.new_database("kill_closing")
    checkpoints = tmp_path / "data" / "checkpoints"
    with workers(url, tmp_path) as (w0, w1):
        fleet = Fleet.enrol([w0.url, w1.url])
        urls = [w0.url, w1.url]
        first = fleet.upload(list(range(DEVICES - 1)), lambda i: urls[i % 2])
        assert {a.status_code for a in first} == {201}
        checkpoints.rename(tmp_path / "checkpoints.away")
        checkpoints.write_text("not a directory")
        try:
            (last,) = fleet.upload([DEVICES - 1], lambda i: w1.url)
            assert last.status_code == 201
            deadline = time.monotonic() + 30
            while json_at(w1.url)("/v1/rounds/1")["state"] != "closing":
                assert time.monotonic() < deadline, "the round never reached closing"
                time.sleep(0.05)
            time.sleep(0.5)  # a few failed attempts at the close
            assert json_at(w1.url)("/v1/rounds/1")["state"] == "closing"
            w0.kill_hard()
        finally:
            checkpoints.unlink()
            (tmp_path / "checkpoints.away").rename(checkpoints)

        assert_close(closed_weights(w1.url, fleet), reference)
        assert health(w1)["aggregator"]["this_worker"]
        closed = dict(rounds_closed(postgres_cluster, "kill_closing"))
        assert closed["round_closed"] == 1 and closed["round_closing"] == 1, closed


def aggregator_is(server: LiveServer, worker_id: str) -> bool:
    holder = health(server)["aggregator"]
    return holder is not None and holder["worker_id"] == worker_id


def test_a_hung_aggregator_loses_the_lease_within_its_timeout_and_steps_down_on_waking(
    postgres_cluster: PostgresCluster, reference: Weights, tmp_path: Path
) -> None:
    """w0, the aggregator, stops (SIGSTOP) mid-round with its connections
    open: w1 takes the lease once w0's heartbeat is older than the lease
    timeout, and closes the round, once, with every update. Woken (SIGCONT),
    w0 finds its lease gone and steps down: no second close, no update
    counted twice."""
    timeout_s = 2.0
    url = postgres_cluster.new_database("hung_aggregator")
    settings = {"FEDGE_LEASE_TIMEOUT_S": str(timeout_s)}
    with workers(url, tmp_path, settings=settings) as (w0, w1):
        fleet = Fleet.enrol([w0.url, w1.url])
        urls = [w0.url, w1.url]
        first = fleet.upload(list(range(DEVICES // 2)), lambda i: urls[i % 2])
        assert {a.status_code for a in first} == {201}
        assert aggregator_is(w1, "w0")

        w0.process.send_signal(signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            ages = []
            while not aggregator_is(w1, "w1"):
                assert time.monotonic() - stopped < timeout_s + 5.0, health(w1)
                holder = health(w1)["aggregator"]
                if holder is not None:  # (None for a moment while the lease changes hands)
                    ages.append(holder["heartbeat_age_s"])
                time.sleep(0.05)
            assert max(ages) > 1.0  # w1 saw w0's heartbeat age before it took over
            print(f"w1 took the lease {time.monotonic() - stopped:.2f} s after w0 hung")
            rest = fleet.upload(list(range(DEVICES // 2, DEVICES)), lambda i: w1.url)
            assert {a.status_code for a in rest} == {201}
            assert_close(closed_weights(w1.url, fleet), reference)
        finally:
            w0.process.send_signal(signal.SIGCONT)  # before any kill: a stopped process ignores it

        # Its first requests may answer 503 (w1 cut its connections); then
        # it says that w1 runs the rounds.
        woke = time.monotonic()
        while True:
            reply = requests.get(f"{w0.url}/healthz", timeout=10)
            if reply.status_code == 200 and not reply.json()["aggregator"]["this_worker"]:
                break
            assert time.monotonic() - woke < 10.0, reply.text
            time.sleep(0.05)
        assert health(w0)["aggregator"]["worker_id"] == "w1"
        time.sleep(2.0)  # a few of w0's ticks, now awake
        assert health(w1)["aggregator"]["this_worker"]
        assert_close(closed_weights(w0.url, fleet), reference)
        closed = dict(rounds_closed(postgres_cluster, "hung_aggregator"))
        assert closed["round_closed"] == 1, closed
        ((stored,),) = postgres_cluster.sql(
            "SELECT COUNT(*) FROM updates WHERE round_id = 1", "hung_aggregator"
        )
        assert stored == DEVICES
