"""What a fleet run is asked to do: one frozen record, built by ``fedge simulate``
(and ``fedge demo``, the notebooks and the benchmarks) and read by every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.errors import ConfigError
from fedge.reference.data import PUBLIC_FRACTION

DEFAULT_DEVICES = 20


def parse_faults(values: tuple[str, ...]) -> dict[str, int]:
    """``("nan=2", "poison=1")`` (``fedge simulate --fault``) -> ``FleetConfig.faults``."""
    faults: dict[str, int] = {}
    for value in values:
        kind, _, count = value.partition("=")
        if not count.isdigit():
            raise ConfigError(f"expected KIND=COUNT, got {value!r}")
        faults[kind] = int(count)
    return faults


@dataclass(frozen=True)
class FleetConfig:
    # None: one device per device id in --data, else DEFAULT_DEVICES.
    devices: int | None = None
    # Updates that close a round (None: min(10, the fleet's devices), or
    # with server_url the server's; see fedge.client_sim.fleet.round_target).
    per_round: int | None = None
    rounds: int = 10
    alpha: float = 0.5
    min_examples: int = 4
    seed: int = 0
    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.05
    runtime: str = "tflite"
    dropout: float = 0.0
    crash: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    workers: int = 8
    deadline_s: float = 20.0
    over_selection: float = 1.0
    min_participants: int | None = None
    server_url: str | None = None
    strategy: str = "fedavg"
    # The embedded server's device_weighting ("examples" or "equal"; None: its default).
    device_weighting: str | None = None
    # More settings of the embedded server (ServerConfig keys), for tests and
    # benchmarks that need one changed: e.g. plain FedAvg's uncapped weights.
    server_settings: dict[str, Any] = field(default_factory=dict)
    # Weight name patterns (or "bn") that stay on each device: out of the
    # server's aggregate, and each simulated device keeps its own values.
    local_state: tuple[str, ...] = ()
    work_dir: Path | None = None
    # The reference CNN's smooth twin (GELU, average pooling) instead of the
    # product CNN: for comparing engines (see fedge.reference.model.build_reference_model).
    smooth_model: bool = False
    # The user's model (bundle directory or Keras file) and the devices' data
    # (.npz, .csv or an image folder); None: the reference task.
    model: Path | None = None
    data: Path | None = None
    # The reference task: the share of the digits the team trains on before
    # deploying (0: start from a seeded random CNN); devices hold the rest.
    public_fraction: float = PUBLIC_FRACTION
    # The reference task for more devices than it has examples: this many
    # shards, device i holding shard i % data_shards (None: one per device).
    data_shards: int | None = None
    test_fraction: float = 0.2
    holdout_fraction: float = 0.2
    # Releases (fedge.client_sim.fleet.releases): after every N rounds ask the
    # server to cut one (None: never; the admin token: the embedded server's,
    # or this one for --server), at this rollout percent, and wait this long
    # for it to be built. canary_min_reports: the embedded server's floor of counted devices.
    release_every: int | None = None
    release_rollout: float = 50.0
    release_wait_s: float = 300.0
    canary_min_reports: int | None = None
    admin_token: str | None = field(default=None, repr=False)
    # The live model's health (fedge.client_sim.fleet.health): the embedded
    # server's window (None: devices report no health); from round
    # restyle_after_round on, the held-out examples of restyle_fraction of the
    # devices (a seeded choice) come in the style `restyle`
    # (fedge.client_sim.data.restyle: "invert", "shift").
    health_window_s: float | None = None
    restyle: str | None = None
    restyle_after_round: int = 0
    restyle_fraction: float = 1.0
    # Where the devices run: "thread" (this process) or "ray" (Ray actors,
    # fedge.client_sim.fleet.ray.backend): on the cluster at ray_address, or a local
    # Ray; ray_hosts actors (default: one per CPU of the cluster).
    backend: str = "thread"
    ray_address: str | None = None
    ray_hosts: int | None = None
    # Device speeds (fedge.client_sim.device.speeds): the log-normal spread of
    # compute speeds and network delays, with slow browsers and availability
    # windows (0: uniform devices, no delays).
    speed_spread: float = 0.0
    # The embedded server's aggregation (fedge.server.async_config): "sync"
    # rounds or "async" (FedBuff) versions of `buffer` updates (None: per_round),
    # `concurrency` devices training at once, updates at most `max_staleness`
    # versions old weighed by `staleness_weight` (None: the server's default).
    aggregation: str = "sync"
    buffer: int | None = None
    concurrency: int | None = None
    max_staleness: int | None = None
    staleness_weight: str | None = None

    @property
    def asynchronous(self) -> bool:
        return self.aggregation == "async"

    def aggregation_settings(self, per_round: int) -> dict[str, Any]:
        """The embedded server's ``[aggregation]`` table."""
        if not self.asynchronous:
            return {"mode": "sync"}
        optional = {
            "concurrency": self.concurrency,
            "max_staleness": self.max_staleness,
            "staleness_weight": self.staleness_weight,
        }
        return {
            "mode": "async",
            "buffer": self.buffer or per_round,
            **{k: v for k, v in optional.items() if v is not None},
        }
