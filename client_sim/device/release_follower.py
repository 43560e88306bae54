"""One simulated device following the releases: what it serves, and its canary reports.

When the fleet hears that releases changed, each device asks
``GET /v1/releases/current`` with the ETag it got last (a 304: nothing new
for it). A new release is fetched (one download per process, checked
against the bundle id the device was given: :mod:`fedge.client_sim.device.release_cache`)
and scored on the device's own held-out data with the bundle's TFLite
``infer``, by the model's objective (its loss and headline metric):

* channel ``canary``: the device scores the live release too (the
  baseline) and reports both, numbers only, with the candidate's latency
  per example, the model it now serves (``using``), the candidate's
  parity on its TFLite runtime (:mod:`fedge.client_sim.device.parity`)
  and what the candidate predicted on the held-out data (a histogram of
  classes: the device's health baseline once the candidate is live);
* channel ``live``: nothing to report.

Adoption: a device serves the new release (a canary device the candidate,
or the baseline when that does better on its data) unless its personalised
model still beats it on its own held-out data; then it keeps that one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedge.client_sim.device.client import ProtocolError
from fedge.client_sim.device.health import predictions_of
from fedge.client_sim.device.parity import RUNTIME, golden_parity
from fedge.client_sim.device.release_cache import NoRuntime, ReleaseCache
from fedge.client_sim.device.releases import Release, current_release, report_evaluation
from fedge.client_sim.device.simulated import SimDevice
from fedge.client_sim.device.transport import TransportError
from fedge.wire.canary import Evaluation
from fedge.wire.predictions import Predictions

# What a device serves: a release it was given as live, the candidate, or its own.
SERVES = ("live", "candidate", "personal")


@dataclass
class Followed:
    """A device's state: the release meant for it and what it serves."""

    release: Release | None = None
    using: str = "live"
    bundle_id: str | None = None  # the release bundle it serves (or served before "personal")
    # Every bundle the device took, by id: the directory it checked against the id.
    adopted: dict[str, Path] = field(default_factory=dict)
    reports: int = 0


class ReleaseFollower:
    def __init__(self, device: SimDevice, cache: ReleaseCache) -> None:
        self.device = device
        self.cache = cache
        self.state = Followed()

    def check(self, baseline: Release | None) -> str:
        """Ask for the release meant for this device; take it if it is new.
        ``baseline``: the live release, for a canary evaluation. Returns
        what happened (``unchanged``, ``live``, ``reported``, ``refused:<code>``, ...)."""
        client = self.device.client
        etag = self.state.release.etag if self.state.release is not None else None
        try:
            release = current_release(client, etag, RUNTIME)
            if release is None:
                return "unchanged"
            path = self.cache.bundle(client, release)
            self.state.release = release  # not before: a failed fetch is asked again
            self.state.adopted[release.bundle_id] = path
            if release.channel == "canary" and baseline is not None:
                return self._canary(release, baseline)
            return self._live(release)
        except ProtocolError as exc:
            return f"refused:{exc.code}"
        except (TransportError, NoRuntime) as exc:
            return f"error:{type(exc).__name__}"

    def start(self) -> str:
        """The release the device starts with: the one it was deployed with
        (the fleet's first model), taken without a comparison."""
        client = self.device.client
        try:
            release = current_release(client, None, RUNTIME)
            if release is None:  # no ETag was sent: not a 304
                return "unchanged"
            self.state.adopted[release.bundle_id] = self.cache.bundle(client, release)
        except ProtocolError as exc:
            return f"refused:{exc.code}"  # 404 no_release: a server without a bundle
        except TransportError as exc:
            return f"error:{type(exc).__name__}"
        self.state.release = release
        self._serve(release.bundle_id, _serves(release))
        return "started"

    def _live(self, release: Release) -> str:
        holdout = self.device.data.holdout
        if len(holdout) == 0:
            self._serve(release.bundle_id, _serves(release))
            return "no_holdout"
        scores, _, _ = self._score(release.bundle_id)
        self._adopt(release.bundle_id, _serves(release), scores[self.device.objective.metric])
        return release.channel

    def _canary(self, candidate: Release, baseline: Release) -> str:
        if len(self.device.data.holdout) == 0:
            self._serve(candidate.bundle_id, "candidate")
            return "no_holdout"
        self.state.adopted[baseline.bundle_id] = self.cache.bundle(self.device.client, baseline)
        new, latency_ms, predicted = self._score(candidate.bundle_id)
        with self.cache.runtime(candidate.bundle_id) as runtime:
            parity = golden_parity(self.state.adopted[candidate.bundle_id], runtime)
        live, _, _ = self._score(baseline.bundle_id)
        metric = self.device.objective.metric
        better = self.device.objective.at_least_as_good(new[metric], live[metric])
        bundle, serves = (
            (candidate.bundle_id, "candidate") if better else (baseline.bundle_id, "live")
        )
        using = self._adopt(bundle, serves, (new if better else live)[metric])
        evaluation = Evaluation(
            baseline_version=baseline.version,
            metric=metric,
            candidate=new,
            baseline=live,
            num_examples=len(self.device.data.holdout),
            latency_ms=latency_ms,
            using={"candidate": "candidate", "live": "baseline"}.get(using, "personal"),
            runtime=RUNTIME,
            parity=parity,
            predictions=predicted,
        )
        try:
            receipt = report_evaluation(self.device.client, candidate.version, evaluation)
        except ProtocolError as exc:  # decided already, or the slice changed meanwhile
            return f"refused:{exc.code}"
        self.state.reports += 1
        return f"reported:{receipt.decided}" if receipt.decided else "reported"

    def _score(self, bundle_id: str) -> tuple[dict[str, float], float, Predictions]:
        """Loss and metric of a release on the held-out data, its ms per
        example, and what it predicted."""
        holdout = self.device.data.holdout
        with self.cache.runtime(bundle_id) as runtime:
            started = time.perf_counter()
            outputs = runtime.predict(holdout.x)
            seconds = time.perf_counter() - started
        scores = self.device.objective.evaluate(outputs, holdout.y)
        return scores, seconds * 1000 / len(holdout), predictions_of(outputs)

    def _adopt(self, bundle_id: str, serves: str, score: float) -> str:
        """Serve the release unless the personalised model still beats it."""
        personal = self.device.personal_score
        objective = self.device.objective
        has_personal = self.device.personal is not None and not math.isnan(personal)
        if has_personal and not objective.at_least_as_good(score, personal):
            self._serve(bundle_id, "personal")
            return "personal"
        self._serve(bundle_id, serves)
        return serves

    def _serve(self, bundle_id: str, using: str) -> None:
        self.state.bundle_id, self.state.using = bundle_id, using

    def adoption(self, live: str | None, candidate: str | None) -> str:
        """What the device serves, in terms of the rollout now: ``personal``,
        ``candidate``, ``live``, or ``older`` (a release it kept because it
        did better on its data, since replaced)."""
        if self.state.using == "personal":
            return "personal"
        if self.state.bundle_id is not None and self.state.bundle_id == candidate:
            return "candidate"
        if self.state.bundle_id is not None and self.state.bundle_id == live:
            return "live"
        return "older" if self.state.bundle_id is not None else "none"


def _serves(release: Release) -> str:
    return "candidate" if release.channel == "canary" else "live"
