"""Canary evaluations and decisions in SQLite
(:class:`~fedge.server.storage.canary.CanaryRows`)."""

from __future__ import annotations

import json
import sqlite3

from fedge.server.storage.canary import Decision, StoredEvaluation
from fedge.server.storage.sql import SqlConnection as Connection
from fedge.wire.canary import USING, Evaluation, Parity
from fedge.wire.predictions import Predictions

_COLUMNS = (
    "device_id, baseline_version, metric, candidate_loss, candidate_metric, baseline_loss, "
    "baseline_metric, num_examples, latency_ms, using_model, received_at"
)


_PREFIXED = ", ".join(f"e.{name.strip()}" for name in _COLUMNS.split(","))
# Every read takes the optional runtime, parity and predictions along (issue 23).
_SELECT = (
    f"SELECT {_PREFIXED}, p.runtime, p.max_abs_error, p.top1_agreement, p.samples, "
    "q.histogram, q.quantiles "
    "FROM canary_evaluations e LEFT JOIN canary_parity p "
    "ON p.version = e.version AND p.device_id = e.device_id "
    "LEFT JOIN canary_predictions q ON q.version = e.version AND q.device_id = e.device_id"
)
# A device counts if it was enrolled before the candidate and (unless the
# setting waives it) had a history then: an accepted update, or a report on
# an earlier release, received before the candidate. Parameters: the
# candidate's creation time, 1 to waive the history, the candidate's version,
# the creation time again (twice).
_ELIGIBLE = (
    "d.created_at < ? AND (? = 1 OR EXISTS (SELECT 1 FROM updates u "
    "WHERE u.device_id = d.id AND u.received_at < ?) "
    "OR EXISTS (SELECT 1 FROM canary_evaluations h "
    "WHERE h.device_id = d.id AND h.version < ? AND h.received_at < ?))"
)


def _eligible(before: float, require_history: bool, version: int) -> tuple[object, ...]:
    return (before, int(not require_history), before, version, before)


def _stored(row: sqlite3.Row) -> StoredEvaluation:
    metric = str(row["metric"])
    evaluation = Evaluation(
        baseline_version=int(row["baseline_version"]),
        metric=metric,
        candidate={"loss": row["candidate_loss"], metric: row["candidate_metric"]},
        baseline={"loss": row["baseline_loss"], metric: row["baseline_metric"]},
        num_examples=int(row["num_examples"]),
        latency_ms=float(row["latency_ms"]),
        using=str(row["using_model"]),
        runtime=None if row["runtime"] is None else str(row["runtime"]),
        parity=None
        if row["samples"] is None
        else Parity(float(row["max_abs_error"]), float(row["top1_agreement"]), int(row["samples"])),
        predictions=_predictions(row["histogram"], row["quantiles"]),
    )
    return StoredEvaluation(str(row["device_id"]), float(row["received_at"]), evaluation)


def _predictions(histogram: str | None, quantiles: str | None) -> Predictions | None:
    if histogram is None and quantiles is None:
        return None
    return Predictions(
        None if histogram is None else tuple(int(c) for c in json.loads(histogram)),
        None if quantiles is None else tuple(float(q) for q in json.loads(quantiles)),
    )


class SQLiteCanary:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def find(self, version: int, device_id: str) -> StoredEvaluation | None:
        row = self._conn.execute(
            f"{_SELECT} WHERE e.version = ? AND e.device_id = ?",
            (version, device_id),
        ).fetchone()
        return _stored(row) if row is not None else None

    def insert(
        self, version: int, device_id: str, evaluation: Evaluation, at: float
    ) -> StoredEvaluation:
        e = evaluation
        self._conn.execute(
            f"INSERT INTO canary_evaluations (version, {_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                version,
                device_id,
                e.baseline_version,
                e.metric,
                e.candidate["loss"],
                e.candidate[e.metric],
                e.baseline["loss"],
                e.baseline[e.metric],
                e.num_examples,
                e.latency_ms,
                e.using,
                at,
            ),
        )
        if e.runtime is not None:
            p = e.parity
            self._conn.execute(
                "INSERT INTO canary_parity (version, device_id, runtime, max_abs_error, "
                "top1_agreement, samples) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    version,
                    device_id,
                    e.runtime,
                    None if p is None else p.max_abs_error,
                    None if p is None else p.top1_agreement,
                    None if p is None else p.samples,
                ),
            )
        if e.predictions is not None:
            h, q = e.predictions.histogram, e.predictions.quantiles
            self._conn.execute(
                "INSERT INTO canary_predictions (version, device_id, histogram, quantiles) "
                "VALUES (?, ?, ?, ?)",
                (
                    version,
                    device_id,
                    None if h is None else json.dumps(list(h)),
                    None if q is None else json.dumps(list(q)),
                ),
            )
        return StoredEvaluation(device_id, at, evaluation)

    def listing(self, version: int, limit: int) -> list[StoredEvaluation]:
        rows = self._conn.execute(
            f"{_SELECT} WHERE e.version = ? ORDER BY e.received_at, e.device_id LIMIT ?",
            (version, limit),
        ).fetchall()
        return [_stored(row) for row in rows]

    def metric_of(self, version: int) -> str | None:
        row = self._conn.execute(
            "SELECT metric FROM canary_evaluations WHERE version = ? LIMIT 1", (version,)
        ).fetchone()
        return str(row["metric"]) if row is not None else None

    def counted(self, version: int, before: float, require_history: bool) -> list[StoredEvaluation]:
        rows = self._conn.execute(
            f"{_SELECT} JOIN devices d ON d.id = e.device_id "
            f"WHERE e.version = ? AND {_ELIGIBLE} ORDER BY e.received_at, e.device_id",
            (version, *_eligible(before, require_history, version)),
        ).fetchall()
        return [_stored(row) for row in rows]

    def eligible_devices(self, version: int, before: float, require_history: bool) -> list[str]:
        rows = self._conn.execute(
            f"SELECT d.id FROM devices d WHERE d.platform != 'observer' AND {_ELIGIBLE}",
            _eligible(before, require_history, version),
        ).fetchall()
        return [str(row["id"]) for row in rows]

    def count(self, version: int) -> tuple[int, dict[str, int]]:
        using = dict.fromkeys(USING, 0)
        for choice in self._conn.execute(
            "SELECT using_model, COUNT(*) AS n FROM canary_evaluations WHERE version = ? "
            "GROUP BY using_model",
            (version,),
        ):
            using[str(choice["using_model"])] = int(choice["n"])
        return sum(using.values()), using

    def decision(self, version: int) -> Decision | None:
        row = self._conn.execute(
            "SELECT decision, device_id, change_id, decided_at FROM canary_decisions "
            "WHERE version = ?",
            (version,),
        ).fetchone()
        if row is None:
            return None
        return Decision(
            str(row["decision"]), str(row["device_id"]), int(row["change_id"]), row["decided_at"]
        )

    def record_decision(self, version: int, made: Decision) -> None:
        self._conn.execute(
            "INSERT INTO canary_decisions (version, decision, device_id, change_id, decided_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (version, made.decision, made.device_id, made.change_id, made.decided_at),
        )
