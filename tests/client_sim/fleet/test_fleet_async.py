"""Python devices in an asynchronous (FedBuff) run over real HTTP, with
heavy-tailed speeds: the fleet of ``fedge simulate --aggregation async``."""

from __future__ import annotations

import statistics

from fedge.client_sim.device.profiles import fleet_profiles
from fedge.client_sim.device.speeds import SLOW_BROWSER_FACTOR, SpeedModel, with_speeds
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet


def test_speed_profiles_are_heavy_tailed_seeded_and_off_at_zero() -> None:
    base = fleet_profiles(2000)
    assert with_speeds(base, SpeedModel(0.0), seed=1) == base
    drawn = with_speeds(base, SpeedModel(1.0), seed=1)
    assert drawn == with_speeds(base, SpeedModel(1.0), seed=1)
    assert drawn != with_speeds(base, SpeedModel(1.0), seed=2)
    devices = [p.compute_s_per_example for p in drawn if p.speed_class == "device"]
    browsers = [p for p in drawn if p.speed_class == "slow_browser"]
    assert 150 <= len(browsers) <= 250  # 10 %
    median = statistics.median(devices)
    assert 0.0015 < median < 0.0027  # log-normal around its median 0.002
    # Heavy tail: the slowest percent is many times the median.
    assert sorted(devices)[int(0.99 * len(devices))] > 8 * median
    slow_median = statistics.median(p.compute_s_per_example for p in browsers)
    assert slow_median > SLOW_BROWSER_FACTOR / 2 * median
    online = [p.in_window(1000.0) for p in drawn]
    assert 0.7 < sum(online) / len(online) < 0.9  # online 80 % of each period


def test_python_devices_train_asynchronously_with_stragglers() -> None:
    config = FleetConfig(
        devices=8,
        per_round=3,
        rounds=3,
        workers=4,
        seed=3,
        aggregation="async",
        concurrency=6,
        max_staleness=3,
        speed_spread=0.5,
    )

    report = run_fleet(config)

    assert [r.state for r in report.rounds] == ["closed"] * 3
    assert all(r.participants >= 3 for r in report.rounds)
    assert report.config["aggregation"] == "async"
    assert sum(report.participation) >= 9
    assert report.scores["final"].global_test["accuracy"] > 0.5
