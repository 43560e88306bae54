"""Accepting uploads, alone: receipts, refusals, files on disk, the running sum."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedge.server.config import ServerConfig
from fedge.server.errors import Conflict, Forbidden, NotFound, ServerError
from fedge.server.rounds.ingest import effective_max_update_norm
from tests.server.helpers import SPECS, constant_update
from tests.server.parts import Parts, PartsOn


def update_files(parts: Parts) -> list[Path]:
    return sorted(p for p in parts.updates_dir.rglob("*") if p.is_file())


def refused(call: Callable[[], object]) -> ServerError:
    """The error that ``call`` raises."""
    with pytest.raises(ServerError) as caught:
        call()
    return caught.value


def test_an_accepted_update_is_stored_summed_and_receipted(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 3})
    device = parts.device()
    base = parts.task(device)["base_checkpoint"]

    receipt, created = parts.ingest.accept(device, 1, constant_update(1, base, 2.0, 5))

    assert created
    assert (receipt["round_id"], receipt["device_id"]) == (1, device.id)
    assert receipt["num_examples"] == 5 and receipt["norm"] == pytest.approx(2.0 * np.sqrt(6))
    assert len(update_files(parts)) == 1
    assert parts.round_sum.count == 1
    np.testing.assert_allclose(parts.round_sum.mean.result()["dense/bias"], [2.0, 2.0])
    assert parts.wakes == []  # 1 of 3: the round is not full yet


def test_a_retry_of_the_same_bytes_returns_the_first_receipt(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 3})
    device = parts.device()
    body = constant_update(1, parts.task(device)["base_checkpoint"], 1.0)
    first, _ = parts.ingest.accept(device, 1, body)

    again, created = parts.ingest.accept(device, 1, body)

    assert (again, created) == (first, False)
    assert parts.round_sum.count == 1


def test_refusals_change_nothing_on_disk_or_in_the_sum(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 3})
    sender, copier, outsider = parts.device(), parts.device(), parts.device()
    base = parts.task(sender)["base_checkpoint"]
    parts.task(copier)
    body = constant_update(1, base, 1.0)
    parts.ingest.accept(sender, 1, body)

    other_bytes = refused(lambda: parts.ingest.accept(sender, 1, constant_update(1, base, 9.0)))
    same_bytes = refused(lambda: parts.ingest.accept(copier, 1, body))
    not_selected = refused(lambda: parts.ingest.accept(outsider, 1, constant_update(1, base, 3.0)))
    no_round = refused(lambda: parts.ingest.accept(copier, 7, constant_update(7, base, 3.0)))

    assert isinstance(other_bytes, Conflict) and other_bytes.code == "duplicate_update"
    assert isinstance(same_bytes, Conflict) and same_bytes.code == "duplicate_content"
    assert isinstance(not_selected, Forbidden) and not_selected.code == "not_selected"
    assert isinstance(no_round, NotFound) and no_round.code == "unknown_round"
    assert len(update_files(parts)) == 1
    assert parts.round_sum.count == 1


def test_reaching_the_target_wakes_the_driver_once(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 2})
    first, second = parts.device(), parts.device()
    base = parts.task(first)["base_checkpoint"]
    parts.task(second)

    parts.ingest.accept(first, 1, constant_update(1, base, 1.0))
    parts.ingest.accept(second, 1, constant_update(1, base, 3.0))

    assert parts.wakes == [2]
    assert "fedge_round_updates 2" in parts.metrics.render()


def test_an_update_to_an_ended_round_is_refused(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 2, "min_participants": 2})
    device = parts.device()
    base = parts.task(device)["base_checkpoint"]
    parts.lifecycle.drive(now=parts.round(1).deadline_at + 1)  # no quorum: abandoned

    late = refused(lambda: parts.ingest.accept(device, 1, constant_update(1, base, 1.0)))

    assert isinstance(late, Conflict) and late.code == "round_closed"
    assert update_files(parts) == []


def test_the_default_norm_bound_grows_with_the_model() -> None:
    # The tiny model has 4 + 2 = 6 weights: 10 * sqrt(6).
    assert effective_max_update_norm(ServerConfig(), SPECS) == pytest.approx(24.4949, 1e-4)
    assert effective_max_update_norm(ServerConfig(max_update_norm=3.0), SPECS) == 3.0
    assert effective_max_update_norm(ServerConfig(max_update_norm=0), SPECS) is None


def test_concurrent_uploads_batched_by_the_group_commit_sum_exactly(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    """Uploads at once are committed in batches and added to the sum a
    batch at a time (``RoundSum.add_many``): the sum holds each once."""
    parts = parts_on(tmp_path, rounds={"target_participants": 50})
    devices = [parts.device() for _ in range(12)]
    bodies = [
        constant_update(1, parts.task(device)["base_checkpoint"], 0.1 * (i + 1), i + 2)
        for i, device in enumerate(devices)
    ]
    start = threading.Barrier(len(devices))

    def upload(i: int) -> None:
        start.wait()
        parts.ingest.accept(devices[i], 1, bodies[i])

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(devices))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert parts.round_sum.count == len(devices)
    weights = [i + 2 for i in range(len(devices))]
    expected = sum(w * 0.1 * (i + 1) for i, w in enumerate(weights)) / sum(weights)
    np.testing.assert_allclose(
        parts.round_sum.mean.result()["dense/bias"], [expected] * 2, rtol=1e-6
    )
