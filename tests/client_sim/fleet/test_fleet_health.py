"""A fleet whose devices start writing differently raises the health alert.

The embedded server over real HTTP with 1-second health windows: after
each round every device reports how the live release (TFLite) does on its
own held-out digits. From round 3 on the digits are inverted (a new
handwriting style); the windows before are healthy, the ones after alert.
A Counter of zero alerts when no device is restyled is the control.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet


@pytest.mark.parametrize("restyle", [None, "invert"])
@pytest.mark.long(30)
def test_a_restyled_population_raises_the_alert_and_an_unchanged_one_does_not(
    tmp_path: Path, restyle: str | None
) -> None:
    config = FleetConfig(
        devices=8,
        per_round=4,
        rounds=4,
        seed=5,
        workers=4,
        health_window_s=1.0,
        restyle=restyle,
        restyle_after_round=3,
        work_dir=tmp_path,
    )

    report = run_fleet(config)

    assert report.releases is not None
    outcomes = report.releases.outcomes
    assert outcomes["health:reported"] >= 3 * 8, outcomes
    assert outcomes["health:windows"] >= 3
    if restyle is None:
        assert outcomes["health:alert_windows"] == 0
    else:
        assert outcomes["health:alert_windows"] >= 1
