"""Fast devices first (``[aggregation] slow_factor``): a device whose last
task, as the server measured it (lease granted to update accepted), took
more than ``slow_factor`` x the recent median gets a seat only while at
most half the seats are taken; off by default. Times are given, not slept."""

from __future__ import annotations

import pytest

from fedge.server.async_config import build_async_config
from fedge.server.errors import ConfigurationError
from fedge.server.rounds.buffered.leases import Leases


def measured(slow_factor: float) -> Leases:
    """Four devices whose tasks took 1 s and one, ``slow``, whose took 10 s."""
    leases = Leases(concurrency=4, lease_s=60.0, slow_factor=slow_factor)
    for device in ("a", "b", "c", "d", "slow"):
        assert leases.grant(device, 1, 0.0) is not None or device == "slow"
    # Four seats: "slow" waits for one, then takes the seat "a" left.
    leases.release("a", 1, 1.0)
    assert leases.grant("slow", 1, 1.0) is not None
    for device in ("b", "c", "d"):
        leases.release(device, 1, 1.0)
    leases.release("slow", 1, 11.0)
    return leases


def test_a_device_measured_slow_gets_a_seat_only_while_half_are_free() -> None:
    leases = measured(slow_factor=2.0)
    assert leases.grant("e", 2, 12.0) is not None  # never measured: counts as fast
    assert leases.grant("f", 2, 12.0) is not None  # two of four seats taken

    assert leases.grant("slow", 2, 12.0) is None
    assert leases.grant("a", 2, 12.0) is not None  # measured fast: the third seat

    leases.release("a", 2, 13.0)
    leases.release("e", 2, 13.0)
    assert leases.grant("slow", 2, 13.0) is not None  # one seat taken: room for it
    assert leases.count(13.0) == 2


def test_off_by_default_and_every_device_takes_a_free_seat() -> None:
    leases = measured(slow_factor=0.0)
    assert leases.grant("e", 2, 12.0) is not None
    assert leases.grant("f", 2, 12.0) is not None

    assert leases.grant("slow", 2, 12.0) is not None
    assert build_async_config({"mode": "async"}).slow_factor == 0.0


def test_a_device_that_sped_up_is_fast_again() -> None:
    leases = measured(slow_factor=2.0)
    leases.grant("e", 2, 12.0)
    leases.grant("f", 2, 12.0)
    leases.release("e", 2, 13.0)  # one seat taken: "slow" gets in, and is quick this time
    assert leases.grant("slow", 2, 13.0) is not None
    leases.release("slow", 2, 14.0)
    leases.grant("g", 3, 14.0)

    assert leases.grant("slow", 3, 14.0) is not None  # the second seat: measured fast now


@pytest.mark.parametrize("bad", [-1.0, 0.5, float("inf")])
def test_a_bad_slow_factor_is_refused(bad: float) -> None:
    config = build_async_config({"mode": "async", "slow_factor": bad})
    with pytest.raises(ConfigurationError, match="slow_factor"):
        config.validate()
