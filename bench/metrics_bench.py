"""The cost of recording metrics: the hand-written exposition fedge had
before issue 28 vs the ``prometheus_client`` one it has now.

Rows, nanoseconds per call (best of ``--repeats`` runs of ``--calls``
calls, one thread):

* a labelled counter increment (``fedge_http_requests_total``);
* a histogram observation (the new request latency; the old code had
  summaries only, so its row is a summary: a sum and a count);
* what the server records per HTTP request: before, three counters; now,
  the same three and the latency histogram;
* ``prometheus_client`` called directly (``.labels(...).observe``), to show
  what :class:`Metrics`'s cache of labelled children saves;
* one scrape (rendering the text) with the series of a busy server.

The old module is read from git (``--old-rev``, default the commit before
the change), so this runs in a checkout.

    .venv/bin/python -m bench.metrics_bench [--calls 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedge.server.metrics import Metrics, server_metrics

OLD_REV = "9a6e102"
ROUTES = [f"/v1/route{i}/<int:id>" for i in range(40)]


def old_metrics(rev: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:server/metrics.py"],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("fedge_old_metrics")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:server/metrics.py", "exec"), module.__dict__)  # our own code
    return module


def lines(metrics: object) -> int:
    """Samples in one scrape."""
    text: str = metrics.render()  # type: ignore[attr-defined]
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def per_call_ns(action: Callable[[int], None], calls: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        action(calls)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def requests_old(metrics: object) -> Callable[[int], None]:
    inc = metrics.inc  # type: ignore[attr-defined]

    def run(n: int) -> None:
        for i in range(n):
            inc("fedge_http_requests_total", route=ROUTES[i % 40], status="200")
            inc("fedge_http_bytes_in_total", 100.0)
            inc("fedge_http_bytes_out_total", 100.0)

    return run


def requests_new(metrics: Metrics) -> Callable[[int], None]:
    inc, observe = metrics.inc, metrics.observe

    def run(n: int) -> None:
        for i in range(n):
            route = ROUTES[i % 40]
            inc("fedge_http_requests_total", route=route, status="200")
            observe("fedge_http_request_seconds", 0.004, route=route, status_class="2xx")
            inc("fedge_http_bytes_in_total", 100.0)
            inc("fedge_http_bytes_out_total", 100.0)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old-rev", default=OLD_REV)
    args = parser.parse_args()
    old = old_metrics(args.old_rev).server_metrics()
    new = server_metrics()
    for metrics in (old, new):  # a busy server's series: every route seen once
        for route in ROUTES:
            metrics.inc("fedge_http_requests_total", route=route, status="200")
    direct = new._families["fedge_http_request_seconds"]

    def counter(metrics: object) -> Callable[[int], None]:
        inc = metrics.inc  # type: ignore[attr-defined]

        def run(n: int) -> None:
            for i in range(n):
                inc("fedge_http_requests_total", route=ROUTES[i % 40], status="200")

        return run

    def scrapes(metrics: object) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                metrics.render()  # type: ignore[attr-defined]

        return run

    def histogram(n: int) -> None:
        for i in range(n):
            new.observe(
                "fedge_http_request_seconds", 0.004, route=ROUTES[i % 40], status_class="2xx"
            )

    def summary(n: int) -> None:
        for _ in range(n):
            old.observe("fedge_aggregation_seconds", 0.004)

    def raw(n: int) -> None:
        for i in range(n):
            direct.labels(route=ROUTES[i % 40], status_class="2xx").observe(0.004)

    calls, repeats = args.calls, args.repeats
    scrape_calls = max(1, calls // 1000)
    rows = [
        ("labelled counter inc", per_call_ns(counter(old), calls, repeats),
         per_call_ns(counter(new), calls, repeats)),
        ("latency observation (old: summary)", per_call_ns(summary, calls, repeats),
         per_call_ns(histogram, calls, repeats)),
        ("one request's recording (old: 3 counters, new: + histogram)",
         per_call_ns(requests_old(old), calls, repeats),
         per_call_ns(requests_new(new), calls, repeats)),
        ("prometheus_client direct .labels().observe()", None,
         per_call_ns(raw, calls, repeats)),
        (f"one scrape, 40 routes ({lines(old)} vs {lines(new)} samples: now with histograms)",
         per_call_ns(scrapes(old), scrape_calls, repeats),
         per_call_ns(scrapes(new), scrape_calls, repeats)),
    ]  # fmt: skip
    table = Table(title=f"metrics recording, ns per call (best of {repeats} x {calls:,})")
    for column in ("operation", "hand-written (before)", "prometheus_client (now)", "now/before"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for name, before, now in rows:
        table.add_row(
            name,
            "-" if before is None else f"{before:,.0f}",
            f"{now:,.0f}",
            "-" if before is None else f"{now / before:.2f}x",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
