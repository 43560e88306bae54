"""Device speeds: stragglers in simulation as in the field.

Each device's compute time per example and network delay are drawn from a
log-normal with spread ``sigma`` around a median (heavy-tailed: a few
devices are many times slower than the typical one), and a share of the
fleet is a *slow browser* (TF.js on a CPU: ``SLOW_BROWSER_FACTOR`` times
slower again). Each device also has an availability window: it is online
for a share of a period, at its own phase (a phone that is idle and
charging at night, a tab open during office hours).

``sigma = 0`` gives today's uniform devices (no delays, always in their
window). The same profiles drive synchronous rounds and asynchronous
aggregation, so the two modes are compared on the same stragglers. The
draws depend on the seed and the device's index only.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from fedge.client_sim.device.profiles import DeviceProfile

# Medians of a typical device (a phone on Wi-Fi, the digits CNN).
COMPUTE_S_PER_EXAMPLE = 0.002
NETWORK_DELAY_S = 0.05
SLOW_BROWSER_SHARE = 0.1
SLOW_BROWSER_FACTOR = 10.0
# Availability: each device online for WINDOW_ON of every WINDOW_PERIOD_S.
WINDOW_PERIOD_S = 60.0
WINDOW_ON = 0.8


@dataclass(frozen=True)
class SpeedModel:
    sigma: float = 0.0
    compute_s_per_example: float = COMPUTE_S_PER_EXAMPLE
    network_delay_s: float = NETWORK_DELAY_S
    slow_browser_share: float = SLOW_BROWSER_SHARE
    window_period_s: float = WINDOW_PERIOD_S
    window_on: float = WINDOW_ON

    def validate(self) -> None:
        if not 0 <= self.sigma < 10:
            raise ValueError(f"speed spread {self.sigma} must be in [0, 10)")
        if not 0 <= self.slow_browser_share <= 1 or not 0 < self.window_on <= 1:
            raise ValueError("slow_browser_share must be in [0, 1], window_on in (0, 1]")


def with_speeds(profiles: list[DeviceProfile], model: SpeedModel, seed: int) -> list[DeviceProfile]:
    """``profiles`` with compute speeds, network delays and availability
    windows drawn from ``model`` (unchanged for ``sigma = 0``)."""
    model.validate()
    if model.sigma == 0:
        return list(profiles)
    return [
        _drawn(profile, model, random.Random(f"speeds:{seed}:{index}"))
        for index, profile in enumerate(profiles)
    ]


def _drawn(profile: DeviceProfile, model: SpeedModel, rng: random.Random) -> DeviceProfile:
    compute = model.compute_s_per_example * math.exp(rng.gauss(0.0, model.sigma))
    slow_browser = rng.random() < model.slow_browser_share
    if slow_browser:
        compute *= SLOW_BROWSER_FACTOR
    return replace(
        profile,
        compute_s_per_example=compute,
        latency_s=model.network_delay_s * math.exp(rng.gauss(0.0, model.sigma)),
        speed_class="slow_browser" if slow_browser else "device",
        window_period_s=model.window_period_s,
        window_on=model.window_on,
        window_phase_s=rng.random() * model.window_period_s,
    )
