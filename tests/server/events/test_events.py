"""Events over real HTTP: the SSE stream, its reconnection, filters, the
long-poll, the cap on open streams and a prompt stop with subscribers.

Most servers here are ``fedge serve`` child processes on the built-in
reference model (no TensorFlow: ready in under a second); an admin ending
the open round writes two events (``round_abandoned``, ``round_opened``),
a quick way to make events without devices.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.client_sim.device.events import poll_events
from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError
from fedge.server.events.log import StoredEvent, public_event
from fedge.server.http.serve import BackgroundServer
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from tests.helpers.live_server import LiveServer, running
from tests.helpers.stores import Stores
from tests.helpers.subscriber import subscribed, take
from tests.server.conftest import AppFactory
from tests.server.helpers import OCTET, auth

ADMIN = auth("admin-secret")  # tests.helpers.live_server.start's default


_STORES: list[Stores] = []  # the store kind of the test running now


@pytest.fixture(autouse=True)
def _each_store(stores: Stores) -> Iterator[None]:
    """Every test here runs on SQLite and on PostgreSQL."""
    _STORES.append(stores)
    yield
    _STORES.pop()


def another_process_adds(data_dir: Path, *events: tuple[str, dict[str, Any]]) -> None:
    """Events written beside the server (a release tool on its database, say)."""
    store = _STORES[-1].open(data_dir, threads=1)
    with store.transaction() as tx:
        for kind, payload in events:
            tx.events.add(kind, payload)
    store.close_thread_connection()


@contextmanager
def server(tmp_path: Path, **settings: Any) -> Iterator[LiveServer]:
    """``fedge serve`` with ``settings`` (a TOML file; ``rounds`` a table),
    on the test's store kind."""
    database = _STORES[-1].url(tmp_path / "data")
    if database is not None:
        settings["database"] = database
    rounds = settings.pop("rounds", {})
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["[rounds]", *(f"{key} = {json.dumps(value)}" for key, value in rounds.items())]
    config = tmp_path / "server.toml"
    config.write_text("\n".join(lines) + "\n")
    with running(tmp_path / "data", ["--config", str(config)], tmp_path / "server.log") as live:
        yield live


def end_round(url: str) -> None:
    """Admin: end the open round (no updates: abandoned; the next one opens)."""
    response = requests.post(f"{url}/v1/admin/rounds/current/end", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text


def position(url: str) -> int:
    """The id of the newest event now (a long-poll that does not wait)."""
    return poll_events(url, after=None, timeout=0).last_id


def raw_stream(url: str, query: str, headers: dict[str, str] | None = None) -> str:
    """The whole text of a stream that ends by itself (``timeout`` in ``query``)."""
    response = requests.get(f"{url}/v1/events?{query}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response.text


def event_ids(text: str) -> list[int]:
    """The ids of the blocks that carry data (events, not position updates)."""
    ids = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            ids.append(int(fields["id"]))
    return ids


def model_update(url: str, round_id: int, base: str, value: float) -> bytes:
    """An update for whatever model the server federates: every element ``value``."""
    model = requests.get(f"{url}/v1/models", timeout=10).json()["models"][0]["name"]
    spec = requests.get(f"{url}/v1/models/{model}", timeout=10).json()["weights"]
    deltas = {w["name"]: np.full(w["shape"], value, np.dtype(w["dtype"])) for w in spec}
    meta = UpdateMeta(round_id=round_id, base_checkpoint=base, num_examples=1)
    return encode_update(Update(meta=meta, deltas=deltas))


class Device:
    def __init__(self, url: str) -> None:
        self.url = url
        body = requests.post(f"{url}/v1/devices", json={"platform": "test"}, timeout=10).json()
        self.token = body["token"]

    def task(self) -> dict[str, Any]:
        answer = requests.post(
            f"{self.url}/v1/tasks", json={}, headers=auth(self.token), timeout=10
        ).json()
        assert answer["task"] is not None, answer
        return dict(answer["task"])

    def upload(self, round_id: int, body: bytes) -> int:
        return requests.post(
            f"{self.url}/v1/rounds/{round_id}/updates",
            data=body,
            headers={**auth(self.token), "Content-Type": OCTET},
            timeout=30,
        ).status_code


def test_a_subscriber_receives_the_round_event_when_a_round_closes(tmp_path: Path) -> None:
    rounds = {"target_participants": 2, "min_participants": 2, "deadline_s": 300}
    with server(tmp_path, rounds=rounds) as live:
        start = position(live.url)
        with subscribed(live.url, after=start, types=["round"]) as (_, received):
            devices = [Device(live.url) for _ in range(2)]
            tasks = [d.task() for d in devices]
            codes = [
                d.upload(1, model_update(live.url, 1, t["base_checkpoint"], v))
                for d, t, v in zip(devices, tasks, (0.01, 0.03), strict=True)
            ]
            events = take(received, 3)  # round 1 closing, closed; round 2 open
        record = requests.get(f"{live.url}/v1/rounds/1", timeout=10).json()

    assert codes == [201, 201]
    assert [(e.type, e.data["round_id"], e.data["state"]) for e in events] == [
        ("round", 1, "closing"),
        ("round", 1, "closed"),
        ("round", 2, "open"),
    ]
    closed = events[1].data
    assert closed["checkpoint"] == record["result_checkpoint"]
    assert closed["metrics"] == record["metrics"]
    assert closed["metrics"]["updates"] == 2
    assert events[2].data["base_checkpoint"] == record["result_checkpoint"]
    assert [e.id for e in events] == sorted(e.id for e in events) and events[0].id > start


def test_a_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    with server(tmp_path) as live:
        start = position(live.url)
        with subscribed(live.url, after=start) as (subscriber, received):
            end_round(live.url)
            before = take(received, 2)
        last_seen = subscriber.last_event_id
        for _ in range(2):  # while nobody listens
            end_round(live.url)
        missed = raw_stream(live.url, "timeout=0", {"Last-Event-ID": str(last_seen)})
        # The header wins over ?after= (a browser reconnects to the same URL).
        again = raw_stream(live.url, f"after={start}&timeout=0", {"Last-Event-ID": str(last_seen)})
        with subscribed(live.url, after=last_seen) as (_, received):
            resumed = take(received, 4)
            end_round(live.url)
            live_events = take(received, 2)
        everything = poll_events(live.url, after=start, timeout=0).events

    assert [e.id for e in before] == [start + 1, start + 2]
    assert last_seen == start + 2
    assert event_ids(missed) == [start + 3, start + 4, start + 5, start + 6]
    assert event_ids(again) == event_ids(missed)
    assert [e.id for e in resumed] == event_ids(missed)
    assert [e.id for e in [*before, *resumed, *live_events]] == [e.id for e in everything]
    assert [e.data["state"] for e in everything] == ["abandoned", "open"] * 4


def test_the_subscriber_reconnects_by_itself_when_streams_end(tmp_path: Path) -> None:
    with server(tmp_path, event_stream_s=0.5) as live:
        start = position(live.url)
        with subscribed(live.url, after=start) as (subscriber, received):
            for _ in range(6):  # 12 events over about 3 s: several streams
                end_round(live.url)
                time.sleep(0.4)
            events = take(received, 12)
            time.sleep(0.5)
            extra = received.qsize()
        written = poll_events(live.url, after=start, timeout=0).events

    assert [e.id for e in events] == [e.id for e in written] == list(range(start + 1, start + 13))
    assert extra == 0
    assert subscriber.connections >= 3  # it did reconnect


def test_types_filters_the_stream_and_the_poll(tmp_path: Path) -> None:
    with server(tmp_path) as live:
        start = position(live.url)
        # Another process's writes (a release tool on the same data directory,
        # say): the server finds them by its fallback poll of the table.
        another_process_adds(
            tmp_path / "data",
            ("release", {"version": 2, "bundle_id": "b" * 64}),
            ("rollout", {"version": 2, "percent": 10}),
        )
        end_round(live.url)
        releases = raw_stream(live.url, f"after={start}&timeout=0&types=release,rollout")
        rounds = raw_stream(live.url, f"after={start}&timeout=0&types=round")
        polled = poll_events(live.url, after=start, timeout=0, types=["rollout"])
        bad = requests.get(f"{live.url}/v1/events?types=round,nope&timeout=0", timeout=10)

    assert event_ids(releases) == [start + 1, start + 2]
    assert "event: release" in releases and "event: rollout" in releases
    assert '"bundle_id":"' + "b" * 64 + '"' in releases  # passed through as written
    assert event_ids(rounds) == [start + 3, start + 4]
    assert [(e.id, e.type, e.data) for e in polled.events] == [
        (start + 2, "rollout", {"version": 2, "percent": 10})
    ]
    assert polled.last_id == start + 4  # scanned past the filtered-out rounds
    assert bad.status_code == 400 and bad.json()["code"] == "bad_query"


def test_another_process_s_event_reaches_a_live_subscriber(tmp_path: Path) -> None:
    with server(tmp_path) as live:
        start = position(live.url)
        with subscribed(live.url, after=start, types=["release"]) as (_, received):
            another_process_adds(tmp_path / "data", ("release", {"version": 3}))
            (event,) = take(received, 1, timeout=5)

    assert (event.id, event.type, event.data) == (start + 1, "release", {"version": 3})


def test_the_long_poll_answers_at_once_with_pending_events_and_waits_without(
    tmp_path: Path,
) -> None:
    with server(tmp_path) as live:
        start = position(live.url)
        end_round(live.url)
        started = time.monotonic()
        pending = poll_events(live.url, after=start, timeout=20)
        pending_s = time.monotonic() - started

        started = time.monotonic()
        empty = poll_events(live.url, after=pending.last_id, timeout=1)
        empty_s = time.monotonic() - started

        timer = threading.Timer(0.3, end_round, (live.url,))
        timer.start()
        started = time.monotonic()
        woken = poll_events(live.url, after=pending.last_id, timeout=20)
        woken_s = time.monotonic() - started
        timer.join()

        bad = {
            query: requests.get(f"{live.url}/v1/events/poll?{query}", timeout=10)
            for query in ("timeout=31", "after=-1", "after=x", "types=", "timeout=nan")
        }
        bad["Last-Event-ID: x1"] = requests.get(
            f"{live.url}/v1/events/poll", headers={"Last-Event-ID": "x1"}, timeout=10
        )

    assert [e.data["state"] for e in pending.events] == ["abandoned", "open"]
    assert pending.last_id == start + 2 and pending_s < 1.0
    assert all(e.created_at is not None for e in pending.events)
    assert empty.events == [] and empty.last_id == pending.last_id
    assert 0.9 < empty_s < 3.0
    assert [e.id for e in woken.events] == [start + 3, start + 4]
    assert 0.3 <= woken_s < 2.0
    assert {q: (r.status_code, r.json()["code"]) for q, r in bad.items()} == {
        q: (400, "bad_query") for q in bad
    }


def test_streams_over_the_cap_get_503_too_many_streams(tmp_path: Path) -> None:
    # Waiting long-polls have a budget of their own (event_polls): 0 here,
    # so that a waiting poll is refused too.
    with server(tmp_path, event_streams=1, event_polls=0) as live:
        first = requests.get(f"{live.url}/v1/events", stream=True, timeout=30)
        second = requests.get(f"{live.url}/v1/events?timeout=0", timeout=10)
        waiting_poll = requests.get(f"{live.url}/v1/events/poll?timeout=5", timeout=10)
        # Pending events need no slot: the poll answers without waiting.
        pending_poll = requests.get(f"{live.url}/v1/events/poll?after=0&timeout=5", timeout=10)
        first.close()
        reopened = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server notices the close
            reopened = requests.get(f"{live.url}/v1/events?timeout=0", timeout=10)
            if reopened.status_code == 200:
                break
            time.sleep(0.1)
        metrics = requests.get(f"{live.url}/metrics", timeout=10).text

    assert first.status_code == 200
    for refused in (second, waiting_poll):
        assert refused.status_code == 503
        assert refused.json()["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) >= 1
    assert pending_poll.status_code == 200 and pending_poll.json()["events"]
    assert reopened is not None and reopened.status_code == 200
    assert "fedge_event_streams 0" in metrics


def test_keepalives_and_the_end_of_a_stream(tmp_path: Path) -> None:
    with server(tmp_path, event_keepalive_s=0.2, event_stream_s=1.0) as live:
        started = time.monotonic()
        text = raw_stream(live.url, "")
        elapsed = time.monotonic() - started
        latest = position(live.url)

    blocks = text.split("\n\n")
    assert blocks[0].splitlines() == ["retry: 1000", f"id: {latest}"]
    assert text.count(": keepalive\n") >= 3
    assert blocks[-2].splitlines() == [f"id: {latest}", "retry: 1000"]
    assert 0.9 < elapsed < 3.0


@pytest.mark.serial  # a bound of 0.9 s on a shutdown: a loaded machine overran it (-n 4)
def test_the_server_process_stops_promptly_with_subscribers_connected(tmp_path: Path) -> None:
    with server(tmp_path) as live:
        start = position(live.url)
        with subscribed(live.url, after=start):
            outcome: list[object] = []

            def wait_in_a_poll() -> None:
                try:  # an answer, or the connection closed under it: either ends it
                    outcome.append(poll_events(live.url, start, 30))
                except requests.RequestException as exc:
                    outcome.append(exc)

            poll = threading.Thread(target=wait_in_a_poll, daemon=True)
            poll.start()
            time.sleep(0.5)  # both are waiting in the server
            started = time.monotonic()
            live.process.send_signal(signal.SIGTERM)
            code = live.process.wait(timeout=15)
            stopped_s = time.monotonic() - started
            poll.join(timeout=5)

    assert code == 0
    assert stopped_s < 0.9  # without ending the streams: over 1 s (their fallback wake)
    assert not poll.is_alive() and len(outcome) == 1


def test_an_embedded_server_stops_promptly_with_a_subscriber_connected(
    make_app: AppFactory,
) -> None:
    background = BackgroundServer(make_app())
    with subscribed(background.url, after=None):
        time.sleep(0.5)
        started = time.monotonic()
        background.stop()
        stopped_s = time.monotonic() - started

    # Its waitress loop thread notices the closed sockets at its next poll (1 s).
    assert stopped_s < 2.0


def test_round_kinds_become_round_events_and_others_stay_private() -> None:
    def row(kind: str, payload: dict[str, Any]) -> StoredEvent:
        return StoredEvent(id=5, kind=kind, payload=payload, created_at=10.0)

    closed = public_event(
        row("round_closed", {"round_id": 3, "checkpoint": "c" * 64, "metrics": {"updates": 2}})
    )
    failed = public_event(row("round_failed", {"round_id": 4, "updates": 1, "reason": "nan"}))
    opened = public_event(row("round_opened", {"round_id": 5, "base_checkpoint": "c" * 64}))
    release = public_event(row("release", {"version": 2}))

    assert closed is not None and closed.data == {
        "round_id": 3,
        "state": "closed",
        "checkpoint": "c" * 64,
        "metrics": {"updates": 2},
    }
    assert failed is not None and failed.data == {
        "round_id": 4,
        "state": "failed",
        "metrics": {"updates": 1, "reason": "nan"},
    }
    assert opened is not None and opened.data == {
        "round_id": 5,
        "state": "open",
        "base_checkpoint": "c" * 64,
        "metrics": {},
    }
    assert release is not None and (release.type, release.data) == ("release", {"version": 2})
    assert (closed.id, closed.created_at) == (5, 10.0)
    assert public_event(row("device_enrolled", {"device_id": "d"})) is None


def test_streams_polls_and_predictions_have_thread_budgets_beyond_the_request_threads() -> None:
    # Streams used to share the request threads (at most half of them); now
    # each budget has threads of its own (tests/server/abuse/test_stream_hold.py).
    config = load_config(environ={})
    assert (config.event_streams, config.event_polls, config.predict_concurrency) == (16, 16, 4)
    assert config.server_threads == 8 + 16 + 16 + 4
    assert config.reserved_of(config.event_streams) == 8  # half, for devices and the admin
    reserved = load_config(environ={}, overrides={"event_streams_reserved": 3})
    assert (reserved.reserved_of(16), reserved.reserved_of(2)) == (3, 2)
    assert load_config(environ={}, overrides={"event_streams": 0}).server_threads == 28
    for bad in (
        {"event_streams": -1},
        {"event_streams": 4, "event_streams_reserved": 5},
        {"event_streams_per_client": 0},
    ):
        with pytest.raises(ConfigurationError, match="event_streams"):
            load_config(environ={}, overrides=bad)
    with pytest.raises(ConfigurationError, match="event_stream_s"):
        load_config(environ={}, overrides={"event_stream_s": 0})
