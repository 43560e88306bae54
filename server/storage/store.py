"""The storage interface: what rounds, releases, events and devices ask of
the database, with no SQL and no driver in sight.

A :class:`Store` hands out units of work (:class:`Tx`): ``transaction()``
for writes (all or nothing, rolled back by any exception) and ``reading()``
for reads outside a transaction. A unit of work offers one attribute per
kind of row (``tx.rounds``, ``tx.devices``...), each a small protocol whose
methods take and return typed records. Two implement it: SQLite
(:mod:`.sqlite`, the default) and PostgreSQL (:mod:`.postgres`); nothing
here names a connection, a cursor or an SQL dialect. Whatever goes wrong
in the database comes out as a :class:`StoreError` (never a driver's own
exception), so callers catch it without knowing what is behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from fedge.server.storage.canary import CanaryRows
from fedge.server.storage.devices import (
    ActiveDevices,
    Conditions,
    Device,
    Enrolment,
    SeatStanding,
)
from fedge.server.storage.health import HealthRows
from fedge.server.storage.lease import Lease
from fedge.server.storage.rounds import RoundRecord, UpdateRecord
from fedge.wire.releases import ReleaseChange, ReleaseRecord, Rollout


class StoreError(Exception):
    """The database failed a request (a broken constraint, a driver error)."""


class StoreUnavailable(StoreError):
    """The database cannot answer now (busy, unreachable): a retry may succeed."""


class StoreFull(StoreError):
    """The database is out of space (the disk or a quota is full)."""


class LeaseLost(StoreUnavailable):
    """A write of the aggregator's, refused and rolled back: this process no
    longer holds the aggregator's lease (:mod:`.lease`; another took it)."""


class RoundRows(Protocol):
    """The rounds table; a state change is a compare-and-set."""

    def open(self) -> RoundRecord | None: ...

    def active(self) -> RoundRecord | None:
        """The round in progress: open, or closing (aggregation under way or retried)."""

    def get(self, round_id: int) -> RoundRecord | None: ...

    def newest_id(self) -> int | None: ...

    def recent(self, limit: int) -> list[RoundRecord]: ...

    def count_closed(self) -> int:
        """Rounds that produced a checkpoint (central DP counts its releases by it)."""

    def count_closed_through(self, round_id: int) -> int:
        """Rounds up to ``round_id`` that produced a checkpoint (the release
        policy cuts every N-th)."""

    def insert(
        self, base: str, config: dict[str, Any], now: float, deadline_s: float
    ) -> RoundRecord: ...

    def transition(self, round_id: int, expected: str, new: str, **columns: Any) -> None:
        """Set the state (and the named record fields) of the round if it is
        still ``expected``; raises :class:`~fedge.server.storage.rounds.StateChanged`
        otherwise (another process changed it first)."""


class SelectionRows(Protocol):
    """Which devices hold a seat in which round (in async mode: a lease;
    ``renew`` when granted again, ``since`` to rebuild them at start)."""

    def contains(self, round_id: int, device_id: str) -> bool: ...

    def add(self, round_id: int, device_id: str, now: float) -> None: ...

    def renew(self, round_id: int, device_id: str, now: float) -> None: ...

    def count(self, round_id: int) -> int: ...

    def since(self, first_round: int, selected_after: float) -> list[tuple[int, str, float]]: ...


class UpdateRows(Protocol):
    """Accepted uploads: their receipts, and where their files are."""

    def get(self, round_id: int, device_id: str) -> UpdateRecord | None: ...

    def has_digest(self, round_id: int, digest: str) -> bool: ...

    def insert(self, update: UpdateRecord) -> UpdateRecord: ...

    def of_round(self, round_id: int, by_arrival: bool = False) -> list[UpdateRecord]:
        """By digest (the order the aggregation has always summed them in),
        or in the order they were received."""

    def count(self, round_id: int) -> int: ...

    def forget_files_through(self, round_id: int) -> list[str]:
        """Clear the file paths of updates of rounds up to ``round_id`` that
        have ended; returns the files to delete: those cleared, and the
        segments no stored update points into any more."""

    def live_segments(self) -> set[str]:
        """The segments some stored update (not forgotten) points into."""


class CheckpointRows(Protocol):
    def add(self, checkpoint_id: str, round_id: int, file_name: str, size: int) -> None:
        """Record a checkpoint file (a second add of the same id is ignored)."""

    def file_name(self, checkpoint_id: str) -> str | None: ...

    def made_by(self, checkpoint_id: str) -> tuple[int, str] | None:
        """(the round that made the checkpoint (0: the initial weights), its
        file name); None for an unknown checkpoint."""


class ServerState(Protocol):
    """Named values that outlive a restart (the current checkpoint's id)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class EventRow:
    """An event as stored: its payload still JSON text, parsed (and, if it
    will not parse, skipped) by :mod:`fedge.server.events.log`."""

    id: int
    kind: str
    payload: str
    created_at: float


class EventRows(Protocol):
    def add(self, kind: str, payload: dict[str, Any]) -> None: ...

    def after(self, after_id: int, limit: int) -> list[EventRow]:
        """The next ``limit`` events with a larger id, in id order."""

    def latest_id(self) -> int:
        """The newest event's id; 0 when there is none."""

    def last_assigned_id(self) -> int:
        """The newest id ever given out (a rolled-back event's included): a
        cheap way to tell whether a commit added events."""


class DeviceRows(Protocol):
    def enrol(
        self, platform: str, request_id: str | None, now: float, subject: str | None = None
    ) -> Enrolment:
        """A new device, or, for a ``subject`` (of an identity token) or else
        a ``request_id`` seen before, the same device with a fresh token."""

    def count(self) -> int:
        """Enrolled devices (kept as they come and go: no scan)."""

    def expire(self, unseen_since: float, batch: int) -> int:
        """Delete up to ``batch`` devices last seen before ``unseen_since``
        that hold nothing in progress (a seat or update in an active round,
        an update file not yet cleared, a report on the canary release),
        with their rows; returns how many went."""

    def by_token_hash(self, token_hash: str) -> Device | None: ...

    def seen_since(self, *moments: float) -> tuple[int, ...]:
        """How many devices were last seen at or after each moment."""

    def platforms(self) -> list[tuple[str, int]]:
        """Enrolled devices per platform named at enrolment, most first (then by name)."""

    def ids_except(self, platform: str) -> list[str]:
        """The ids of every enrolled device not enrolled as ``platform``."""

    def record_heartbeat(self, device_id: str, conditions: Conditions, now: float) -> None: ...

    def record_check_in(self, device_id: str, conditions: Conditions, now: float) -> None:
        """A heartbeat that also asks for work: the device counts as active."""

    def least_participations(self, asked_since: float) -> int: ...

    def seat_standing(
        self, device_id: str, asked_since: float, enrolled_before: float
    ) -> SeatStanding:
        """The device's enrolment time and the settled active devices
        (enrolled before ``enrolled_before``, asked since ``asked_since``)."""

    def active(self, asked_since: float) -> ActiveDevices: ...

    def count_participations(self, device_ids: Iterable[str]) -> None:
        """Each of these devices took part in one more closed round."""


class ReleaseRows(Protocol):
    """The releases and their change log. ``live`` and ``canary`` (the
    candidate) are states, at most one release in each. Every change of a
    release writes its event in the same unit of work: ``release`` when one
    appears or changes state, ``rollout`` when the candidate's percent does."""

    def get(self, version: int) -> ReleaseRecord | None: ...

    def by_bundle(self, bundle_id: str) -> ReleaseRecord | None: ...

    def in_state(self, state: str) -> ReleaseRecord | None:
        """The release in a state only one may hold (``live``, ``canary``,
        ``building``)."""

    def versions_in_state(self, state: str) -> list[int]: ...

    def empty(self) -> bool:
        """Whether there is no release yet (not even a failed one)."""

    def has_source(self, source: str) -> bool:
        """Whether any release (in any state) came from ``source`` (``round:<id>``)."""

    def recent(self, limit: int) -> list[ReleaseRecord]:
        """Newest first."""

    def newest_retired(self) -> ReleaseRecord | None:
        """The newest release that was live and was replaced by a promotion."""

    def delivering(self) -> tuple[ReleaseRecord | None, ReleaseRecord | None]:
        """(the live release, the candidate), read together (one snapshot)."""

    def rollout(self) -> Rollout: ...

    def insert(
        self,
        *,
        bundle_id: str | None,  # None while a release is being built
        name: str,
        source: str,
        state: str,
        percent: float,
        notes: str,
        forced_reason: str | None,
        created_by: str,
    ) -> ReleaseRecord:
        """A new release, numbered one past the newest."""

    def set_state(self, version: int, state: str) -> ReleaseRecord: ...

    def set_percent(self, version: int, percent: float) -> None: ...

    def set_built(self, version: int, bundle_id: str, state: str, percent: float) -> ReleaseRecord:
        """A building release gets its bundle, its state and its percent."""

    def set_failed(self, version: int, error: str, expected: str) -> ReleaseRecord | None:
        """State ``failed`` with ``error`` if the release is still ``expected``
        (compare-and-set); None, changing nothing, if it is not."""

    def record_change(
        self,
        actor: str,
        action: str,
        version: int | None,
        why: str | None,
        details: dict[str, Any] | None = None,
    ) -> ReleaseChange: ...

    def changes(self, limit: int) -> list[ReleaseChange]:
        """The change log, newest first."""

    def change(self, change_id: int) -> ReleaseChange | None: ...


class Tx(Protocol):
    """One unit of work: every table, read or written together."""

    @property
    def rounds(self) -> RoundRows: ...

    @property
    def selections(self) -> SelectionRows: ...

    @property
    def updates(self) -> UpdateRows: ...

    @property
    def checkpoints(self) -> CheckpointRows: ...

    @property
    def state(self) -> ServerState: ...

    @property
    def events(self) -> EventRows: ...

    @property
    def devices(self) -> DeviceRows: ...

    @property
    def releases(self) -> ReleaseRows: ...

    @property
    def canary(self) -> CanaryRows: ...

    @property
    def health(self) -> HealthRows: ...


class Store(Protocol):
    """The server's database."""

    @property
    def location(self) -> str:
        """Where the data is, for messages (a file's path, a server's address)."""

    def transaction(self, durable: bool = True) -> AbstractContextManager[Tx]:
        """All or nothing; rolled back on any exception. ``durable=False``:
        the commit need not wait for the disk (a lost one costs a repeat,
        as a device's check-in does), but it stays atomic."""

    def reading(self) -> AbstractContextManager[Tx]:
        """Reads outside a transaction (each sees the latest commit)."""

    def on_commit(self, listener: Callable[[Tx], None]) -> None:
        """Call ``listener`` after every commit, in the committing thread."""

    def listen(self, channel: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` when any process commits to ``channel`` (:mod:`.channels`)."""

    def aggregator_lease(self, worker_id: str, timeout_s: float = 15.0) -> Lease:
        """This process's side of the aggregator's lease (:mod:`.lease`);
        a holder whose heartbeat is older than ``timeout_s`` may be deposed."""

    def check(self) -> None:
        """Raise (a :class:`StoreError`) unless the database answers (a health check)."""

    def close(self) -> None:
        """The server stops: stop listening, close idle connections."""

    def close_thread_connection(self) -> None:
        """Let go of what the calling thread holds open (at shutdown)."""
