"""The live model's health reports and judged windows in SQLite
(:class:`~fedge.server.storage.health.HealthRows`).

The tables are created with the rest of the schema (``CREATE TABLE IF NOT
EXISTS``: an older file gains them when it is opened, nothing to migrate).
Histograms and quantiles are stored as JSON text of numbers the wire codec
has already checked.
"""

from __future__ import annotations

import json
import sqlite3

from fedge.server.storage.health import StoredHealthReport
from fedge.server.storage.sql import SqlConnection as Connection
from fedge.wire.health import HealthReport, HealthWindow

SCHEMA = """
CREATE TABLE IF NOT EXISTS health_reports (
    version INTEGER NOT NULL REFERENCES releases(version),
    device_id TEXT NOT NULL REFERENCES devices(id),
    win INTEGER NOT NULL,
    runtime TEXT NOT NULL,
    metric TEXT NOT NULL,
    loss REAL NOT NULL,
    value REAL NOT NULL,
    num_examples INTEGER NOT NULL,
    histogram TEXT,
    quantiles TEXT,
    received_at REAL NOT NULL,
    PRIMARY KEY (version, device_id, win)
);
CREATE INDEX IF NOT EXISTS health_reports_by_window ON health_reports(version, win);
CREATE TABLE IF NOT EXISTS health_windows (
    version INTEGER NOT NULL REFERENCES releases(version),
    runtime TEXT NOT NULL,
    win INTEGER NOT NULL,
    start REAL NOT NULL,
    metric TEXT NOT NULL,
    devices INTEGER NOT NULL,
    loss REAL NOT NULL,
    value REAL NOT NULL,
    distribution TEXT NOT NULL,
    baseline INTEGER NOT NULL,
    distance REAL,
    drop_ REAL,
    voters INTEGER NOT NULL,
    votes INTEGER NOT NULL,
    alert INTEGER NOT NULL,
    PRIMARY KEY (version, runtime, win)
);
"""

_REPORT = (
    "device_id, win, runtime, metric, loss, value, num_examples, histogram, quantiles, received_at"
)
_WINDOW = (
    "version, runtime, win, start, metric, devices, loss, value, distribution, baseline, "
    "distance, drop_, voters, votes, alert"
)


def _numbers(text: str | None) -> list[float] | None:
    return None if text is None else list(json.loads(text))


def _report(row: sqlite3.Row) -> StoredHealthReport:
    histogram = _numbers(row["histogram"])
    quantiles = _numbers(row["quantiles"])
    report = HealthReport(
        metric=str(row["metric"]),
        loss=float(row["loss"]),
        value=float(row["value"]),
        num_examples=int(row["num_examples"]),
        runtime=str(row["runtime"]),
        histogram=tuple(int(c) for c in histogram) if histogram is not None else None,
        quantiles=tuple(float(q) for q in quantiles) if quantiles is not None else None,
    )
    return StoredHealthReport(
        str(row["device_id"]), int(row["win"]), float(row["received_at"]), report
    )


def _window(row: sqlite3.Row) -> HealthWindow:
    return HealthWindow(
        version=int(row["version"]),
        runtime=str(row["runtime"]),
        window=int(row["win"]),
        start=float(row["start"]),
        metric=str(row["metric"]),
        devices=int(row["devices"]),
        loss=float(row["loss"]),
        value=float(row["value"]),
        distribution=tuple(float(x) for x in json.loads(row["distribution"])),
        baseline=bool(row["baseline"]),
        distance=row["distance"],
        drop=row["drop_"],
        voters=int(row["voters"]),
        votes=int(row["votes"]),
        alert=bool(row["alert"]),
    )


class SQLiteHealth:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def find(self, version: int, device_id: str, window: int) -> StoredHealthReport | None:
        row = self._conn.execute(
            f"SELECT {_REPORT} FROM health_reports WHERE version = ? AND device_id = ? AND win = ?",
            (version, device_id, window),
        ).fetchone()
        return _report(row) if row is not None else None

    def insert(
        self, version: int, device_id: str, window: int, report: HealthReport, at: float
    ) -> StoredHealthReport:
        r = report
        self._conn.execute(
            f"INSERT INTO health_reports (version, {_REPORT}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                version,
                device_id,
                window,
                r.runtime,
                r.metric,
                r.loss,
                r.value,
                r.num_examples,
                json.dumps(list(r.histogram)) if r.histogram is not None else None,
                json.dumps(list(r.quantiles)) if r.quantiles is not None else None,
                at,
            ),
        )
        return StoredHealthReport(device_id, window, at, report)

    def in_window(self, version: int, window: int) -> list[StoredHealthReport]:
        rows = self._conn.execute(
            f"SELECT {_REPORT} FROM health_reports WHERE version = ? AND win = ? "
            "ORDER BY received_at, device_id",
            (version, window),
        ).fetchall()
        return [_report(row) for row in rows]

    def count_in_window(self, version: int, window: int) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) AS n FROM health_reports WHERE version = ? AND win = ?",
            (version, window),
        ).fetchone()
        return int(row["n"])

    def unjudged_windows(self, version: int, before: int) -> list[int]:
        rows = self._conn.execute(
            "SELECT DISTINCT r.win AS win FROM health_reports r WHERE r.version = ? "
            "AND r.win < ? AND NOT EXISTS (SELECT 1 FROM health_windows w "
            "WHERE w.version = r.version AND w.win = r.win) ORDER BY r.win",
            (version, before),
        ).fetchall()
        return [int(row["win"]) for row in rows]

    def record_window(self, judged: HealthWindow) -> None:
        w = judged
        self._conn.execute(
            f"INSERT INTO health_windows ({_WINDOW}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                w.version,
                w.runtime,
                w.window,
                w.start,
                w.metric,
                w.devices,
                w.loss,
                w.value,
                json.dumps(list(w.distribution)),
                int(w.baseline),
                w.distance,
                w.drop,
                w.voters,
                w.votes,
                int(w.alert),
            ),
        )

    def baseline(self, version: int, runtime: str) -> HealthWindow | None:
        row = self._conn.execute(
            f"SELECT {_WINDOW} FROM health_windows WHERE version = ? AND runtime = ? "
            "AND baseline = 1",
            (version, runtime),
        ).fetchone()
        return _window(row) if row is not None else None

    def latest(self, version: int, runtime: str) -> HealthWindow | None:
        row = self._conn.execute(
            f"SELECT {_WINDOW} FROM health_windows WHERE version = ? AND runtime = ? "
            "ORDER BY win DESC LIMIT 1",
            (version, runtime),
        ).fetchone()
        return _window(row) if row is not None else None

    def windows(self, version: int, limit: int) -> list[HealthWindow]:
        rows = self._conn.execute(
            f"SELECT {_WINDOW} FROM (SELECT * FROM health_windows WHERE version = ? "
            "ORDER BY win DESC, runtime LIMIT ?) AS newest ORDER BY win, runtime",
            (version, limit),
        ).fetchall()
        return [_window(row) for row in rows]
