"""When a fleet's devices ask for work: the server's advice, round by round."""

from __future__ import annotations

import math

from fedge.client_sim.device.simulated import RoundOutcome
from fedge.client_sim.fleet.pacing import DEFAULT_RETRY_S, DevicePacing, Wakeup, next_wakeup


def test_every_device_is_due_at_first() -> None:
    assert DevicePacing(3).due(round_id=1, now=0.0) == [0, 1, 2]


def test_a_contributor_asks_again_in_the_next_round() -> None:
    outcome = RoundOutcome(0, "contributed", round_id=4)

    assert next_wakeup(outcome, round_id=4, now=100.0) == Wakeup(5)


def test_a_device_seated_in_a_later_round_asks_in_that_round() -> None:
    outcome = RoundOutcome(0, "next_round", round_id=5)

    assert next_wakeup(outcome, round_id=4, now=100.0) == Wakeup(5)


def test_a_refused_device_waits_for_its_round_or_within_this_one_its_retry_time() -> None:
    paced = RoundOutcome(0, "round_full", retry_round=9, retry_after_s=2.5)
    no_advice = RoundOutcome(1, "no_open_round", retry_after_s=None, retry_round=None)
    conditions = RoundOutcome(2, "conditions", retry_after_s=30.0)

    assert next_wakeup(paced, round_id=4, now=100.0) == Wakeup(9, 4, 102.5)
    assert next_wakeup(no_advice, round_id=4, now=100.0) == Wakeup(5)
    assert next_wakeup(conditions, round_id=4, now=100.0) == Wakeup(5, 4, 130.0)
    assert DEFAULT_RETRY_S > 0


def test_offline_dropped_or_refused_devices_try_the_next_round() -> None:
    for status in ("offline", "dropout", "rejected"):
        assert next_wakeup(RoundOutcome(0, status), round_id=4, now=1.0) == Wakeup(5)


def test_a_device_that_got_no_answer_tries_again_within_the_round() -> None:
    """It may hold a seat: waiting for the next round would leave it empty."""
    outcome = RoundOutcome(0, "error")
    assert next_wakeup(outcome, round_id=4, now=1.0) == Wakeup(5, 4, 1.0 + DEFAULT_RETRY_S)


def test_due_devices_follow_rounds_and_timers_only_within_their_round() -> None:
    pacing = DevicePacing(3)
    pacing.record(RoundOutcome(0, "round_full", retry_round=6, retry_after_s=2.0), 4, now=100.0)
    pacing.record(RoundOutcome(1, "contributed", round_id=4), 4, now=100.0)
    pacing.record(RoundOutcome(2, "round_full", retry_round=5, retry_after_s=9.0), 4, now=100.0)

    assert pacing.due(4, now=101.0) == []
    assert pacing.due(4, now=102.0) == [0]  # its retry time, in the round it was refused in
    assert pacing.next_timer(4) == 102.0
    assert pacing.due(5, now=200.0) == [1, 2]  # a later round: its timer no longer counts
    assert pacing.due(6, now=200.0) == [0, 1, 2]
    assert pacing.next_timer(7) is None
    assert math.isinf(Wakeup().at)
