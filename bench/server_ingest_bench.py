"""HTTP ingest of model updates: the real ``fedge serve`` processes on
loopback, concurrent uploaders, and the servers' memory as updates pile up
in one round.

    .venv/bin/python -m bench.server_ingest_bench [--updates 1000] [--params 250000]
        [--uploaders 8] [--repeat 1] [--baseline REV] [--fedge PATH]
        [--workers 1,2 [--database URL]]

Prints, per run, the ingest rate (updates/s and MB/s of update bodies
accepted, each acknowledged only once durable), upload latency p50/p99,
the servers' CPU time per update, and their RSS growth from 10 to N
updates in one round relative to the model size (streaming aggregation
keeps it O(model)); with ``--repeat`` the medians too. A second table
gives the aggregator's share of the server CPU (the worker whose /healthz
says it runs the rounds) and the database's costs per update over the
same timed uploads
(:mod:`bench.ingest.db_costs`): PostgreSQL's CPU (all the throw-away
cluster's processes), its committed transactions and statements
(``pg_stat_statements``), the database's growth and the WAL written; for
SQLite the growth of its files.

Rows: ``SQLite`` (one process), then with ``--workers 1,2`` the same
uploads to 1, 2 ... ``fedge serve --database`` workers on one PostgreSQL
database and data directory (devices enrolled on them in turn; the elected
aggregator folds them all); the CPU and RSS columns sum all the server
processes (not PostgreSQL's). ``--database``: a PostgreSQL server's URL on
which the bench may create a database per run (dropped at the end; default:
a throw-away cluster, as the tests start, which needs Debian's postgresql
package).

``--baseline REV`` also runs the server of commit REV (a temporary ``git
worktree`` of it, on this virtual environment) for every row (``SQLite @
REV`` ...; its PostgreSQL rows only if its ``fedge serve`` has
``--database``), alternating with this tree's, so that before and after
are measured side by side in one run; the after / before ratios of the
medians are printed under the table.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.ingest.baseline import baseline_fedge, serves_database
from bench.ingest.db_costs import PostgresProbe, Probe, SqliteProbe
from bench.ingest.servers import Databases, Store, postgres_databases, serving
from bench.ingest.uploads import WARM_UP, Run, Weights, measure, median_run
from bench.results import emit
from tests.helpers.live_server import FEDGE

COLUMNS = (
    "updates/s",
    "ingest MB/s",
    "upload p50 ms",
    "upload p99 ms",
    "server CPU ms/update",
    "RSS @10 MiB",
)


def build_model(path: Path, params: int) -> tuple[int, int]:
    """A one-layer Keras model with about ``params`` weights (dense/kernel, dense/bias)."""
    import tensorflow as tf

    width = 1000
    fan_in = max(1, params // width)
    inputs = tf.keras.Input((fan_in,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(width, name="dense")(inputs))
    model.save(path)
    return fan_in, width


def cells(run: Run) -> list[str]:
    return [
        f"{run.updates_s:.1f}",
        f"{run.mb_s:.1f}",
        f"{run.p50_ms:.1f}",
        f"{run.p99_ms:.1f}",
        f"{run.cpu_ms:.2f}",
        f"{run.rss_10:.0f}",
        f"{run.rss_n:.0f}",
        f"{run.growth:.2f}x",
    ]


DB_COLUMNS = (
    "aggregator CPU ms/update",
    "DB CPU ms/update",
    "DB transactions/update",
    "DB statements/update",
    "DB bytes/update",
    "WAL bytes/update",
)


def db_cells(run: Run) -> list[str]:
    """The aggregator's CPU and the database's costs per update; blank
    where not measured."""
    costs = run.db

    def cell(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    return [
        f"{run.aggregator_cpu_ms:.2f}",
        cell(costs.cpu_ms, 2),
        cell(costs.commits, 1),
        cell(costs.statements, 1),
        cell(costs.size_bytes, 0),
        cell(costs.wal_bytes, 0),
    ]


def worker_counts(text: str) -> list[int]:
    """``--workers 1,2`` -> [1, 2]; raises ValueError on anything else."""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if any(count < 1 for count in counts):
        raise ValueError("worker counts are positive")
    return counts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--params", type=int, default=250_000)
    parser.add_argument("--uploaders", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each row")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run commit REV's server (before/after)"
    )
    parser.add_argument(
        "--fedge",
        type=Path,
        default=FEDGE,
        help="the fedge console script that serves (another build's, to compare)",
    )
    parser.add_argument(
        "--workers",
        default="",
        metavar="N,N",
        help="comma-separated worker counts to run on PostgreSQL after SQLite (1,2)",
    )
    parser.add_argument(
        "--database", metavar="URL", help="a PostgreSQL URL to create the bench's databases on"
    )
    args = parser.parse_args()
    if args.updates <= WARM_UP:
        parser.error(f"--updates must be more than {WARM_UP} (the untimed warm-up uploads)")
    if min(args.params, args.uploaders, args.repeat) < 1:
        parser.error("--params, --uploaders and --repeat must be at least 1")
    try:
        args.workers = worker_counts(args.workers)
    except ValueError:
        parser.error(f"--workers: comma-separated positive counts, not {args.workers!r}")
    if args.database is not None and not args.workers:
        parser.error("--database is for the PostgreSQL rows: give --workers too")
    return args


def main() -> None:
    args = parse_args()
    console = Console()
    stores = [Store(0), *(Store(count) for count in args.workers)]
    with tempfile.TemporaryDirectory(prefix="fedge-ingest-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        fan_in, width = build_model(work / "model.keras", args.params)
        model_bytes = (fan_in * width + width) * 4
        rng = np.random.default_rng(0)
        weights: Weights = {
            "dense/kernel": rng.normal(0, 0.01, (fan_in, width)).astype(np.float32),
            "dense/bias": rng.normal(0, 0.01, (width,)).astype(np.float32),
        }
        databases = stack.enter_context(postgres_databases(args.database)) if args.workers else None
        # (row name suffix, fedge command, whether it serves PostgreSQL)
        servers = [("", args.fedge, True)]
        if args.baseline is not None:
            baseline = stack.enter_context(baseline_fedge(args.baseline, work))
            postgres = not args.workers or serves_database(baseline)
            if not postgres:
                console.print(f"{args.baseline}'s fedge serve has no --database: SQLite only")
            servers.insert(0, (f" @ {args.baseline}", baseline, postgres))
        rows = list(_rows(stores, servers))
        results: dict[str, list[Run]] = {name: [] for name, _, _ in rows}
        for attempt in range(args.repeat):
            for name, store, fedge in rows:
                console.print(f"run {attempt + 1}/{args.repeat}: {name} ...")
                results[name].append(
                    _measure_one(fedge, store, work, args, databases, weights, model_bytes)
                )
    _print(console, args, model_bytes, results)


def _rows(
    stores: list[Store], servers: list[tuple[str, Path, bool]]
) -> Iterator[tuple[str, Store, Path]]:
    """(row name, store, fedge command) per row: each store on each server
    in turn, the PostgreSQL rows only on a server that has --database."""
    for store in stores:
        for suffix, fedge, postgres in servers:
            if store.workers == 0 or postgres:
                yield f"{store.name}{suffix}", store, fedge


def _measure_one(
    fedge: Path,
    store: Store,
    work: Path,
    args: argparse.Namespace,
    databases: Databases | None,
    weights: Weights,
    model_bytes: int,
) -> Run:
    """One run on fresh servers: a data directory (and database) of its own."""
    url: str | None = None
    with tempfile.TemporaryDirectory(prefix="run-", dir=work) as run_dir:
        probe: Probe = SqliteProbe(Path(run_dir) / "data")
        if store.workers:
            if databases is None:
                raise ValueError(f"{store.name} needs a PostgreSQL database")
            url = databases.make(f"bench_{secrets.token_hex(4)}")
            probe = PostgresProbe(url, databases.postmaster)
        with serving(fedge, store, _flags(args, work), Path(run_dir), url) as servers:
            return measure(servers, probe, args.updates, args.uploaders, weights, model_bytes)


def _flags(args: argparse.Namespace, work: Path) -> list[str]:
    return [
        "--model",
        str(work / "model.keras"),
        "--rounds-target",
        str(args.updates + 1),
        "--rounds-min",
        "1",
        "--deadline",
        "3600",
    ]


def _print(
    console: Console, args: argparse.Namespace, model_bytes: int, results: dict[str, list[Run]]
) -> None:
    table = Table(
        title=f"fedge serve ingest: {args.updates} updates of {model_bytes / 1e6:.2f} MB,"
        f" {args.uploaders} uploaders, loopback, receipt after fsync, {os.cpu_count()} cores"
        f" (load {os.getloadavg()[0]:.1f})"
    )
    table.add_column("server")
    table.add_column("run")
    for column in (*COLUMNS, f"RSS @{args.updates} MiB", "growth / model size"):
        table.add_column(column, justify="right")
    for name, runs in results.items():
        for attempt, run in enumerate(runs):
            table.add_row(name, str(attempt + 1), *cells(run))
        if len(runs) > 1:
            table.add_row(name, "median", *cells(median_run(runs)), style="bold")
    console.print(table)
    costs = Table(
        title="costs per timed update: the aggregator process (its share of the server CPU),"
        " the database (PostgreSQL: the whole throw-away cluster's CPU, the run's database;"
        " SQLite: its files' growth)"
    )
    costs.add_column("server")
    costs.add_column("run")
    for column in DB_COLUMNS:
        costs.add_column(column, justify="right")
    for name, runs in results.items():
        for attempt, run in enumerate(runs):
            costs.add_row(name, str(attempt + 1), *db_cells(run))
        if len(runs) > 1:
            costs.add_row(name, "median", *db_cells(median_run(runs)), style="bold")
    console.print(costs)
    # The first row's medians of this tree's server (SQLite: one process),
    # for bench.report's summary (bench.results).
    ours = [runs for name, runs in results.items() if not name.endswith(f" @ {args.baseline}")]
    first = median_run(ours[0])
    emit("updates_s", first.updates_s)
    emit("p99_ms", first.p99_ms)
    if args.baseline is None:
        return
    suffix = f" @ {args.baseline}"
    for name, runs in results.items():
        if name.endswith(suffix) or name + suffix not in results:
            continue
        before, after = median_run(results[name + suffix]), median_run(runs)
        console.print(
            f"{name}, this tree / {args.baseline} (medians):"
            f" {after.updates_s / before.updates_s:.2f}x updates/s,"
            f" p99 {after.p99_ms / before.p99_ms:.2f}x,"
            f" CPU per update {after.cpu_ms / before.cpu_ms:.2f}x"
        )


if __name__ == "__main__":
    main()
