"""Group commit: one batch at a time, each thread gets its own outcome; and
concurrent uploads through it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fedge.server.errors import ServerError
from fedge.server.storage.group_commit import GroupCommit
from fedge.server.storage.segments import scan, segment_files
from tests.server.helpers import constant_update
from tests.server.parts import PartsOn


def wait_until(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def test_a_lone_item_is_committed_at_once() -> None:
    batches: list[list[int]] = []

    def commit(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [i * 10 for i in items]

    assert GroupCommit(commit).submit(4) == 40
    assert batches == [[4]]


def test_items_that_arrive_during_a_commit_form_the_next_batch() -> None:
    batches: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def commit(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            first_started.set()
            release.wait(10)
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(group.submit, 1)
        first_started.wait(10)
        later = [pool.submit(group.submit, i) for i in (2, 3, 4)]
        wait_until(lambda: group.waiting == 3, "three items waiting")
        release.set()
        results = [first.result(), *(f.result() for f in later)]

    assert results == [10, 20, 30, 40]
    assert batches[0] == [1] and sorted(batches[1]) == [2, 3, 4] and len(batches) == 2


def test_a_refused_item_raises_in_its_own_thread_only() -> None:
    def commit(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"no {i}") if i == 2 else i for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)

    assert group.submit(1) == 1
    with pytest.raises(ValueError, match="no 2"):
        group.submit(2)


def test_a_failed_batch_fails_each_of_its_items() -> None:
    def commit(items: Sequence[int]) -> list[int]:
        raise OSError("disk full")

    group: GroupCommit[int, int] = GroupCommit(commit)

    with pytest.raises(OSError, match="disk full"):
        group.submit(1)
    assert group.waiting == 0


def test_concurrent_uploads_are_each_stored_once(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 20})
    devices = [parts.device() for _ in range(10)]
    bases = [parts.task(d)["base_checkpoint"] for d in devices]
    # Devices 8 and 9 send the same bytes: one of them is refused.
    values = [float(i + 1) for i in range(8)] + [0.5, 0.5]

    def upload(i: int) -> str:
        try:
            parts.ingest.accept(devices[i], 1, constant_update(1, bases[i], values[i]))
        except ServerError as exc:
            return exc.code
        return "stored"

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(upload, range(10)))

    assert outcomes[:8] == ["stored"] * 8
    assert sorted(outcomes[8:]) == ["duplicate_content", "stored"]
    assert parts.round_sum.count == 9
    ((rows,),) = parts.sql("SELECT COUNT(*) FROM updates")
    # The refused copy was never written: nine records, all intact.
    scans = [scan(parts.updates_dir, s) for s in segment_files(parts.updates_dir)]
    assert rows == 9 and sum(len(s.records) for s in scans) == 9
    assert not any(s.torn for s in scans)
