"""Flood enrolment: one client enrolling as fast as it can (issue 22 measured
690-940 enrolments/s, none refused) is held to the per-address limit, while
an honest device's check-ins keep being answered."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.live_server import LiveServer, running
from tests.helpers.metrics import metric
from tests.server.abuse.floods import assert_rate_limited, default_limit, enrol, flood
from tests.server.helpers import auth


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[LiveServer]:
    """``fedge serve`` with its defaults."""
    with running(tmp_path / "data", [], tmp_path / "server.log") as server:
        yield server


def test_one_client_cannot_enrol_without_limit(default_server: LiveServer) -> None:
    url = default_server.url
    limit = default_limit("enrol")
    honest = enrol(url).json()["token"]
    latencies: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    def check_in() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                started = time.perf_counter()
                response = session.post(
                    f"{url}/v1/tasks", json={}, headers=auth(honest), timeout=30
                )
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)
                time.sleep(0.25)  # an eager device: servers say 1 s (retry_after_s)

    device = threading.Thread(target=check_in)
    device.start()
    try:
        result = flood(lambda session: enrol(url, session), int(limit.burst) + 600)
    finally:
        stop.set()
        device.join()

    assert_rate_limited(result)
    # At most the burst and what the bucket refilled meanwhile (the honest
    # device's enrolment came out of it too).
    allowed = limit.burst + limit.rate_per_s * result.seconds
    assert result.statuses[201] <= allowed, (dict(result.statuses), result.seconds)
    assert result.statuses[201] + result.statuses[429] == int(limit.burst) + 600
    assert metric(url, "fedge_rate_limited_total", family="enrol") == result.statuses[429]
    # The device was never refused; its check-ins are answered (their latency
    # during the flood is measured by bench/abuse_bench.py).
    assert statuses and set(statuses) == {200}, set(statuses)
    print(f"honest check-in during the flood: median {statistics.median(latencies) * 1000:.1f} ms")


def test_flooded_devices_expire_and_a_device_that_checks_in_stays(tmp_path: Path) -> None:
    """Issue 22: enrolments 'never expired'. With a short ``--device-ttl``,
    devices nobody uses are forgotten; one that keeps checking in is not."""
    with running(tmp_path / "data", ["--device-ttl", "3"], tmp_path / "server.log") as server:
        url = server.url
        honest = enrol(url).json()
        flooded = [enrol(url).json()["token"] for _ in range(30)]
        deadline = time.monotonic() + 30
        while metric(url, "fedge_devices_expired_total") < 30 and time.monotonic() < deadline:
            beat = requests.post(
                f"{url}/v1/devices/{honest['device_id']}/heartbeat",
                json={},
                headers=auth(honest["token"]),
                timeout=30,
            )
            assert beat.status_code == 200
            time.sleep(0.2)
        assert metric(url, "fedge_devices_expired_total") == 30
        assert metric(url, "fedge_devices") == 1
        stats = requests.get(f"{url}/v1/stats", timeout=30).json()
        assert stats["devices"]["enrolled"] == 1
        gone = requests.post(f"{url}/v1/tasks", json={}, headers=auth(flooded[0]), timeout=30)
        assert gone.status_code == 401
