"""How the async-vs-sync ratio depends on how uneven the fleet is: the best
of each mode at several speed spreads, per task.

    .venv/bin/python -m bench.async_spread [--sigmas 0.5,1.0,1.5,2.0]
        [--tasks digits,text] [--budget 40]

The fleet, seeds and simulated clock of :mod:`bench.async_vs_sync`; only
the spread ``sigma`` of the devices' log-normal compute and network delay
changes (the tenth of slow browsers, 10x slower, stays). Each mode is run
over a fixed short list of candidates, the settings that were best in the
sweeps and profile runs at sigma 1.0 (:data:`CANDIDATES`): "best" below is
the best of that list at each spread, not of a full sweep per spread. Short
runs (40 simulated s, as the profile's and ``bench.async_variants``', whose
sigma 1.0 runs of the same settings are the same runs, so they are not
repeated by default); times are comparable within this table and with
those, not with the 120 s sweep's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.async_sim import AsyncSettings, SyncSettings
from bench.async_tasks import TASKS, prepared
from bench.async_vs_sync import NO_BOUND, PROFILE_BUDGET_S, TARGETS, K, Run, best, one_run

CANDIDATES: list[tuple[str, SyncSettings | AsyncSettings]] = [
    ("sync over 3 lr 2", SyncSettings(K, 3.0, 1.5, K // 2, server_lr=2.0)),
    ("sync over 8 lr 2", SyncSettings(K, 8.0, 1.5, K // 2, server_lr=2.0)),
    ("sync over 12 lr 1", SyncSettings(K, 12.0, 1.5, K // 2)),
    ("async c100 lr 0.3", AsyncSettings(K, 100, NO_BOUND, "hinge", server_lr=0.3)),
    (
        "async c400 sqrt step",
        AsyncSettings(K, 400, NO_BOUND, "hinge", scaled_step=True, step_weight="sqrt"),
    ),
]


def spread_table(task: str, by_sigma: dict[float, list[Run]]) -> Table:
    target = TARGETS[task]
    shown = Table(title=f"{task}: the best of each mode by speed spread (to {target:.0%})")
    for column in (
        "sigma", "best sync", "to target s", "final", "best async", "to target s ", "final ",
        "async sooner",
    ):  # fmt: skip
        shown.add_column(column, justify="left" if "best" in column else "right")
    for sigma, runs in by_sigma.items():
        sync, fedbuff = best(runs, "sync", target), best(runs, "async", target)
        s, a = sync.report.reached(target), fedbuff.report.reached(target)
        ratio = "-" if s is None or a is None else f"{s.seconds / max(a.seconds, 1e-9):.2f}x"
        shown.add_row(
            f"{sigma:g}",
            sync.label,
            "-" if s is None else f"{s.seconds:.1f}",
            f"{sync.report.final:.3f}",
            fedbuff.label,
            "-" if a is None else f"{a.seconds:.1f}",
            f"{fedbuff.report.final:.3f}",
            ratio,
        )
    return shown


def all_runs_table(
    task: str,
    by_sigma: dict[float, list[Run]],
    chosen: list[tuple[str, SyncSettings | AsyncSettings]],
) -> Table:
    target = TARGETS[task]
    shown = Table(title=f"{task}: every candidate by speed spread, seconds to {target:.0%}")
    shown.add_column("candidate", justify="left")
    for sigma in by_sigma:
        shown.add_column(f"sigma {sigma:g}", justify="right")
    for index, (label, _) in enumerate(chosen):
        cells = []
        for runs in by_sigma.values():
            reached = runs[index].report.reached(target)
            cells.append("-" if reached is None else f"{reached.seconds:.1f}")
        shown.add_row(label, *cells)
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigmas", default="0.5,1.5,2.0")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--budget", type=float, default=PROFILE_BUDGET_S)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated candidate labels (all: empty)")
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    chosen = [c for c in CANDIDATES if not args.only or c[0] in args.only.split(",")]
    if not chosen:
        parser.error(f"no candidate named in --only; known: {', '.join(c[0] for c in CANDIDATES)}")
    console = Console(width=170, record=True)
    console.print(
        f"{args.devices} devices, {args.budget:g} simulated s per run, K = {K}, seed 0, "
        f"speed spreads {', '.join(f'{s:g}' for s in sigmas)}"
    )
    for name in args.tasks.split(","):
        by_sigma: dict[float, list[Run]] = {}
        with (
            tempfile.TemporaryDirectory(prefix="fedge-async-spread-") as work,
            prepared(name, args.devices, 0, Path(work)) as task,
        ):
            for sigma in sigmas:
                by_sigma[sigma] = [
                    one_run(task, f"{label} (sigma {sigma:g})", settings, sigma, args.budget)
                    for label, settings in chosen
                ]
        for runs in by_sigma.values():  # the labels without the sigma, for the tables
            runs[:] = [
                Run(r.task, label, r.mode, r.settings, r.report, r.real_s)
                for r, (label, _) in zip(runs, chosen, strict=True)
            ]
        if {r.mode for runs in by_sigma.values() for r in runs} == {"sync", "async"}:
            console.print(spread_table(name, by_sigma))
        console.print(all_runs_table(name, by_sigma, chosen))


if __name__ == "__main__":
    main()
