"""Device records and task selection on a real database, without Flask."""

from __future__ import annotations

import time
from pathlib import Path

from fedge.server.storage.devices import Conditions
from tests.server.helpers import constant_update
from tests.server.parts import PartsOn


def test_enrolling_again_with_the_same_request_id_is_the_same_device(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path)
    with parts.store.transaction() as tx:
        first = tx.devices.enrol("web", "a-request-id-of-16+", 1.0)
        retry = tx.devices.enrol("web", "a-request-id-of-16+", 2.0)
        other = tx.devices.enrol("web", None, 3.0)
        count = tx.devices.count()

    assert (first.created, retry.created, other.created) == (True, False, True)
    assert retry.device_id == first.device_id and retry.token != first.token
    assert other.device_id != first.device_id
    assert count == 2


def test_a_check_in_records_conditions_and_when_the_device_asked(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path)
    device = parts.device()

    parts.selector.request_task(device, Conditions(idle=True, unmetered=True), now=1234.0)

    (row,) = parts.sql(
        "SELECT idle, charging, unmetered, last_asked FROM devices WHERE id = ?", (device.id,)
    )
    assert tuple(row) == (1, 0, 1, 1234.0)


def test_a_selected_device_gets_the_same_task_again_and_others_wait(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 2})
    first, second, third = parts.device(), parts.device(), parts.device()

    tasks = [parts.task(first), parts.task(second), parts.task(first)]
    full = parts.selector.request_task(third, Conditions())

    assert [t["round_id"] for t in tasks] == [1, 1, 1]
    assert tasks[2] == tasks[0]
    assert tasks[0]["upload_url"] == "/v1/rounds/1/updates"
    assert tasks[0]["weights"] == ["dense/kernel", "dense/bias"]
    assert (full.task, full.reason) == (None, "round_full")


def test_the_fair_sampler_prefers_the_least_served_device(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path)
    served, fresh = parts.device(participations=3), parts.device(participations=0)
    parts.task(fresh)  # asks, so it counts as active

    early = parts.selector.request_task(served, Conditions())
    half_time = parts.round(1).opened_at + parts.config.rounds.deadline_s / 2
    late = parts.selector.request_task(served, Conditions(), now=half_time + 1)

    assert (early.task, early.reason) == (None, "fairness_wait")
    assert late.task is not None and late.task["round_id"] == 1


def test_a_device_that_has_contributed_is_told_so(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 3})
    device = parts.device()
    task = parts.task(device)
    parts.ingest.accept(device, 1, constant_update(1, task["base_checkpoint"], 1.0))

    again = parts.selector.request_task(device, Conditions())

    # One active device: nothing to spread, it is told to ask in the next round.
    assert again.to_json() == {
        "task": None,
        "reason": "already_contributed",
        "retry_after_s": 2.0,
        "retry_round": 2,
    }


def test_no_task_while_the_round_is_closing(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 2})
    devices_ = [parts.device(), parts.device()]
    for value, device in enumerate(devices_, start=1):
        task = parts.task(device)
        parts.ingest.accept(device, 1, constant_update(1, task["base_checkpoint"], float(value)))
    parts.write(
        "UPDATE rounds SET state = 'closing' WHERE id = 1"
    )  # as if the driver had started closing it

    answer = parts.selector.request_task(parts.device(), Conditions(), now=time.time())

    assert (answer.task, answer.reason) == (None, "no_open_round")


def test_a_new_identity_waits_for_the_settled_devices(parts_on: PartsOn, tmp_path: Path) -> None:
    # Issue 22: fresh devices took 3 of 4 seats because they had taken part
    # in no round. A device enrolled after the round opened is new: it waits
    # while a settled device (enrolled before) asks, whatever its count.
    parts = parts_on(tmp_path, rounds={"target_participants": 3})
    settled_ = parts.device(participations=4)
    parts.selector.request_task(settled_, Conditions())  # active, and seated
    fresh = parts.device(participations=0, enrolled_at=time.time())

    early = parts.selector.request_task(fresh, Conditions())
    half_time = parts.round(1).opened_at + parts.config.rounds.deadline_s / 2
    late = parts.selector.request_task(fresh, Conditions(), now=half_time + 1)

    assert (early.task, early.reason) == (None, "fairness_wait")
    assert late.task is not None


def test_new_devices_are_equals_while_no_settled_device_asks(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 2})
    now = time.time()
    first, second = parts.device(enrolled_at=now), parts.device(enrolled_at=now)

    assert parts.selector.request_task(first, Conditions()).task is not None
    assert parts.selector.request_task(second, Conditions()).task is not None


def test_identities_that_kept_their_count_low_do_not_push_the_fleet_back(
    parts_on: PartsOn,
    tmp_path: Path,
) -> None:
    # 8 devices that took part 5 times; 2 identities held back at 0 (idle, or
    # made for the purpose). The bar is the lower quartile (5), not the
    # least (0): the fleet keeps its seats, the two are no more than equals.
    parts = parts_on(tmp_path, rounds={"target_participants": 4})
    fleet = [parts.device(participations=5) for _ in range(8)]
    held_back = [parts.device(participations=0) for _ in range(2)]
    now = time.time()
    for device in fleet + held_back:  # all active
        parts.selector.request_task(device, Conditions(), now=now - 1)
    parts.write("DELETE FROM selections")  # nobody seated yet

    answers = [parts.selector.request_task(d, Conditions(), now=now) for d in fleet[:3]]
    served_more = parts.device(participations=6)
    parts.selector.request_task(served_more, Conditions(), now=now - 1)
    waits = parts.selector.request_task(served_more, Conditions(), now=now)

    assert all(a.task is not None for a in answers)
    assert (waits.task, waits.reason) == (None, "fairness_wait")
