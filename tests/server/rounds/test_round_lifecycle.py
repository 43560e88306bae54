"""The round lifecycle driven step by step, without Flask or the driver
thread. The tiny model starts at zero, so a closed round's checkpoint is
exactly the weighted mean of its deltas."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedge.server.rounds.global_model import CURRENT_CHECKPOINT, read_checkpoint
from fedge.server.rounds.lifecycle import RoundLifecycle
from fedge.server.storage import rounds as rs
from fedge.server.storage.segments import segment_files
from fedge.server.storage.sqlite.database import Database
from fedge.server.storage.sqlite.store import SQLiteTx
from tests.server.helpers import SPECS, constant_update
from tests.server.parts import Parts, PartsOn


def state_of(parts: Parts, key: str) -> str | None:
    with parts.store.reading() as tx:
        return tx.state.get(key)


def round_of(parts: Parts, round_id: int) -> rs.RoundRecord | None:
    with parts.store.reading() as tx:
        return tx.rounds.get(round_id)


def contribute(parts: Parts, values: list[float], round_id: int = 1) -> None:
    """One new device per value uploads a delta of that value (1 example each)."""
    for value in values:
        device = parts.device()
        base = parts.task(device)["base_checkpoint"]
        parts.ingest.accept(device, round_id, constant_update(round_id, base, value))


def bias(parts: Parts, checkpoint_id: str) -> Any:
    return read_checkpoint(parts.blobs.checkpoints, checkpoint_id, SPECS).weights["dense/bias"]


def events(parts: Parts) -> list[str]:
    rows = parts.sql("SELECT kind FROM events ORDER BY id")
    return [str(r["kind"]) for r in rows]


def test_a_round_that_reaches_its_target_closes_into_the_mean(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 2})
    base = parts.round(1).base_checkpoint
    contribute(parts, [1.0, 3.0])

    parts.lifecycle.drive()

    closed, following = parts.round(1), parts.round(2)
    assert closed.state == "closed" and closed.metrics["updates"] == 2
    assert closed.result_checkpoint is not None and closed.result_checkpoint != base
    np.testing.assert_allclose(bias(parts, closed.result_checkpoint), [2.0, 2.0])
    assert following.state == "open" and following.base_checkpoint == closed.result_checkpoint
    assert parts.lifecycle.model.checkpoint_id == closed.result_checkpoint
    assert state_of(parts, CURRENT_CHECKPOINT) == closed.result_checkpoint
    assert parts.round_sum.count == 0
    assert events(parts)[-3:] == ["round_closing", "round_closed", "round_opened"]


def test_a_round_waits_for_its_deadline_and_is_abandoned_without_quorum(
    parts_on: PartsOn,
    tmp_path: Path,
) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 3, "min_participants": 2})
    contribute(parts, [1.0])
    deadline = parts.round(1).deadline_at

    parts.lifecycle.drive(now=deadline - 1)
    still_open = parts.round(1).state
    parts.lifecycle.drive(now=deadline)

    assert still_open == "open"
    abandoned = parts.round(1)
    assert abandoned.state == "abandoned" and abandoned.metrics == {
        "updates": 1,
        "reason": "no quorum",
    }
    assert parts.round(2).base_checkpoint == abandoned.base_checkpoint
    assert parts.round_sum.count == 0
    assert 'fedge_rounds_total{outcome="abandoned"} 1' in parts.metrics.render()


def test_a_round_whose_result_is_not_finite_fails_and_the_model_stays(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(
        tmp_path, max_update_norm=0, strategy_params={"server_lr": 2.0}
    )  # a step of 2 takes 3e38 past float32's range
    base = parts.round(1).base_checkpoint
    contribute(parts, [3.0e38, 2.9e38])

    parts.lifecycle.drive()

    failed = parts.round(1)
    assert failed.state == "failed" and "not finite" in failed.metrics["reason"]
    assert failed.result_checkpoint is None
    assert parts.round(2).base_checkpoint == base == parts.lifecycle.model.checkpoint_id


def test_every_ending_opens_the_next_round_in_the_same_transaction(
    parts_on: PartsOn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = parts_on(
        tmp_path,
        max_update_norm=0,
        strategy_params={"server_lr": 2.0},
        rounds={"target_participants": 2, "min_participants": 2},
    )
    gaps: list[int] = []
    original = Database.transaction

    @contextmanager
    def watched(self: Database, durable: bool = True) -> Iterator[Any]:
        with original(self, durable) as conn:
            yield conn
        if SQLiteTx(self.connection()).rounds.active() is None:
            gaps.append(1)

    monkeypatch.setattr(Database, "transaction", watched)

    parts.lifecycle.drive(now=parts.round(1).deadline_at)  # abandoned
    contribute(parts, [3.0e38, 2.9e38], round_id=2)
    parts.lifecycle.drive()  # failed
    contribute(parts, [1.0, 2.0], round_id=3)
    parts.lifecycle.drive()  # closed

    assert [parts.round(i).state for i in (1, 2, 3, 4)] == ["abandoned", "failed", "closed", "open"]
    assert gaps == []


def test_a_close_that_fails_changes_nothing_and_is_retried_after_its_backoff(
    parts_on: PartsOn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure comes after the next round was opened in the closing
    transaction: the rollback undoes both, and the running sum still holds
    the round's updates, so the retry closes it into the right mean."""
    parts = parts_on(tmp_path, rounds={"target_participants": 2})
    base = parts.round(1).base_checkpoint
    contribute(parts, [1.0, 3.0])
    original = RoundLifecycle._open

    def open_then_fail(self: RoundLifecycle, conn: Any, base_checkpoint: str) -> rs.RoundRecord:
        record = original(self, conn, base_checkpoint)
        if base_checkpoint != base:  # the round after a close
            raise OSError(errno.ENOSPC, "No space left on device")
        return record

    monkeypatch.setattr(RoundLifecycle, "_open", open_then_fail)
    with pytest.raises(OSError):
        parts.lifecycle.drive()
    failure = parts.lifecycle.close_failure
    parts.lifecycle.drive()  # within the backoff: not tried

    assert failure is not None and (failure.round_id, failure.attempts) == (1, 1)
    assert parts.round(1).state == "closing" and parts.round(1).result_checkpoint is None
    assert round_of(parts, 2) is None
    assert state_of(parts, CURRENT_CHECKPOINT) == base
    assert parts.round_sum.count == 2
    assert "fedge_round_close_failing 1" in parts.metrics.render()

    monkeypatch.setattr(RoundLifecycle, "_open", original)
    parts.lifecycle.close_failure = None  # as once the backoff has passed
    parts.lifecycle.drive()

    closed = parts.round(1)
    assert closed.state == "closed" and closed.result_checkpoint is not None
    np.testing.assert_allclose(bias(parts, closed.result_checkpoint), [2.0, 2.0])
    assert parts.round(2).state == "open"


def test_a_worker_that_stands_down_no_longer_reports_its_failed_close(
    parts_on: PartsOn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deposed aggregator's last close failed (its connections were cut);
    another worker runs the rounds now, so its /healthz must not say failing."""
    parts = parts_on(tmp_path, rounds={"target_participants": 2})
    contribute(parts, [1.0, 3.0])

    def fail(self: RoundLifecycle, conn: Any, base_checkpoint: str) -> rs.RoundRecord:
        raise OSError(errno.ECONNRESET, "connection cut")

    monkeypatch.setattr(RoundLifecycle, "_open", fail)
    with pytest.raises(OSError):
        parts.lifecycle.drive()
    failure = parts.lifecycle.close_failure
    assert failure is not None and failure.round_id == 1
    assert "fedge_round_close_failing 1" in parts.metrics.render()

    parts.lifecycle.stand_down()

    assert parts.lifecycle.close_failure is None
    assert "fedge_round_close_failing 0" in parts.metrics.render()
    assert parts.round(1).state == "closing"  # the round is the new aggregator's to close


def test_an_admin_ends_the_open_round_as_at_its_deadline(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 3, "min_participants": 1})
    contribute(parts, [4.0])

    ended = parts.lifecycle.end_round_now()

    assert ended.id == 1 and ended.state == "closed"
    assert ended.result_checkpoint is not None
    np.testing.assert_allclose(bias(parts, ended.result_checkpoint), [4.0, 4.0])
    assert parts.round(2).state == "open"


def test_update_files_are_deleted_once_their_round_is_old_enough(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path, update_retention_rounds=1)
    contribute(parts, [1.0, 2.0], round_id=1)
    parts.lifecycle.drive()
    kept = segment_files(parts.updates_dir)
    contribute(parts, [1.0, 2.0], round_id=2)
    parts.lifecycle.drive()

    left = segment_files(parts.updates_dir)
    paths = parts.sql("SELECT round_id, path FROM updates ORDER BY round_id")
    # One segment per round: round 1's is deleted with its rows' paths.
    assert [s.split("/")[0] for s in kept] == ["r000001"]
    assert [s.split("/")[0] for s in left] == ["r000002"]
    assert [(r["round_id"], r["path"] == "") for r in paths] == [
        (1, True),
        (1, True),
        (2, False),
        (2, False),
    ]
