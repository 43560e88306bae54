"""Admission and round transitions decided on plain values: no database,
no Flask, no clock."""

from __future__ import annotations

import pytest

from fedge.server.round_config import RoundConfig
from fedge.server.rounds.admission import (
    CONDITIONS,
    Refusal,
    Seats,
    active_since,
    conditions_refusal,
    seat_refusal,
)
from fedge.server.rounds.lifecycle import due_transition
from fedge.server.storage.devices import Conditions


def seats(taken: int = 0, slots: int = 3, least: int = 0) -> Seats:
    """A round opened at t=100 with its deadline at t=160 (half time: t=130)."""
    return Seats(taken, slots, least, opened_at=100.0, deadline_at=160.0)


@pytest.mark.parametrize(
    ("required", "reported", "refused"),
    [
        ({}, Conditions(), False),
        ({"require_idle": True}, Conditions(idle=False, charging=True), True),
        ({"require_idle": True}, Conditions(idle=True), False),
        ({"require_charging": True, "require_unmetered": True}, Conditions(charging=True), True),
        (
            {"require_charging": True, "require_unmetered": True},
            Conditions(charging=True, unmetered=True),
            False,
        ),
    ],
)
def test_conditions_refuse_only_what_the_rounds_require(
    required: dict[str, bool], reported: Conditions, refused: bool
) -> None:
    refusal = conditions_refusal(RoundConfig(**required), reported)

    assert refusal == (CONDITIONS if refused else None)


def test_a_full_round_refuses_whoever_asks() -> None:
    refusal = seat_refusal(seats(taken=3, slots=3), participations=0, now=110.0)

    assert refusal == Refusal("round_full", 5.0)


def test_the_fair_sampler_makes_a_served_device_wait_until_half_time() -> None:
    round_ = seats(taken=1, least=2)

    early = seat_refusal(round_, participations=3, now=129.0)
    late = seat_refusal(round_, participations=3, now=130.0)
    least_served = seat_refusal(round_, participations=2, now=101.0)

    assert early == Refusal("fairness_wait", 5.0)
    assert late is None
    assert least_served is None


def test_a_refused_device_is_told_to_come_back_within_the_round() -> None:
    near_deadline = seat_refusal(seats(taken=3), participations=0, now=158.0)
    past_deadline = seat_refusal(seats(taken=3), participations=0, now=170.0)

    assert near_deadline is not None and near_deadline.retry_after_s == 2.0
    assert past_deadline is not None and past_deadline.retry_after_s == 0.5


def test_devices_count_as_active_for_four_deadlines() -> None:
    assert active_since(RoundConfig(deadline_s=60.0), now=1000.0) == 760.0


@pytest.mark.parametrize(
    ("updates", "now", "expected"),
    [
        (3, 10.0, "closing"),  # target reached before the deadline
        (1, 10.0, None),  # waiting
        (2, 60.0, "closing"),  # deadline with quorum
        (1, 60.0, "abandoned"),  # deadline without quorum
        (0, 99.0, "abandoned"),
    ],
)
def test_an_open_round_moves_on_at_its_target_or_deadline(
    updates: int, now: float, expected: str | None
) -> None:
    rounds = RoundConfig(target_participants=3, min_participants=2)

    assert due_transition(rounds, updates, now, deadline_at=60.0) == expected
