"""A poisoned fleet's release is stopped at the canary.

Devices with the ``poison`` fault train on wrong labels: their updates are
finite, rightly shaped and small enough, so the server accepts them and
the global model learns the wrong classes. A release cut from such a
round goes to the canary slice, whose devices score it on their own
held-out data (honest on every device) against the live release: it is
worse by far more than the margin, so the server rolls it back and the
deployed release stays live.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedge.client_sim.device.profiles import FAULTS, fleet_profiles
from fedge.client_sim.device.simulated import poison_labels
from fedge.client_sim.fleet.config import FleetConfig, parse_faults
from fedge.client_sim.fleet.run import run_fleet
from fedge.task.objective import Objective


def test_class_ids_become_the_next_class() -> None:
    labels = np.array([0, 3, 9], dtype=np.int64)

    poisoned = poison_labels(labels, Objective("sparse_categorical_crossentropy"), 10)

    np.testing.assert_array_equal(poisoned, [1, 4, 0])
    assert poisoned.dtype == labels.dtype


def test_one_hot_and_binary_targets_become_the_wrong_class() -> None:
    one_hot = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32)
    binary = np.array([[0.0], [1.0]], dtype=np.float32)

    rolled = poison_labels(one_hot, Objective("categorical_crossentropy"), 3)
    flipped = poison_labels(binary, Objective("binary_crossentropy"), 1)

    np.testing.assert_array_equal(rolled, [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(flipped, [[1.0], [0.0]])


def test_regression_targets_are_negated() -> None:
    targets = np.array([[1.5], [-2.0]], dtype=np.float32)

    poisoned = poison_labels(targets, Objective("mean_squared_error"), 1)

    np.testing.assert_array_equal(poisoned, [[-1.5], [2.0]])


def test_poison_is_a_fault_the_fleet_and_the_cli_accept() -> None:
    profiles = fleet_profiles(3, faults=parse_faults(("poison=2",)))

    assert "poison" in FAULTS
    assert [p.fault for p in profiles] == ["poison", "poison", None]


@pytest.mark.long(27)
def test_a_release_cut_from_poisoned_rounds_is_rolled_back_by_the_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 9 of 10 devices poison; a round takes 8 updates, so at least 7 of them
    # are poisoned, and 5 local epochs let each learn its wrong labels. After
    # 3 such rounds the global model does far worse on the devices' data
    # than the deployed one (the canary's candidate mean was 0.13 to 0.23
    # below the live release's in repeated runs of the old rule). Every
    # device gets the release (rollout 100 %), scores it on its honest
    # held-out data, and has a history (24 seats for 10 devices), so every
    # report counts: the sequential test rolls it back once the paired
    # differences show it worse. Ten devices are few: seed 5's candidate is
    # 0.17 worse on average but the devices spread, and the ten reports give
    # an e-value of 16.3, short of 1/0.05 = 20 (the canary keeps collecting,
    # then ends with the default rollback at canary_max_s). The betting
    # e-value also depends on the order the reports arrive in, which thread
    # scheduling decides (it fell short once in a full-suite run). A fleet this
    # small takes a 20 % wrong-rollback rate here: threshold 5.
    monkeypatch.setenv("FEDGE_CANARY_BETA", "0.2")  # read by the embedded server
    config = FleetConfig(
        devices=10,
        per_round=8,
        rounds=3,
        seed=5,
        workers=4,
        local_epochs=5,
        faults={"poison": 9},
        release_every=3,
        release_rollout=100.0,
        canary_min_reports=5,
        work_dir=tmp_path,
    )

    report = run_fleet(config)

    # The poisoned updates passed every server check: at least 7 a round.
    assert all(r.state == "closed" for r in report.rounds)
    assert all(set(r.rejects) <= {"round_closed"} for r in report.rounds)
    assert sum(report.participation[:9]) >= 3 * 7
    # The release cut after round 3 was rolled back on the canary's numbers.
    releases = report.releases
    assert releases is not None
    (release,) = releases.releases
    assert release.cut_after_round == 3
    assert (release.decision, release.state) == ("rollback", "rolled_back")
    assert release.canary is not None
    assert 5 <= release.canary["devices"] <= release.reports <= 10
    assert release.canary["statistic"]["rollback"] >= release.canary["threshold"]["rollback"]
    assert release.canary["threshold"]["rollback"] == pytest.approx(5)
    assert release.canary["estimate"] < -0.05
    assert release.candidate is not None and release.baseline is not None
    assert release.candidate["accuracy"] < release.baseline["accuracy"] - 0.05
    # The deployed release (the one before it) stays live; no device serves
    # the candidate.
    assert releases.rollout["live"] == release.version - 1
    assert releases.rollout["candidate"] is None
    assert releases.adoption["candidate"] == 0
