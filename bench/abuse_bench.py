"""An honest device's check-in while another client floods the server.

    .venv/bin/python -m bench.abuse_bench [--seconds 5] [--workers 4]

A real ``fedge serve`` process on loopback with its defaults (the built-in
reference model). One honest device enrols, then asks for a task (``POST
/v1/tasks``) every 0.25 s, first on a quiet server, then while one client
on ``--workers`` connections sends as fast as it can:

* ``enrolment flood``: ``POST /v1/devices`` (issue 22: 690-940/s, none
  refused). Past the per-address burst (2,000) they are refused with 429.
* ``admin token guesses``: wrong admin tokens against an admin route.

The table gives the honest device's check-in latency and what the flood
got back (created, refused with 429, others) and its request rate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from tests.helpers.live_server import running

Send = Callable[[requests.Session, str, int], requests.Response]


def enrolment(session: requests.Session, url: str, _n: int) -> requests.Response:
    return session.post(f"{url}/v1/devices", json={"platform": "flood"}, timeout=30)


def admin_guess(session: requests.Session, url: str, n: int) -> requests.Response:
    headers = {"Authorization": f"Bearer guess-{n}"}
    return session.get(f"{url}/v1/admin/release-changes", headers=headers, timeout=30)


def check_ins(url: str, token: str, stop: threading.Event) -> list[float]:
    latencies = []
    with requests.Session() as session:
        while not stop.is_set():
            started = time.perf_counter()
            response = session.post(
                f"{url}/v1/tasks", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"the honest device got {response.status_code}: {response.text}")
            time.sleep(0.25)
    return latencies


def attack(url: str, send: Send | None, seconds: float, workers: int) -> tuple[Counter[int], float]:
    statuses: Counter[int] = Counter()
    if send is None:
        time.sleep(seconds)
        return statuses, 0.0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    def worker() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                status = send(session, url, next(counter)).status_code
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, sum(statuses.values()) / seconds


def one_run(
    send: Send | None, seconds: float, workers: int
) -> tuple[list[float], Counter[int], float]:
    """(the honest check-ins' latencies in ms, sorted; the flood's statuses; its rate)."""
    with tempfile.TemporaryDirectory(prefix="fedge-abuse-") as tmp:
        work = Path(tmp)
        with running(work / "data", [], work / "server.log") as server:
            url = server.url
            token = requests.post(f"{url}/v1/devices", json={}, timeout=30).json()["token"]
            stop = threading.Event()
            latencies: list[float] = []
            honest = threading.Thread(target=lambda: latencies.extend(check_ins(url, token, stop)))
            honest.start()
            try:
                statuses, rate = attack(url, send, seconds, workers)
            finally:
                stop.set()
                honest.join()
    return sorted(x * 1000 for x in latencies), statuses, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    console = Console()
    table = Table(title="honest device's check-in (POST /v1/tasks) during a flood, ms")
    columns = ("flood", "check-ins", "median", "p95", "max", "flood 2xx", "flood 429")
    for column in (*columns, "other", "flood req/s"):
        table.add_column(column, justify="left" if column == "flood" else "right")
    attacks: list[tuple[str, Send | None]] = [
        ("none", None),
        ("enrolment flood", enrolment),
        ("admin token guesses", admin_guess),
    ]
    for name, send in attacks:
        ms, statuses, rate = one_run(send, args.seconds, args.workers)
        ok = sum(n for status, n in statuses.items() if status < 300)
        other = sum(n for status, n in statuses.items() if status >= 300 and status != 429)
        table.add_row(
            name,
            str(len(ms)),
            f"{statistics.median(ms):.1f}",
            f"{ms[int(0.95 * (len(ms) - 1))]:.1f}",
            f"{ms[-1]:.1f}",
            str(ok),
            str(statuses[429]),
            str(other),
            f"{rate:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
