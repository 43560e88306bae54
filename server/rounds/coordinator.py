"""The coordinator: the one object the views and the app factory call.

One coordinator per data directory (see :mod:`fedge.server.storage.data_dir`).
Its state lives in the Store (:mod:`fedge.server.storage.store`) and in
files under the data directory; in memory it keeps only what it can
rebuild: the current global model and the running weighted sum of the
round in progress (O(model size), whatever the number of devices). It is
a facade; each part lives, and is tested, on its own:

====================  ========================================================
device_store          enrolment, heartbeats, check-ins, participations
admission             why a device may not have a task (plain values)
selection             check-in, seat, task
ingest                an upload: receipt, validation, file, commit, running sum
round_lifecycle       open -> closing -> closed | failed, open -> abandoned
round_closer          aggregate a round, store its checkpoint, retention
recovery              rebuild memory from disk at start
round_driver          the background thread that calls ``drive`` (and the
                      hooks of :meth:`Coordinator.after_each_step`)
====================  ========================================================

In asynchronous aggregation (``aggregation.mode = "async"``) each round is
a *version*: :func:`buffered_config` makes its close condition the buffer
size, :mod:`fedge.server.rounds.buffered.selection` hands out leases instead
of seats, and ingest and recovery weigh updates by staleness (see
:mod:`fedge.server.rounds.buffered.selection` for why versions are rounds).

Requests only record; closing, aggregating and opening the next round
happen on the round driver (or an admin's ``end_round_now``).

With PostgreSQL several processes may serve one database and data
directory (:mod:`fedge.server.rounds.workers`): each has a coordinator,
and only the one whose process holds the aggregator's lease folds updates
and drives rounds; the others accept uploads and answer every read from
the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fedge.server.config import ServerConfig
from fedge.server.errors import ConfigurationError, Conflict, NotFound
from fedge.server.metrics import Metrics
from fedge.server.rounds.buffered.lease_rebuild import rebuild_leases
from fedge.server.rounds.buffered.leases import Leases
from fedge.server.rounds.buffered.progress import async_progress
from fedge.server.rounds.buffered.selection import AsyncSelector
from fedge.server.rounds.buffered.staleness import StalenessPolicy
from fedge.server.rounds.closer import RoundCloser
from fedge.server.rounds.driver import CloseFailure, RoundDriver
from fedge.server.rounds.global_model import CURRENT_CHECKPOINT, GlobalModel
from fedge.server.rounds.ingest import UpdateIngest
from fedge.server.rounds.lifecycle import RoundLifecycle
from fedge.server.rounds.norm_bound import bound_for_new_round
from fedge.server.rounds.recovery import recover
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.secure import SecureRounds
from fedge.server.rounds.selection import Selector, TaskDecision
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.rounds.workers import AggregatorRole, catch_up, default_worker_id
from fedge.server.storage import rounds as rs
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.channels import UPDATES_CHANNEL
from fedge.server.storage.devices import Conditions, Device, Enrolment
from fedge.server.storage.store import Store
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec

# With a shared data directory, only temp files this old are left-overs of a
# dead writer (others may be a live worker's upload in progress).
TEMP_AGE_S = 3600.0


class Coordinator:
    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        specs: ModelSpec,
        initial_weights: Weights | None,
        metrics: Metrics,
        model_name: str,
        blobs: BlobStores,
    ) -> None:
        """``blobs``: where updates, checkpoints and strategy state are
        kept (see :mod:`fedge.server.storage.blobs`)."""
        buffered = config.aggregation.enabled
        config = buffered_config(config)
        self.config = config
        self.store = store
        self.specs = specs
        self.metrics = metrics
        self.model_name = model_name
        self.blobs = blobs
        strategy = RoundStrategy(config, specs)
        round_sum = RoundSum()
        staleness = StalenessPolicy.of(config.aggregation) if buffered else None
        self.worker_id = config.worker_id or default_worker_id()
        # Several processes may share the database and the data directory.
        self.shared = config.database is not None
        self.role = AggregatorRole(
            store.aggregator_lease(self.worker_id, config.lease_timeout_s),
            round_sum,
            self._promote,
            metrics,
        )
        self._initial_weights = initial_weights
        self._strategy, self._sum, self._staleness = strategy, round_sum, staleness
        # Folded again at promotion (refresh): here only the model, for reads.
        model = self._recovered(fold=not self.shared)
        with store.reading() as tx:
            metrics.set("fedge_devices", tx.devices.count())
        closer = RoundCloser(blobs, strategy, config.update_retention_rounds)
        self._driver = RoundDriver(self._step, config.tick_s)
        self.secure = self._secure_rounds(strategy, round_sum)
        self.lifecycle = RoundLifecycle(
            store,
            config.rounds,
            round_sum,
            model,
            closer,
            metrics,
            norm_bound=lambda tx: bound_for_new_round(tx, config, specs),
            secure=self.secure,
            buffered=buffered,
            catch_up=(
                (
                    lambda tx, record: catch_up(
                        tx, record, blobs, strategy, round_sum, metrics, staleness
                    )
                )
                if self.shared
                else None
            ),
        )
        self._after_step: list[Callable[[], None]] = []
        names = [s.name for s in specs]
        self._selector: Selector | AsyncSelector = Selector(store, config.rounds, model_name, names)
        leases = None
        if staleness is not None:
            lease_s = config.aggregation.lease_s or config.rounds.deadline_s
            leases = Leases(
                config.aggregation.concurrency,
                lease_s,
                staleness.max_staleness,
                config.aggregation.slow_factor,
            )
            rebuild_leases(store, leases, staleness.max_staleness, time.time())
            self._selector = AsyncSelector(
                store, config.rounds, leases, staleness, model_name, names
            )
        self._leases, self._round_sum = leases, round_sum
        self._ingest = UpdateIngest(
            config,
            store,
            blobs.updates,
            specs,
            strategy,
            round_sum,
            metrics,
            self._driver.wake,
            leases,
            staleness,
            folds=lambda: self.role.active,
        )
        if self.shared:  # an update committed by any worker wakes the aggregator's driver
            store.listen(UPDATES_CHANNEL, self._update_committed)

    def _recovered(self, fold: bool) -> GlobalModel:
        return recover(
            self.store,
            self.blobs,
            self.specs,
            self._initial_weights,
            self._strategy,
            self._sum,
            self.metrics,
            self._staleness,
            temp_age_s=TEMP_AGE_S if self.shared else 0.0,
            fold=fold,
        )

    def _update_committed(self) -> None:
        """A notification: the aggregator folds it in now; another worker
        does not care (it tries the lease at its next tick)."""
        if self.role.active:
            self._driver.wake()

    def _promote(self) -> None:
        """This process took the lease: rebuild the model and the sum, as at a restart."""
        if self.shared:
            self.lifecycle.model = self._recovered(fold=True)

    def _secure_rounds(self, strategy: RoundStrategy, round_sum: RoundSum) -> SecureRounds | None:
        secure = self.config.secure_aggregation
        if not secure.enabled:
            return None
        if strategy.strategy.needs_stored_updates:
            raise ConfigurationError(
                f"secure aggregation cannot run strategy {strategy.name!r}: it needs each update"
            )
        averaged = strategy.averaged({w.name: np.empty(0) for w in self.specs})
        spec = ModelSpec(tuple(w for w in self.specs if w.name in averaged))
        return SecureRounds(
            secure, self.config.rounds, self.store, spec, round_sum, self._driver.wake
        )

    @property
    def current_checkpoint(self) -> str:
        if self.role.active:
            return self.lifecycle.model.checkpoint_id
        with self.store.reading() as tx:  # another worker's aggregator moves it
            current = tx.state.get(CURRENT_CHECKPOINT)
        return current if current is not None else self.lifecycle.model.checkpoint_id

    def aggregator(self) -> dict[str, Any]:
        """Who runs the rounds (``/healthz``): this worker's id, and the
        lease's holder, whether it is this worker, and the lease's age."""
        holder = self.role.lease.holder()
        return {
            "worker_id": self.worker_id,
            "aggregator": None if holder is None else holder.to_json(self.worker_id),
        }

    @property
    def close_failure(self) -> CloseFailure | None:
        """Why the round in progress has not closed yet, while it is retried."""
        return self.lifecycle.close_failure

    def start(self) -> None:
        """Bring rounds up to date now (if this process is the aggregator),
        then keep them moving in the background."""
        if self.role.refresh():
            with self.role.lease.fenced():
                self.lifecycle.drive()
        self._driver.start()

    def stop(self) -> None:
        self._driver.stop()
        self.role.stop()
        self._ingest.close()

    def after_each_step(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` on the round driver's thread after each of its steps
        (the release policy: a round's close has committed by then)."""
        self._after_step.append(hook)

    def _step(self) -> None:
        if not self.role.refresh():  # the lease's heartbeat, too
            self.lifecycle.stand_down()
            return  # another worker runs the rounds
        # A write of this step commits only while this worker holds the lease.
        with self.role.lease.fenced():
            self.lifecycle.drive()
            for hook in self._after_step:
                hook()

    def aggregation_stats(self, refused_stale: int, stale_since: float) -> dict[str, Any]:
        """``GET /v1/stats``' ``aggregation``: the mode, and in async mode its
        progress (:mod:`fedge.server.rounds.buffered.progress`)."""
        if self._leases is None:
            return {"mode": "sync"}
        with self._round_sum.lock:
            open_buffer = dict(self._round_sum.factors)
        return async_progress(
            self.store,
            self._leases,
            self.config.aggregation.buffer,
            open_buffer,
            refused_stale,
            stale_since,
            time.time(),
        ).to_json()

    # -- devices ---------------------------------------------------------------

    def enrol(self, platform: str, request_id: str | None, subject: str | None = None) -> Enrolment:
        with self.store.transaction() as tx:
            enrolment = tx.devices.enrol(platform, request_id, time.time(), subject)
            count = tx.devices.count()
        self.metrics.set("fedge_devices", count)
        return enrolment

    def heartbeat(self, device: Device, conditions: Conditions) -> None:
        with self.store.transaction() as tx:
            tx.devices.record_heartbeat(device.id, conditions, time.time())

    def request_task(self, device: Device, conditions: Conditions) -> TaskDecision:
        decision = self._selector.request_task(device, conditions)
        if self.secure is None or decision.task is None:
            return decision
        secure = self.secure.task_fields(decision.task["round_id"])
        if self.config.dp_clip_norm is not None:  # the server cannot clip a masked update
            secure["l2_clip"] = self.config.dp_clip_norm
        return replace(decision, task={**decision.task, "secure_aggregation": secure})

    # -- rounds ----------------------------------------------------------------

    def current_round(self) -> rs.RoundRecord:
        """The round in progress (open or closing); reads only."""
        with self.store.reading() as tx:
            record = tx.rounds.active()
        if record is None:
            raise NotFound("no round is in progress", code="no_open_round")
        return record

    def checkpoint_path(self, checkpoint_id: str) -> Path:
        """A local file of the checkpoint's blob, to stream (with Range)."""
        with self.store.reading() as tx:
            file_name = tx.checkpoints.file_name(checkpoint_id)
        if file_name is None:
            raise NotFound(f"no checkpoint {checkpoint_id}", code="unknown_checkpoint")
        return self.blobs.checkpoints.local_path(file_name)

    def accept_update(
        self, device: Device, round_id: int, raw: bytes
    ) -> tuple[dict[str, Any], bool]:
        """Returns (receipt, created). A retry of the same bytes returns the first
        receipt, whatever state the round is in now; a refusal changes nothing,
        on disk included."""
        if self.secure is not None:
            raise Conflict(
                "this server runs secure rounds: send a masked input (docs/http-api.md)",
                code="secure_round",
            )
        return self._ingest.accept(device, round_id, raw)

    def drive(self, now: float | None = None) -> None:
        """One step of the round lifecycle (see :mod:`fedge.server.rounds.lifecycle`)."""
        self.lifecycle.drive(now)

    def end_round_now(self) -> rs.RoundRecord:
        """Admin: end the open round as if its deadline had passed."""
        if not self.role.refresh():
            holder = self.role.lease.holder()
            raise Conflict(
                "this worker does not run the rounds; ask the aggregator"
                f"{f' ({holder.worker_id})' if holder is not None else ''}",
                code="not_aggregator",
            )
        with self.role.lease.fenced():
            return self.lifecycle.end_round_now()


def buffered_config(config: ServerConfig) -> ServerConfig:
    """The configuration the rounds run with: as given in sync mode; in
    async mode each round (version) closes at ``aggregation.buffer``
    updates, which is also the K that central DP's noise is calibrated to."""
    if not config.aggregation.enabled:
        return config
    if config.dp_clip_norm is not None and config.aggregation.staleness_weight != "constant":
        # The noise is calibrated to a mean of K clipped updates of weight 1
        # each; staleness factors would change the sensitivity it assumes.
        raise ConfigurationError(
            "central DP in async mode needs aggregation.staleness_weight = 'constant'"
        )
    k = config.aggregation.buffer
    return replace(config, rounds=replace(config.rounds, target_participants=k, min_participants=1))
