"""Accepting an upload: idempotent per (round, device), and a refusal
changes nothing, on disk included.

1. A receipt already stored for this device and round: the same bytes get
   the first receipt back (whatever state the round is in now), different
   bytes are ``duplicate_update``.
2. The round must be open and the device selected for it.
3. The bytes are validated (:func:`fedge.server.rounds.validation.validate_update`)
   against the norm bound the round opened with (:mod:`fedge.server.rounds.norm_bound`)
   and the strategy prepares the update (clips, weighs).
4. Under the round lock, in one transaction, the round is re-checked
   (still open, no other device sent the same bytes: ``duplicate_content``),
   the prepared update is appended to the round's segment file and
   ``fdatasync``-ed (:mod:`fedge.server.storage.segments`), its row is
   committed, and the update is added to the running sum. Only then is it
   acknowledged: a crash after that loses nothing, a crash before it leaves
   at most bytes no row points at.

In asynchronous aggregation (:mod:`fedge.server.rounds.buffered.selection`)
the URL's round is the version the device trained on (its lease), checked
and validated as above whatever that round's state now; the update goes
into the buffer of the version open when it commits (its row is stored
under that round), weighed by its staleness
(:mod:`fedge.server.rounds.buffered.staleness`), and refused past the bound
(``too_stale``) or after its lease (``lease_expired``, ``lease_replaced``).
Its row's name (``path``) keeps the lease's round, and its metadata too,
which is how a retry finds its receipt and how recovery re-weighs it.

Uploads of one device to one round are serialised on one of a fixed set of
striped locks (so memory stays bounded); different devices proceed in
parallel up to the commit. Commits are grouped
(:mod:`fedge.server.storage.group_commit`): the uploads that wait while one batch
commits form the next, with one segment write and ``fdatasync`` and one
database commit (one fsync) for the whole batch; each is still
acknowledged only once its bytes and its row are on disk.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fedge.server.config import ServerConfig
from fedge.server.errors import Conflict, Forbidden, NotFound
from fedge.server.metrics import Metrics
from fedge.server.rounds.buffered.leases import Leases, lease_prefix
from fedge.server.rounds.buffered.staleness import StalenessPolicy
from fedge.server.rounds.norm_bound import fixed_bound, round_bound
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.strategy import RoundStrategy
from fedge.server.rounds.validation import ValidatedUpdate, validate_update
from fedge.server.storage import rounds as rs
from fedge.server.storage.blobs import BlobStore
from fedge.server.storage.devices import Device
from fedge.server.storage.group_commit import GroupCommit
from fedge.server.storage.segments import SegmentRecord, SegmentWriter, frame_header
from fedge.server.storage.store import Store, Tx
from fedge.wire.weight_spec import ModelSpec

UPLOAD_LOCK_STRIPES = 64


class UpdateIngest:
    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        blobs: BlobStore,
        specs: ModelSpec,
        strategy: RoundStrategy,
        round_sum: RoundSum,
        metrics: Metrics,
        on_target_reached: Callable[[], None],
        leases: Leases | None = None,
        staleness: StalenessPolicy | None = None,
        folds: Callable[[], bool] = lambda: True,
    ) -> None:
        """``leases`` and ``staleness``: asynchronous aggregation (both, or
        neither). ``folds``: whether this process holds the running sum (the
        aggregator, asked under the sum's lock); a worker that does not only
        commits, and the aggregator folds its rows in
        (:mod:`fedge.server.rounds.workers`)."""
        self._folds = folds
        self._leases = leases
        self._staleness = staleness
        self._store = store
        self._blobs = blobs
        self._specs = specs
        self._max_norm = effective_max_update_norm(config, specs)
        self._norm_policy = config.norm_policy
        self._target = config.rounds.target_participants
        self._strategy = strategy
        self._sum = round_sum
        self._metrics = metrics
        self._on_target_reached = on_target_reached
        self._stripes = [threading.Lock() for _ in range(UPLOAD_LOCK_STRIPES)]
        # Segments are appended files in the blob store's local directory.
        self._segments = SegmentWriter(blobs.local_path(""))
        self._commits: GroupCommit[_Pending, dict[str, Any]] = GroupCommit(self._commit_batch)

    def close(self) -> None:
        """Close the open segment (the next upload opens a new one)."""
        with self._sum.lock:
            self._segments.close()

    def accept(self, device: Device, round_id: int, raw: bytes) -> tuple[dict[str, Any], bool]:
        """Returns (receipt, created): ``created`` is False for a retry."""
        arrived = time.perf_counter()
        receipt, created = self._accept(device, round_id, raw)
        if created:
            self._metrics.observe("fedge_update_receipt_seconds", time.perf_counter() - arrived)
        return receipt, created

    def _accept(self, device: Device, round_id: int, raw: bytes) -> tuple[dict[str, Any], bool]:
        digest = hashlib.sha256(raw).hexdigest()
        with self._stripes[hash((round_id, device.id)) % UPLOAD_LOCK_STRIPES]:
            # Looked up under the lock only: a concurrent retry of the same
            # bytes may have just committed (one read per upload, not two).
            receipt = self._known_receipt(round_id, device.id, digest)
            if receipt is not None:
                return receipt, False
            record = self._round_accepting(device, round_id)
            valid = validate_update(
                raw,
                digest,
                round_id,
                record.base_checkpoint,
                self._specs,
                round_bound(record.config, self._max_norm),
                self._norm_policy,
                stages=self._strategy.stages,
                untrained=self._strategy.roles.untrained,
            )
            name = f"{lease_prefix(round_id, device.id)}{valid.digest[:16]}"
            # Unless a stage clipped it, the update is stored as received: its
            # digest is the upload's.
            known = bytes.fromhex(digest) if valid.stored_bytes is raw else None
            pending = _Pending(device, record, valid, name, frame_header(valid.stored_bytes, known))
            return self._commits.submit(pending), True

    def _known_receipt(self, round_id: int, device_id: str, digest: str) -> dict[str, Any] | None:
        with self._store.reading() as tx:
            if self._staleness is None:
                known = tx.updates.get(round_id, device_id)
            else:
                known = self._async_receipt(tx, round_id, device_id)
        if known is None:
            return None
        if known.digest != digest:
            raise Conflict(
                "this device already sent a different update for this round",
                code="duplicate_update",
            )
        return known.receipt()

    def _async_receipt(self, tx: Tx, round_id: int, device_id: str) -> rs.UpdateRecord | None:
        """The stored update of ``device_id`` on its lease of ``round_id``:
        in the buffer of that round or of one of the next ``max_staleness``
        (any later one would have been refused), told apart from the
        device's later leases by its file's name."""
        assert self._staleness is not None
        prefix = lease_prefix(round_id, device_id)
        for buffer in range(round_id, round_id + self._staleness.max_staleness + 1):
            known = tx.updates.get(buffer, device_id)
            if known is not None and known.path.startswith(prefix):
                return known
        return None

    def _round_accepting(self, device: Device, round_id: int) -> rs.RoundRecord:
        with self._store.reading() as tx:
            record = tx.rounds.get(round_id)
            selected = tx.selections.contains(round_id, device.id)
            current = tx.rounds.open() if self._staleness is not None else None
        if record is None:
            raise NotFound(f"no round {round_id}", code="unknown_round")
        if self._staleness is not None:
            if not selected:
                raise Forbidden(
                    f"device {device.id} holds no task on version {round_id}", code="not_selected"
                )
            self._check_lease(device.id, record)
            if current is not None:
                self._staleness.staleness(round_id, current.id)
            return record
        if record.state != "open":
            raise Conflict(
                f"round {round_id} is {record.state}; fetch a new task", code="round_closed"
            )
        if not selected:
            raise Forbidden(
                f"device {device.id} is not selected for round {round_id}", code="not_selected"
            )
        return record

    def _commit_batch(self, batch: Sequence[_Pending]) -> list[dict[str, Any] | BaseException]:
        """Commit a batch of uploads: one segment append and ``fdatasync``
        per round (there is one open round), one transaction. Each gets its
        receipt, or its own refusal (its round closed, or its bytes were
        sent by another device)."""
        # Under the round lock: the round cannot end between the commit and
        # the sum, so the sum always holds exactly the round's stored updates.
        with self._sum.lock:
            slots: list[Conflict | None] = []  # a refusal, or None: a receipt to come
            accepted: list[tuple[_Pending, int, int]] = []  # (update, buffer, staleness)
            with self._store.transaction() as tx:
                open_rounds: dict[int, bool] = {}
                digests: set[tuple[int, str]] = set()
                for pending in batch:
                    placed = self._placed(tx, pending, open_rounds)
                    if isinstance(placed, Conflict):
                        slots.append(placed)
                        continue
                    buffer, staleness = placed
                    refusal = self._refusal(tx, pending, buffer, digests)
                    slots.append(refusal)
                    if refusal is not None:
                        continue
                    accepted.append((pending, buffer, staleness))
                    digests.add((buffer, pending.valid.digest))
                # The bytes are on disk before the rows commit.
                receipts = iter(self._store_accepted(tx, accepted))
                outcomes: list[dict[str, Any] | BaseException] = [
                    next(receipts) if slot is None else slot for slot in slots
                ]
            count = self._sum.count
            folding_here = self._folds()
            each_s = 0.0
            if accepted and folding_here:
                folding = time.perf_counter()
                factors = [
                    1.0 if self._staleness is None else self._staleness.factor(staleness)
                    for _, _, staleness in accepted
                ]
                count = self._sum.add_many(
                    [self._strategy.averaged(p.valid.update.deltas) for p, _, _ in accepted],
                    [p.valid.weight * f for (p, _, _), f in zip(accepted, factors, strict=True)],
                )
                for (p, _, staleness), factor in zip(accepted, factors, strict=True):
                    self._sum.factors[p.device.id] = (staleness, factor)
                    self._sum.devices.add(p.device.id)
                # The batch is folded at once: each update's share of its time.
                each_s = (time.perf_counter() - folding) / len(accepted)
            for pending, _buffer, staleness in accepted:
                if folding_here:
                    self._metrics.observe("fedge_aggregation_fold_seconds", each_s)
                self._metrics.inc("fedge_updates_accepted_total")
                if self._leases is not None:
                    self._leases.release(pending.device.id, pending.record.id)
                    self._metrics.observe("fedge_update_staleness", staleness)
                    # The dashboard's staleness histogram: accepted updates by staleness.
                    self._metrics.inc("fedge_updates_by_staleness_total", staleness=str(staleness))
            if folding_here:
                self._metrics.set("fedge_round_updates", count)
        if accepted and folding_here and count >= self._target:
            self._on_target_reached()
        return outcomes

    def _store_accepted(
        self, tx: Tx, accepted: list[tuple[_Pending, int, int]]
    ) -> list[dict[str, Any]]:
        """Append the accepted updates to their round's segment (one write
        and one ``fdatasync`` per round), then insert their rows; their
        receipts, in order."""
        located: dict[int, SegmentRecord] = {}
        for buffer in sorted({b for _, b, _ in accepted}):
            mine = [(i, p) for i, (p, b, _) in enumerate(accepted) if b == buffer]
            records = self._segments.append(
                buffer, [(p.header, p.valid.stored_bytes) for _, p in mine]
            )
            located.update((i, r) for (i, _), r in zip(mine, records, strict=True))
        receipts = []
        for index, (pending, buffer, _) in enumerate(accepted):
            stored = tx.updates.insert(
                _update_record(
                    buffer, pending.device.id, pending.valid, pending.name, located[index]
                )
            )
            receipts.append(stored.receipt())
        return receipts

    def _placed(
        self, tx: Tx, pending: _Pending, open_rounds: dict[int, bool]
    ) -> tuple[int, int] | Conflict:
        """(the round whose sum takes the update, its staleness), or why none does."""
        round_id = pending.record.id
        if self._staleness is not None:
            current = tx.rounds.open()
            if current is None:
                return Conflict("the next version is being made; upload again", code="busy")
            try:
                staleness = self._staleness.staleness(round_id, current.id)
            except Conflict as refused:
                return refused
            if tx.updates.get(current.id, pending.device.id) is not None:
                return Conflict(
                    "this device's update is already in the buffer of this version",
                    code="already_contributed",
                )
            return current.id, staleness
        if round_id not in open_rounds:
            current = tx.rounds.get(round_id)
            open_rounds[round_id] = current is not None and current.state == "open"
        if not open_rounds[round_id]:
            return Conflict(
                f"round {round_id} closed while the update was checked", code="round_closed"
            )
        return round_id, 0

    def _check_lease(self, device_id: str, record: rs.RoundRecord) -> None:
        assert self._leases is not None
        now = time.time()
        code = self._leases.refusal(device_id, record.id, now)
        if code is None and self._leases.expired_by(record.closed_at, now):
            code = "lease_expired"
        if code is not None:
            raise Conflict(
                f"the task on version {record.id} is no longer held ({code}); fetch a new task",
                code=code,
            )

    def _refusal(
        self, tx: Tx, pending: _Pending, round_id: int, digests: set[tuple[int, str]]
    ) -> Conflict | None:
        copy = (round_id, pending.valid.digest) in digests or tx.updates.has_digest(
            round_id, pending.valid.digest
        )
        if copy:
            return Conflict(
                "another device already sent these exact bytes in this round",
                code="duplicate_content",
            )
        return None


@dataclass(frozen=True)
class _Pending:
    """An upload validated and written, waiting for its batch's commit."""

    device: Device
    record: rs.RoundRecord
    valid: ValidatedUpdate
    name: str  # its row's path: r<round>/<device>-<digest>
    header: bytes  # its segment frame (segments.frame_header)


def _update_record(
    round_id: int, device_id: str, valid: ValidatedUpdate, path: str, where: SegmentRecord
) -> rs.UpdateRecord:
    return rs.UpdateRecord(
        round_id=round_id,
        device_id=device_id,
        digest=valid.digest,
        num_examples=valid.update.meta.num_examples,
        norm=valid.norm,
        clipped=valid.clipped,
        path=path,
        bytes=len(valid.stored_bytes),
        metrics=valid.update.meta.metrics,
        received_at=time.time(),
        segment=where.segment,
        segment_offset=where.offset,
    )


def effective_max_update_norm(config: ServerConfig, specs: ModelSpec) -> float | None:
    """The fixed bound (:func:`fedge.server.rounds.norm_bound.fixed_bound`),
    for rounds opened before each round stored its own."""
    return fixed_bound(config, specs)
