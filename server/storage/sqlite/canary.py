"""Canary evaluations and decisions in SQLite
(:class:`~fedge.server.storage.store.CanaryRows`)."""

from __future__ import annotations

import sqlite3

from fedge.server.storage.canary import Decision, StoredEvaluation, Tally
from fedge.server.storage.sqlite.errors import Connection
from fedge.wire.canary import USING, Evaluation

_COLUMNS = (
    "device_id, baseline_version, metric, candidate_loss, candidate_metric, baseline_loss, "
    "baseline_metric, num_examples, latency_ms, using_model, received_at"
)


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
    )
    return StoredEvaluation(str(row["device_id"]), float(row["received_at"]), evaluation)


class SQLiteCanary:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def find(self, version: int, device_id: str) -> StoredEvaluation | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM canary_evaluations WHERE version = ? AND device_id = ?",
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
        return StoredEvaluation(device_id, at, evaluation)

    def listing(self, version: int, limit: int) -> list[StoredEvaluation]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM canary_evaluations WHERE version = ? "
            "ORDER BY received_at, device_id LIMIT ?",
            (version, limit),
        ).fetchall()
        return [_stored(row) for row in rows]

    def metric_of(self, version: int) -> str | None:
        row = self._conn.execute(
            "SELECT metric FROM canary_evaluations WHERE version = ? LIMIT 1", (version,)
        ).fetchone()
        return str(row["metric"]) if row is not None else None

    def tally(self, version: int, max_weight: int) -> Tally:
        row = self._conn.execute(
            "SELECT COUNT(*) AS n, MIN(metric) AS metric, COALESCE(SUM(w), 0) AS weight, "
            "COALESCE(SUM(w * candidate_loss), 0) AS cl, "
            "COALESCE(SUM(w * candidate_metric), 0) AS cm, "
            "COALESCE(SUM(w * baseline_loss), 0) AS bl, "
            "COALESCE(SUM(w * baseline_metric), 0) AS bm "
            "FROM (SELECT *, MIN(num_examples, ?) AS w FROM canary_evaluations WHERE version = ?)",
            (max_weight, version),
        ).fetchone()
        using = dict.fromkeys(USING, 0)
        for choice in self._conn.execute(
            "SELECT using_model, COUNT(*) AS n FROM canary_evaluations WHERE version = ? "
            "GROUP BY using_model",
            (version,),
        ):
            using[str(choice["using_model"])] = int(choice["n"])
        return Tally(
            metric=row["metric"],
            reports=int(row["n"]),
            weight=int(row["weight"]),
            sums=(float(row["cl"]), float(row["cm"]), float(row["bl"]), float(row["bm"])),
            using=using,
        )

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
