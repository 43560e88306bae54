"""A pass over a round's devices stops starting devices once the round is full."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fedge.client_sim.device.simulated import RoundOutcome
from fedge.client_sim.fleet.dispatch import until_full
from fedge.client_sim.fleet.pacing import Wakeup, next_wakeup


class Seats:
    """A server with ``seats`` seats: the first askers get one, the rest
    are refused as round_full; notes who asked and the most at once."""

    def __init__(self, seats: int) -> None:
        self.seats = seats
        self.asked: list[int] = []
        self.running = self.most_at_once = 0
        self._lock = threading.Lock()

    def step(self, device: int) -> RoundOutcome:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.asked.append(device)
            seated = len(self.asked) <= self.seats
        with self._lock:
            self.running -= 1
        return RoundOutcome(device, "contributed" if seated else "round_full", retry_round=9)


@pytest.mark.parametrize("in_flight", [1, 3, 8])
def test_devices_after_the_round_is_full_are_deferred_not_asked(in_flight: int) -> None:
    server = Seats(seats=5)
    order = list(range(40))[::-1]
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        outcomes = list(until_full(pool, server.step, order, in_flight))

    assert sorted(o.device for o in outcomes) == list(range(40))  # one outcome each
    statuses = {o.device: o.status for o in outcomes}
    assert sum(s == "contributed" for s in statuses.values()) == 5
    refused = [d for d, s in statuses.items() if s == "round_full"]
    deferred = [d for d, s in statuses.items() if s == "deferred"]
    # Only the steps already started when the first refusal came back ask.
    assert 1 <= len(refused) <= in_flight
    assert len(server.asked) == 5 + len(refused) < 40
    assert set(deferred) == set(order) - set(server.asked)
    # In order: the devices asked are the first of the order.
    assert sorted(server.asked, reverse=True) == order[: len(server.asked)]
    assert server.most_at_once <= in_flight


def test_a_round_with_seats_for_all_asks_every_device() -> None:
    server = Seats(seats=100)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(until_full(pool, server.step, list(range(30)), 4))
    assert sorted(server.asked) == list(range(30))
    assert all(o.status == "contributed" for o in outcomes)


def test_a_failing_step_is_raised_after_the_started_steps_finish() -> None:
    finished: list[int] = []

    def step(device: int) -> RoundOutcome:
        if device == 2:
            raise RuntimeError("device 2 broke")
        finished.append(device)
        return RoundOutcome(device, "offline")

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(RuntimeError, match="device 2"):
        list(until_full(pool, step, list(range(10)), 2))
    assert 2 not in finished
    assert len(finished) < 10


def test_a_deferred_device_asks_in_the_next_round() -> None:
    assert next_wakeup(RoundOutcome(3, "deferred"), round_id=4, now=1.0) == Wakeup(5)
