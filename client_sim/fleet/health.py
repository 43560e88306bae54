"""The fleet watches the live model: each device reports its health after every round.

With ``FleetConfig.health_window_s`` set (the embedded server's window;
None: no health reports), after each of the fleet's rounds every device
reports, through its :class:`~fedge.client_sim.device.health.HealthReporter`,
how the release it serves does on its own held-out examples; from round
``restyle_after_round`` on, those examples come in another style
(``FleetConfig.restyle``, :mod:`fedge.client_sim.data.restyle`: "a new
handwriting style") on ``restyle_fraction`` of the devices (chosen by the
run's seed), which is how the simulator shows drift. A device
reports at the server's pace: after a round shorter than a window the
fleet waits for the next one (simulated time), so each round's reports
land in a window of their own. :meth:`FleetHealth.finish` waits for the last window to close
and reads the series, which judges it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fedge.client_sim.data.restyle import restyle
from fedge.client_sim.device.health import HealthReporter
from fedge.client_sim.device.release_follower import ReleaseFollower
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.preparation import FleetModel
from fedge.errors import ConfigError


class FleetHealth:
    def __init__(
        self,
        model: FleetModel,
        config: FleetConfig,
        followers: list[ReleaseFollower],
        pool: ThreadPoolExecutor,
    ) -> None:
        self._model, self._config, self._pool = model, config, pool
        self._followers = followers
        self._reporters = [
            HealthReporter(f.device.client, f.device.objective, f.cache, config.runtime)
            for f in followers
        ]
        self.outcomes: Counter[str] = Counter()
        if not 0 <= config.restyle_fraction <= 1:
            raise ConfigError(f"restyle_fraction is a share of devices: {config.restyle_fraction}")
        chosen = round(config.restyle_fraction * len(followers))
        self._restyled = set(random.Random(config.seed).sample(range(len(followers)), chosen))
        self.series: dict[str, Any] | None = None  # the live release's, after finish()

    @property
    def on(self) -> bool:
        return self._config.health_window_s is not None

    def after_round(self, done: int) -> None:
        if not self.on:
            return
        restyled = self._config.restyle is not None and done >= self._config.restyle_after_round
        # Simulated time: a round shorter than a window waits for the next
        # one, so that each round's reports land in a window of their own.
        window_s = self._config.health_window_s or 0.0
        wait = max(r.next_report_at for r in self._reporters) - time.time()
        if 0 < wait <= window_s:
            time.sleep(wait)
        self.outcomes.update(
            self._pool.map(
                lambda i: self._report(
                    self._followers[i], self._reporters[i], restyled and i in self._restyled
                ),
                range(len(self._followers)),
            )
        )

    def finish(self) -> dict[str, Any] | None:
        """The live release's series once the last window has closed (None when off)."""
        window_s = self._config.health_window_s
        if window_s is None:
            return None
        live = self._model.get_json("/v1/releases?limit=1")["rollout"]["live"]
        if live is None:
            return None
        now = time.time()
        time.sleep((int(now // window_s) + 1) * window_s - now + 0.05)
        series: dict[str, Any] = self._model.get_json(f"/v1/releases/{live}/health")
        self.series = series
        return series

    def summary(self) -> Counter[str]:
        """The devices' outcomes, and (after :meth:`finish`) the judged and alerting windows."""
        counts = Counter(self.outcomes)
        series = self.finish()
        if series is not None:
            counts["health:windows"] = len(series["windows"])
            counts["health:alert_windows"] = sum(w["alert"] for w in series["windows"])
        return counts

    def _report(self, follower: ReleaseFollower, reporter: HealthReporter, restyled: bool) -> str:
        release = follower.state.release
        if release is None:
            return "health:no_release"
        labelled = follower.device.data.holdout
        if restyled and self._config.restyle is not None:
            labelled = restyle(labelled, self._config.restyle)
        return f"health:{reporter.maybe_report(release, labelled)}"
