"""The fleet's side of releases: cut one every N rounds, tell the devices, report.

How devices hear of releases: between rounds the fleet polls the event log
(:func:`fedge.client_sim.device.events.poll_events`: the ``release`` and
``rollout`` events after the last one it saw), not the SSE subscriber.
Simulated devices act only between rounds (during one they train), so a
stream would only buffer events until then, while holding one of the
server's request threads (an embedded server has few) and one of ours; a
poll with ``after`` gives the same events, in order, none missed, at the
points where the fleet can act on them, so runs stay reproducible. When
any arrive, every device asks for the release meant for it with its ETag
(a 304 is nothing new): :mod:`fedge.client_sim.device.release_follower`.

Cutting: after every ``release_every`` rounds, ``POST /v1/admin/releases``
(the admin token) makes a release of the current global checkpoint. The
fleet waits for it to leave ``building`` (on the event long-poll, at most
``release_wait_s``), then syncs the devices until no event is new: canary
devices report, the server decides, the decision's events reach the rest.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fedge.client_sim.device.events import EventsRefused, PollResult, poll_events
from fedge.client_sim.device.release_cache import ReleaseCache
from fedge.client_sim.device.release_follower import ReleaseFollower
from fedge.client_sim.device.simulated import SimDevice
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.health import FleetHealth
from fedge.client_sim.fleet.preparation import FleetModel
from fedge.client_sim.report.fleet_report import ReleaseReport, Releases
from fedge.errors import ConfigError
from fedge.wire.releases import Release, ReleaseRecord

log = logging.getLogger("fedge.client_sim")

EVENT_TYPES = ("release", "rollout")
MAX_SYNC_PASSES = 4  # new candidate -> reports -> decision -> the rest; then stop
CUT_ROUTE = "/v1/admin/releases"
BUILDING = "building"


class FleetReleases:
    def __init__(
        self,
        model: FleetModel,
        config: FleetConfig,
        devices: list[SimDevice],
        pool: ThreadPoolExecutor,
    ) -> None:
        if config.release_every is not None and model.admin_token is None:
            raise ConfigError(
                "--release-every with --server needs the server's admin token: "
                "give --admin-token or set FEDGE_ADMIN_TOKEN"
            )
        self._model, self._config, self._pool = model, config, pool
        self.cache = ReleaseCache(model.work / "releases", min(config.workers, 4))
        self.followers = [ReleaseFollower(device, self.cache) for device in devices]
        self.outcomes: Counter[str] = Counter()
        self.health = FleetHealth(model, config, self.followers, pool)
        self._cursor: int | None = None
        self._first_new = 1  # releases from this version on were made during the run
        self._cut_after: dict[int, int] = {}  # version -> the round after which it was cut

    def start(self) -> None:
        """Note where the event log is, and give every device its release."""
        self._cursor = self._poll(None, 0).last_id
        newest = self._model.get_json("/v1/releases?limit=1")["releases"]
        self._first_new = newest[0]["version"] + 1 if newest else 1
        self.outcomes.update(self._pool.map(lambda f: f.start(), self.followers))

    def after_round(self, done: int) -> None:
        """After the fleet's ``done``-th round: cut a release when due, then sync."""
        every = self._config.release_every
        if every is not None and done % every == 0:
            self._cut(done)
        self.sync()
        self.health.after_round(done)

    def sync(self) -> None:
        """Until no release event is new: every device asks for its release."""
        for _ in range(MAX_SYNC_PASSES):
            if not self._drain():
                return
            baseline = self._live_release()
            baselines = [baseline] * len(self.followers)
            self.outcomes.update(self._pool.map(ReleaseFollower.check, self.followers, baselines))

    def report(self) -> Releases | None:
        """None when the server has no releases (a model without a bundle)."""
        listing = self._model.get_json("/v1/releases?limit=1000")
        if not listing["releases"]:
            return None
        bundles = {r["version"]: r["bundle_id"] for r in listing["releases"]}
        rollout = listing["rollout"]
        made = sorted(v for v in bundles if v >= self._first_new)
        live, candidate = bundles.get(rollout["live"]), bundles.get(rollout["candidate"])
        adoption = Counter(f.adoption(live, candidate) for f in self.followers)
        outcomes = dict(sorted({**self.outcomes, **self.health.summary()}.items()))
        return Releases(
            releases=[self._release_report(version) for version in made],
            rollout=rollout,
            adoption={k: adoption.get(k, 0) for k in ("candidate", "live", "personal", "older")},
            devices=[
                {
                    "device": f.device.index,
                    "using": f.adoption(live, candidate),
                    "bundle_id": f.state.bundle_id,
                    "adopted": sorted(f.state.adopted),
                    "reports": f.state.reports,
                }
                for f in self.followers
            ],
            outcomes=outcomes,
            health=self.health.series,
        )

    def _release_report(self, version: int) -> ReleaseReport:
        shown = self._model.get_json(f"/v1/releases/{version}")
        canary: dict[str, Any] = shown.get("canary") or {}
        return ReleaseReport(
            version=version,
            source=shown["source"],
            state=shown["state"],
            percent=shown["percent"],
            cut_after_round=self._cut_after.get(version),
            decision=canary.get("decision"),
            metric=canary.get("metric"),
            candidate=canary.get("candidate"),
            baseline=canary.get("baseline"),
            reports=int(canary.get("reports", 0)),
            using=canary.get("using", {}),
            error=shown.get("error"),
            canary=canary or None,
            parity=shown.get("parity") or {},
        )

    def _cut(self, done: int) -> None:
        body = {
            "notes": f"fedge simulate: after round {done}",
            "rollout": self._config.release_rollout,
            "by": "fedge simulate",
        }
        reply = self._model.observer.transport.request(
            "POST", CUT_ROUTE, token=self._model.admin_token, json_body=body
        )
        if reply.status != 202:
            answer = reply.json() if "json" in reply.content_type else {}
            log.warning("release cut after round %d refused: %s %s", done, reply.status, answer)
            self.outcomes[f"cut_refused:{answer.get('code', reply.status)}"] += 1
            return
        record = ReleaseRecord.from_json(reply.json())
        self._cut_after[record.version] = done
        self._wait_built(record.version)

    def _wait_built(self, version: int) -> None:
        """Wait (bounded) for a ``release`` event of ``version`` out of ``building``."""
        deadline = time.monotonic() + self._config.release_wait_s
        after = self._cursor
        while (left := deadline - time.monotonic()) > 0:
            try:
                page = poll_events(self._model.url, after, min(left, 10.0), types=["release"])
            except EventsRefused as exc:  # the server's waiting slots are taken: later
                time.sleep(min(left, exc.retry_after_s or 1.0))
                continue
            after = page.last_id
            for event in page.events:
                if event.data.get("version") == version and event.data.get("state") != BUILDING:
                    return
        log.warning("release %d still building after %.0f s", version, self._config.release_wait_s)

    def _drain(self) -> int:
        """How many release and rollout events are new (the cursor moves past them)."""
        seen = 0
        while True:
            page = self._poll(self._cursor, 0)
            self._cursor = page.last_id
            if not page.events:
                return seen
            seen += len(page.events)

    def _poll(self, after: int | None, timeout: float) -> PollResult:
        return poll_events(self._model.url, after, timeout, types=list(EVENT_TYPES))

    def _live_release(self) -> Release | None:
        """The live release: what a canary device compares the candidate with."""
        live = self._model.get_json("/v1/releases?limit=1")["rollout"]["live"]
        if live is None:
            return None
        record = self._model.get_json(f"/v1/releases/{live}")
        bundle_id = record["bundle_id"]
        return Release(live, bundle_id, record["name"], "live", f"/v1/bundles/{bundle_id}/")
