"""What makes simulated devices differ: availability, conditions, links, faults."""

from __future__ import annotations

from dataclasses import dataclass

FAULTS = ("nan", "wrong_shape", "replay", "stale_base", "poison")


@dataclass(frozen=True)
class DeviceProfile:
    """Probabilities are per round; delays are simulated with sleeps.

    ``fault`` makes the device misbehave on purpose (``nan``: NaN deltas,
    ``wrong_shape``: a truncated tensor, ``replay``: re-sends its previous
    round's update, ``stale_base``: trains on an old checkpoint,
    ``poison``: trains on wrong labels, see
    :func:`fedge.client_sim.device.simulated.poison_labels`; its updates pass every
    server check but pull the global model the wrong way, while its
    held-out data, on which it scores releases, stays honest).
    """

    availability: float = 1.0
    p_idle: float = 1.0
    p_charging: float = 1.0
    p_unmetered: float = 1.0
    compute_s_per_example: float = 0.0
    latency_s: float = 0.0
    bandwidth_bytes_s: float | None = None
    dropout: float = 0.0
    crash_mid_upload: float = 0.0
    fault: str | None = None
    # Speeds (fedge.client_sim.device.speeds): "device" or "slow_browser",
    # and the availability window: online for window_on of every
    # window_period_s seconds, from window_phase_s (None: always).
    speed_class: str = "device"
    window_period_s: float | None = None
    window_on: float = 1.0
    window_phase_s: float = 0.0

    def in_window(self, now: float) -> bool:
        """Whether the device is online at ``now`` (seconds, wall clock)."""
        if self.window_period_s is None:
            return True
        position = (now + self.window_phase_s) % self.window_period_s
        return position < self.window_on * self.window_period_s

    def transfer_s(self, nbytes: int) -> float:
        if self.bandwidth_bytes_s is None:
            return self.latency_s
        return self.latency_s + nbytes / self.bandwidth_bytes_s


def fleet_profiles(
    n: int,
    dropout: float = 0.0,
    crash: float = 0.0,
    faults: dict[str, int] | None = None,
    availability: float = 1.0,
) -> list[DeviceProfile]:
    """``n`` profiles; the first devices get the requested faults, in order."""
    assigned: list[str | None] = []
    for fault, count in (faults or {}).items():
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
        assigned.extend([fault] * count)
    if len(assigned) > n:
        raise ValueError(f"{len(assigned)} faulty devices requested, fleet has {n}")
    assigned.extend([None] * (n - len(assigned)))
    return [
        DeviceProfile(
            availability=availability, dropout=dropout, crash_mid_upload=crash, fault=fault
        )
        for fault in assigned
    ]
