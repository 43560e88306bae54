"""The aggregator's lease: which one server process runs the rounds.

Exactly one process at a time closes rounds, cuts releases and holds the
open round's running sum (:mod:`fedge.server.rounds.workers`). With SQLite
that is the one process that owns the data directory (its flock,
:mod:`.data_dir`), so :class:`SoleLease` is always held. With PostgreSQL
every process that serves the database competes for a session advisory
lock (:mod:`.postgres.lease`): the database gives it to one connection,
and takes it back when that connection ends, the process's death by
SIGKILL included (the kernel closes its socket, the database sees it), or
when its heartbeat is older than ``lease_timeout_s`` (a hung holder: the
next process cuts its connections). The aggregator's writes run
:meth:`Lease.fenced`: a holder that lost the lease cannot commit them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class LeaseHolder:
    """Who runs the rounds, and since when (the lease's holder says, as it takes it)."""

    worker_id: str
    since: float  # epoch seconds
    # Seconds since its last heartbeat (None: a lease without one, SQLite's).
    heartbeat_age_s: float | None = None

    def to_json(self, this_worker: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        body: dict[str, Any] = {
            "worker_id": self.worker_id,
            "this_worker": self.worker_id == this_worker,
            "lease_age_s": round(max(0.0, now - self.since), 3),
        }
        if self.heartbeat_age_s is not None:
            body["heartbeat_age_s"] = round(max(0.0, self.heartbeat_age_s), 3)
        return body


class Lease(Protocol):
    """One process's side of the aggregator's lease."""

    @property
    def worker_id(self) -> str:
        """This process's name among the workers (its own, whether it holds the lease or not)."""

    def hold(self) -> bool:
        """Take the lease if it is free, or check that this process still
        holds it (its connection may have been cut); True while held."""

    def holder(self) -> LeaseHolder | None:
        """Who holds it now (any process's), or None while nobody does."""

    def release(self) -> None:
        """Let go (the server stops); another process takes it at its next try."""

    def fenced(self) -> contextlib.AbstractContextManager[None]:
        """This thread's write transactions inside the block commit only
        while this process holds the lease; else they roll back with
        :class:`~fedge.server.storage.store.LeaseLost`."""


class SoleLease:
    """The lease of a store one process owns (SQLite): always held."""

    def __init__(self, worker_id: str) -> None:
        self._worker_id = worker_id
        self._since = time.time()

    @property
    def worker_id(self) -> str:
        return self._worker_id

    def hold(self) -> bool:
        return True

    def holder(self) -> LeaseHolder | None:
        return LeaseHolder(self._worker_id, self._since)

    def release(self) -> None:
        """Nothing to give back: the data directory's flock is released by its owner."""

    @contextlib.contextmanager
    def fenced(self) -> Iterator[None]:
        """Nothing to check: no other process can take this lease."""
        yield
