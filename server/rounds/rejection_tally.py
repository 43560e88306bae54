"""Refused updates by reason, per round, in memory.

A refusal (a 4xx) must not change stored state, so the tally is not kept
in the database: it lives in the server process, for the most recent
rounds only, and starts again empty after a restart. The Prometheus
counter ``fedge_updates_rejected_total{reason}`` has the totals; this has
them per round, for the dashboard (``GET /v1/stats``).

Which round a refusal counts against: the round named in the upload's URL
when that round exists, else the newest round (the one in progress), so
that uploads to made-up round ids cannot push real rounds out of the tally.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from fedge.server.storage.store import Store, StoreError

KEEP_ROUNDS = 100


@dataclass(frozen=True)
class RoundRejections:
    round_id: int
    reasons: dict[str, int]  # error code -> refused uploads

    def to_json(self) -> dict[str, object]:
        return {"round_id": self.round_id, "reasons": dict(self.reasons)}


class RejectionTally:
    """Counts per (round, reason) for the ``keep`` highest round ids seen."""

    def __init__(self, keep: int = KEEP_ROUNDS) -> None:
        if keep < 1:
            raise ValueError("keep at least one round")
        self._keep = keep
        self.started_at = time.time()  # what the counts are since: this process's start
        self._lock = threading.Lock()
        self._rounds: dict[int, Counter[str]] = {}

    def record(self, round_id: int, reason: str) -> None:
        with self._lock:
            self._rounds.setdefault(round_id, Counter())[reason] += 1
            while len(self._rounds) > self._keep:
                del self._rounds[min(self._rounds)]

    def recent(self) -> list[RoundRejections]:
        """The rounds with refusals, newest first."""
        with self._lock:
            return [
                RoundRejections(round_id, dict(sorted(self._rounds[round_id].items())))
                for round_id in sorted(self._rounds, reverse=True)
            ]


_MAX_STORED_ID = 2**63 - 1  # ids are 64-bit integers: a larger one is no round


def attributed_round(store: Store, sent_to: object) -> int | None:
    """The round a refused upload to round ``sent_to`` (the URL's id, or
    ``None``) counts against, as the module doc says; ``None`` before any
    round exists, or when the database cannot be read (a refusal is still
    answered; only the tally misses it)."""
    try:
        with store.reading() as tx:
            if (
                isinstance(sent_to, int)
                and 0 < sent_to <= _MAX_STORED_ID
                and tx.rounds.get(sent_to) is not None
            ):
                return sent_to
            return tx.rounds.newest_id()
    except StoreError:
        return None
