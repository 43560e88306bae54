"""Event delivery delay: from an event's commit to its arrival at a subscriber.

    .venv/bin/python -m bench.events_bench [--events 50]

A real ``fedge serve`` process on loopback (the built-in reference model),
one SSE subscriber (:class:`fedge.client_sim.device.events.EventSubscriber`) and
one long-poller. Three ways an event is written:

* ``server commit``: an admin ends the open round (``POST
  /v1/admin/rounds/current/end``), so the server itself commits
  ``round_abandoned`` and ``round_opened``; the commit wakes the streams
  through the in-process condition variable.
* ``other process``: this process writes ``release`` events into the same
  SQLite file (a tool beside the server, say): nothing notifies the server.
  Its streams find them at its next own commit (the round driver commits
  every ``tick_s``, 0.5 s) or their fallback read of the table (every 1 s).
* ``long-poll``: the server commits as in the first row; a client in a
  loop of ``GET /v1/events/poll`` receives them.

The delay is the arrival time (wall clock) minus the event's ``created_at``
(taken inside the transaction, just before its COMMIT and fsync), both on
this machine: it includes the commit itself.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from fedge.client_sim.device.events import EventSubscriber, poll_events
from fedge.server.storage.sqlite.database import Database
from fedge.server.storage.sqlite.store import SQLiteTx
from tests.helpers.live_server import running

ADMIN = {"Authorization": "Bearer admin-secret"}  # live_server.start's default


class Arrivals:
    """When each event id arrived, by SSE and by long-poll."""

    def __init__(self) -> None:
        self.sse: dict[int, float] = {}
        self.poll: dict[int, float] = {}
        self.lock = threading.Lock()

    def record(self, into: dict[int, float], event_id: int) -> None:
        now = time.time()
        with self.lock:
            into.setdefault(event_id, now)


def subscribe(url: str, after: int, arrivals: Arrivals) -> EventSubscriber:
    subscriber = EventSubscriber(url, after=after)

    def run() -> None:
        for event in subscriber:
            arrivals.record(arrivals.sse, event.id)

    threading.Thread(target=run, daemon=True).start()
    return subscriber


def long_poll(url: str, after: int, arrivals: Arrivals, stop: threading.Event) -> None:
    def run() -> None:
        cursor = after
        while not stop.is_set():
            try:
                page = poll_events(url, after=cursor, timeout=1)
            except requests.RequestException:  # the server stopped under it
                return
            for event in page.events:
                arrivals.record(arrivals.poll, event.id)
            cursor = page.last_id

    threading.Thread(target=run, daemon=True).start()


def created_at(url: str, after: int) -> dict[int, float]:
    times: dict[int, float] = {}
    while True:
        page = poll_events(url, after=after, timeout=0)
        times.update({e.id: e.created_at for e in page.events if e.created_at is not None})
        if not page.events:
            return times
        after = page.last_id


def wait_for(ids: set[int], arrived: dict[int, float], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ids <= set(arrived) and time.monotonic() < deadline:
        time.sleep(0.01)


def server_commits(url: str, count: int) -> None:
    for _ in range(count):
        response = requests.post(f"{url}/v1/admin/rounds/current/end", headers=ADMIN, timeout=10)
        response.raise_for_status()
        time.sleep(random.uniform(0.02, 0.1))


def other_process_commits(database: Database, count: int) -> None:
    for version in range(count):
        with database.transaction() as conn:
            SQLiteTx(conn).events.add("release", {"version": version, "bench": True})
        time.sleep(random.uniform(0.05, 0.3))


def row(table: Table, name: str, delays_s: list[float]) -> None:
    if not delays_s:
        table.add_row(name, "0", "-", "-", "-")
        return
    ms = sorted(d * 1000 for d in delays_s)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    table.add_row(name, str(len(ms)), f"{statistics.median(ms):.1f}", f"{p99:.1f}", f"{ms[-1]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50, help="writes per kind of writer")
    args = parser.parse_args()
    console = Console()
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="fedge-events-") as tmp:
        work = Path(tmp)
        with running(work / "data", [], work / "server.log") as server:
            start = poll_events(server.url, after=None, timeout=0).last_id
            arrivals = Arrivals()
            stop = threading.Event()
            subscriber = subscribe(server.url, start, arrivals)
            long_poll(server.url, start, arrivals, stop)
            time.sleep(0.5)  # both connected

            console.print(f"server commits: {args.events} admin round ends ...")
            server_commits(server.url, args.events)
            by_server = set(created_at(server.url, start))
            wait_for(by_server, arrivals.sse)
            wait_for(by_server, arrivals.poll)

            console.print(f"other process: {args.events} release events ...")
            database = Database(work / "data" / "fedge.sqlite3")
            other_process_commits(database, args.events)
            database.close_thread_connection()
            written = created_at(server.url, start)
            by_other = set(written) - by_server
            wait_for(by_other, arrivals.sse)
            stop.set()
            subscriber.stop()

    table = Table(title="event delay: commit -> arrival (ms)")
    for column in ("writer -> reader", "events", "median", "p99", "max"):
        table.add_column(column, justify="left" if column.startswith("writer") else "right")
    row(table, "server commit -> SSE", [arrivals.sse[i] - written[i] for i in sorted(by_server)])
    row(table, "server commit -> long-poll", [arrivals.poll[i] - written[i] for i in by_server])
    row(table, "other process -> SSE", [arrivals.sse[i] - written[i] for i in sorted(by_other)])
    console.print(table)
    missing = (by_server | by_other) - set(arrivals.sse)
    if missing:
        console.print(f"[red]{len(missing)} events never reached the subscriber[/red]")


if __name__ == "__main__":
    main()
