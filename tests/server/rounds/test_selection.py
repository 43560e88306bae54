"""Device records and task selection on a real database, without Flask."""

from __future__ import annotations

import time
from pathlib import Path

from fedge.server.storage.devices import Conditions
from tests.server.helpers import constant_update
from tests.server.parts import build_parts


def test_enrolling_again_with_the_same_request_id_is_the_same_device(tmp_path: Path) -> None:
    parts = build_parts(tmp_path)
    with parts.store.transaction() as tx:
        first = tx.devices.enrol("web", "a-request-id-of-16+", 1.0)
        retry = tx.devices.enrol("web", "a-request-id-of-16+", 2.0)
        other = tx.devices.enrol("web", None, 3.0)
        count = tx.devices.count()

    assert (first.created, retry.created, other.created) == (True, False, True)
    assert retry.device_id == first.device_id and retry.token != first.token
    assert other.device_id != first.device_id
    assert count == 2


def test_a_check_in_records_conditions_and_when_the_device_asked(tmp_path: Path) -> None:
    parts = build_parts(tmp_path)
    device = parts.device()

    parts.selector.request_task(device, Conditions(idle=True, unmetered=True), now=1234.0)

    row = parts.db.connection().execute(
        "SELECT idle, charging, unmetered, last_asked FROM devices WHERE id = ?", (device.id,)
    )
    assert tuple(row.fetchone()) == (1, 0, 1, 1234.0)


def test_a_selected_device_gets_the_same_task_again_and_others_wait(tmp_path: Path) -> None:
    parts = build_parts(tmp_path, rounds={"target_participants": 2})
    first, second, third = parts.device(), parts.device(), parts.device()

    tasks = [parts.task(first), parts.task(second), parts.task(first)]
    full = parts.selector.request_task(third, Conditions())

    assert [t["round_id"] for t in tasks] == [1, 1, 1]
    assert tasks[2] == tasks[0]
    assert tasks[0]["upload_url"] == "/v1/rounds/1/updates"
    assert tasks[0]["weights"] == ["dense/kernel", "dense/bias"]
    assert (full.task, full.reason) == (None, "round_full")


def test_the_fair_sampler_prefers_the_least_served_device(tmp_path: Path) -> None:
    parts = build_parts(tmp_path)
    served, fresh = parts.device(participations=3), parts.device(participations=0)
    parts.task(fresh)  # asks, so it counts as active

    early = parts.selector.request_task(served, Conditions())
    half_time = parts.round(1).opened_at + parts.config.rounds.deadline_s / 2
    late = parts.selector.request_task(served, Conditions(), now=half_time + 1)

    assert (early.task, early.reason) == (None, "fairness_wait")
    assert late.task is not None and late.task["round_id"] == 1


def test_a_device_that_has_contributed_is_told_so(tmp_path: Path) -> None:
    parts = build_parts(tmp_path, rounds={"target_participants": 3})
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


def test_no_task_while_the_round_is_closing(tmp_path: Path) -> None:
    parts = build_parts(tmp_path, rounds={"target_participants": 2})
    devices_ = [parts.device(), parts.device()]
    for value, device in enumerate(devices_, start=1):
        task = parts.task(device)
        parts.ingest.accept(device, 1, constant_update(1, task["base_checkpoint"], float(value)))
    with parts.db.transaction() as conn:  # as if the driver had started closing it
        conn.execute("UPDATE rounds SET state = 'closing' WHERE id = 1")

    answer = parts.selector.request_task(parts.device(), Conditions(), now=time.time())

    assert (answer.task, answer.reason) == (None, "no_open_round")


def test_a_new_identity_waits_for_the_settled_devices(tmp_path: Path) -> None:
    # Issue 22: fresh devices took 3 of 4 seats because they had taken part
    # in no round. A device enrolled after the round opened is new: it waits
    # while a settled device (enrolled before) asks, whatever its count.
    parts = build_parts(tmp_path, rounds={"target_participants": 3})
    settled_ = parts.device(participations=4)
    parts.selector.request_task(settled_, Conditions())  # active, and seated
    fresh = parts.device(participations=0, enrolled_at=time.time())

    early = parts.selector.request_task(fresh, Conditions())
    half_time = parts.round(1).opened_at + parts.config.rounds.deadline_s / 2
    late = parts.selector.request_task(fresh, Conditions(), now=half_time + 1)

    assert (early.task, early.reason) == (None, "fairness_wait")
    assert late.task is not None


def test_new_devices_are_equals_while_no_settled_device_asks(tmp_path: Path) -> None:
    parts = build_parts(tmp_path, rounds={"target_participants": 2})
    now = time.time()
    first, second = parts.device(enrolled_at=now), parts.device(enrolled_at=now)

    assert parts.selector.request_task(first, Conditions()).task is not None
    assert parts.selector.request_task(second, Conditions()).task is not None


def test_identities_that_kept_their_count_low_do_not_push_the_fleet_back(
    tmp_path: Path,
) -> None:
    # 8 devices that took part 5 times; 2 identities held back at 0 (idle, or
    # made for the purpose). The bar is the lower quartile (5), not the
    # least (0): the fleet keeps its seats, the two are no more than equals.
    parts = build_parts(tmp_path, rounds={"target_participants": 4})
    fleet = [parts.device(participations=5) for _ in range(8)]
    held_back = [parts.device(participations=0) for _ in range(2)]
    now = time.time()
    for device in fleet + held_back:  # all active
        parts.selector.request_task(device, Conditions(), now=now - 1)
    with parts.db.transaction() as conn:  # nobody seated yet
        conn.execute("DELETE FROM selections")

    answers = [parts.selector.request_task(d, Conditions(), now=now) for d in fleet[:3]]
    served_more = parts.device(participations=6)
    parts.selector.request_task(served_more, Conditions(), now=now - 1)
    waits = parts.selector.request_task(served_more, Conditions(), now=now)

    assert all(a.task is not None for a in answers)
    assert (waits.task, waits.reason) == (None, "fairness_wait")
