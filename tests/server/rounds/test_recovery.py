"""Rebuilding memory at start, without Flask: a restart is a second
:func:`build_parts` on the same data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedge.server.config import ServerConfig
from fedge.server.errors import ConfigurationError
from fedge.server.metrics import server_metrics
from fedge.server.rounds import recovery
from fedge.server.rounds.recovery import recover
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.sqlite.store import SQLiteStore
from tests.server.helpers import SPECS, constant_update
from tests.server.parts import PartsOn


def test_a_restart_adds_the_stored_updates_of_the_open_round_again(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    before = parts_on(tmp_path, rounds={"target_participants": 3})
    for value, examples in ((1.0, 1), (4.0, 3)):
        device = before.device()
        base = before.task(device)["base_checkpoint"]
        before.ingest.accept(device, 1, constant_update(1, base, value, examples))

    after = parts_on(tmp_path, rounds={"target_participants": 3})

    assert after.round_sum.count == 2
    # (1 * 1 + 3 * 4) / 4 = 3.25
    np.testing.assert_allclose(after.round_sum.mean.result()["dense/bias"], [3.25, 3.25])
    assert after.lifecycle.model.checkpoint_id == before.lifecycle.model.checkpoint_id
    assert "fedge_current_round 1" in after.metrics.render()
    assert "fedge_round_updates 2" in after.metrics.render()


def test_a_restart_folds_the_stored_updates_in_batches(
    parts_on: PartsOn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery (and a worker's catch-up) adds stored updates as the group
    commit does, a batch at a time, in batches of at most
    ``FOLD_BATCH_UPDATES``."""
    before = parts_on(tmp_path, rounds={"target_participants": 9})
    for value, examples in ((1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 5)):
        device = before.device()
        base = before.task(device)["base_checkpoint"]
        before.ingest.accept(device, 1, constant_update(1, base, value, examples))
    batches: list[int] = []
    real_add_many = RoundSum.add_many

    def recording(self: RoundSum, deltas: Any, weights: Any) -> int:
        batches.append(len(deltas))
        return real_add_many(self, deltas, weights)

    monkeypatch.setattr(recovery, "FOLD_BATCH_UPDATES", 2)
    monkeypatch.setattr(RoundSum, "add_many", recording)

    after = parts_on(tmp_path, rounds={"target_participants": 9})

    assert batches == [2, 2, 1]
    assert after.round_sum.count == 5 and after.round_sum.devices == before.round_sum.devices
    # (1 + 4 + 9 + 16 + 25) / 15 = 55 / 15
    np.testing.assert_allclose(after.round_sum.mean.result()["dense/bias"], [55 / 15] * 2)


def test_a_restart_after_a_close_trains_from_the_new_checkpoint(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    before = parts_on(tmp_path, rounds={"target_participants": 1})
    device = before.device()
    base = before.task(device)["base_checkpoint"]
    before.ingest.accept(device, 1, constant_update(1, base, 2.0))
    before.lifecycle.drive()

    after = parts_on(tmp_path, rounds={"target_participants": 1})

    assert after.lifecycle.model.checkpoint_id == before.round(1).result_checkpoint
    np.testing.assert_allclose(after.lifecycle.model.weights["dense/bias"], [2.0, 2.0])
    assert after.round_sum.count == 0  # round 2 has no updates yet
    assert after.round(2).state == "open"


def test_leftover_temp_files_are_removed(parts_on: PartsOn, tmp_path: Path) -> None:
    parts = parts_on(tmp_path)
    leftover = parts.updates_dir / "r000001" / ".cut-short.safetensors.x1.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")

    parts_on(tmp_path)

    assert not leftover.exists()


def test_a_damaged_checkpoint_stops_the_restart_instead_of_training_from_it(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    before = parts_on(tmp_path)
    checkpoint_id = before.lifecycle.model.checkpoint_id
    stored = before.blobs.checkpoints.local_path(f"{checkpoint_id}.safetensors")
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0x40  # a flipped bit in the last weight: still a valid file
    stored.write_bytes(bytes(data))

    with pytest.raises(ConfigurationError, match=f"checkpoint {checkpoint_id} is damaged"):
        parts_on(tmp_path)


def test_a_database_with_no_checkpoint_needs_the_initial_weights(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path)
    store = SQLiteStore.in_data_dir(config.data_dir)

    with pytest.raises(ConfigurationError, match="no checkpoint"):
        recover(
            store,
            BlobStores.under(tmp_path),
            SPECS,
            None,
            RoundStrategy(config),
            RoundSum(),
            server_metrics(),
        )
