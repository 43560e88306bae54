"""Server optimizers fine-tune the deployed model rather than replace it.

The hybrid story starts from a model trained centrally; FedAvgM and FedAdam
with their default settings must not make it worse on the devices' own data
(before their trust region, FedAdam took the digits CNN from 0.94 to 0.27).
"""

from __future__ import annotations

import pytest

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet


@pytest.mark.parametrize("strategy", ["fedadam", "fedavgm"])
def test_default_server_optimizers_keep_the_deployed_model_s_accuracy(strategy: str) -> None:
    config = FleetConfig(
        devices=6, per_round=3, rounds=3, local_epochs=2, workers=3, seed=1, strategy=strategy
    )

    report = run_fleet(config)

    deployed, final = report.scores["deployed"], report.scores["final"]
    assert [r.state for r in report.rounds] == ["closed"] * 3
    # The devices write in their own styles: their accuracy is what the fleet
    # is for (the global test, in the public style, drops under FedAvg too).
    assert final.devices["accuracy"] >= deployed.devices["accuracy"], (deployed, final)
