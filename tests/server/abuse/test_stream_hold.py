"""Attack: hold the event streams (issue 22).

Before: one unauthenticated client held all 4 SSE slots (``threads/2``) and
every other client, dashboard and devices, got 503 ``too_many_streams`` on
both SSE and long-poll for up to 300 s. Now a client (a device, the admin,
or an address when anonymous) holds at most ``event_streams_per_client``
streams, part of the streams is reserved for authenticated clients, waiting
long-polls have their own budget, and every stream runs on a thread of the
stream budget, beyond the request threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests

from fedge.client_sim.device.events import EventSubscriber
from tests.server.abuse.live import ADMIN_TOKEN, assert_json_error, auth, enrol, serve


@contextmanager
def streams(url: str, count: int, headers: dict[str, str] | None = None) -> Iterator[list[int]]:
    """``count`` streams opened at once by one client; their statuses. The
    open ones stay open until the block ends."""
    with ExitStack() as stack:
        statuses = []
        for _ in range(count):
            response = requests.get(
                f"{url}/v1/events?timeout=60", headers=headers, stream=True, timeout=30
            )
            stack.callback(response.close)
            statuses.append(response.status_code)
            if response.status_code != 200:
                # 429: this client has its share; 503: the server is full.
                assert_json_error(response, response.status_code, "too_many_streams")
                assert response.status_code in (429, 503)
                assert int(response.headers["Retry-After"]) >= 1
        yield statuses


def test_one_anonymous_client_cannot_hold_the_streams_of_devices_and_dashboard(
    tmp_path: Path,
) -> None:
    with serve(tmp_path) as live:
        device = enrol(live.url)
        with (
            streams(live.url, 20) as anonymous,
            streams(live.url, 3, auth(device)) as by_device,
            streams(live.url, 1, auth(ADMIN_TOKEN)) as by_dashboard,
        ):
            waiting_poll = requests.get(
                f"{live.url}/v1/events/poll?timeout=0.5", headers=auth(device), timeout=10
            )
            anonymous_poll = requests.get(f"{live.url}/v1/events/poll?timeout=0.5", timeout=10)

    assert anonymous.count(200) == 2  # event_streams_per_client
    assert set(anonymous[2:]) == {429}
    assert by_device == [200, 200, 429]
    assert by_dashboard == [200]
    assert waiting_poll.status_code == 200, waiting_poll.text
    assert anonymous_poll.status_code == 200, anonymous_poll.text


def test_anonymous_streams_cannot_take_the_slots_reserved_for_authenticated_clients(
    tmp_path: Path,
) -> None:
    # 4 streams, 2 reserved: anonymous clients (here: one address, allowed 5)
    # get 2; devices get the other 2, one each at most.
    settings: dict[str, Any] = {
        "event_streams": 4,
        "event_streams_reserved": 2,
        "event_streams_per_client": 5,
    }
    with serve(tmp_path, **settings) as live:
        devices = [enrol(live.url) for _ in range(3)]
        with (
            streams(live.url, 5) as anonymous,
            streams(live.url, 1, auth(devices[0])) as first,
            streams(live.url, 1, auth(devices[1])) as second,
            streams(live.url, 1, auth(devices[2])) as third,
        ):
            pass

    # The anonymous share is full: a 503 (not this client's own cap, a 429).
    assert anonymous == [200, 200, 503, 503, 503]
    assert first == [200]
    assert second == [200]
    assert third == [503]  # all 4 are taken now


def test_a_wrong_token_on_a_stream_is_a_401_not_an_anonymous_stream(tmp_path: Path) -> None:
    with serve(tmp_path) as live:
        wrong = requests.get(
            f"{live.url}/v1/events?timeout=0", headers=auth("not-a-token"), timeout=10
        )
        wrong_poll = requests.get(
            f"{live.url}/v1/events/poll?timeout=0", headers=auth("not-a-token"), timeout=10
        )

    assert_json_error(wrong, 401, "unauthorized")
    assert_json_error(wrong_poll, 401, "unauthorized")


def test_open_streams_do_not_take_the_request_threads(tmp_path: Path) -> None:
    # One request thread, six stream threads: six devices stream, and
    # ordinary requests are still answered at once.
    with serve(tmp_path, threads=1, event_streams=6) as live:
        devices = [enrol(live.url) for _ in range(6)]
        with ExitStack() as stack:
            opened = [stack.enter_context(streams(live.url, 1, auth(d))) for d in devices]
            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                answers = list(
                    pool.map(
                        lambda _: requests.get(f"{live.url}/healthz", timeout=10).status_code,
                        range(8),
                    )
                )
            elapsed = time.monotonic() - started

    assert opened == [[200]] * 6
    assert answers == [200] * 8
    assert elapsed < 5.0  # generous: they would wait for a stream to end (60 s) if pinned


def test_a_device_s_subscriber_streams_on_a_reserved_slot_with_its_token(tmp_path: Path) -> None:
    # Two streams, one reserved: an anonymous client holds the other.
    settings: dict[str, Any] = {"event_streams": 2, "event_streams_reserved": 1}
    with serve(tmp_path, **settings) as live, streams(live.url, 2) as anonymous:
        subscriber = EventSubscriber(live.url, after=0, token=enrol(live.url))
        received: list[int] = []
        thread = threading.Thread(target=lambda: received.extend(e.id for e in subscriber))
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            subscriber.stop()
            thread.join(timeout=10)

    assert anonymous == [200, 503]
    assert not thread.is_alive()
    assert received and subscriber.connections == 1
