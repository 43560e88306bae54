"""Quick profile runs for :mod:`bench.async_vs_sync`: named settings of
either mode on one task, on the same fleet, seeds and simulated clock, for a
short budget (40 simulated s by default, as the full bench's profile).

    .venv/bin/python -m bench.async_variants TASK NAME[,NAME...] [--budget 40]

``NAME``: a key of :data:`VARIANTS` (``all``: every one). Prints, per run,
the simulated and device seconds to the task's target, the final accuracy,
versions per second and mean staleness: what the bench's report quotes for
its "what was tried" section, a few seconds to a minute per run.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.async_sim import AsyncSettings, SimReport, SyncSettings
from bench.async_tasks import TASKS, prepared
from bench.async_vs_sync import NO_BOUND, TARGETS, Panel, one_run, plot_panels

BASE = AsyncSettings(10, 100, NO_BOUND, staleness_weight="hinge")
SQRT_STEP = replace(BASE, scaled_step=True, step_weight="sqrt")

VARIANTS: dict[str, SyncSettings | AsyncSettings] = {
    "sync best": SyncSettings(10, 3.0, 1.5, 5),
    "sync lr 0.5": SyncSettings(10, 3.0, 1.5, 5, server_lr=0.5),
    "sync lr 0.3": SyncSettings(10, 3.0, 1.5, 5, server_lr=0.3),
    "sync lr 2": SyncSettings(10, 3.0, 1.5, 5, server_lr=2.0),
    "sync lr 3": SyncSettings(10, 3.0, 1.5, 5, server_lr=3.0),
    "sync over 4 lr 2": SyncSettings(10, 4.0, 1.5, 5, server_lr=2.0),
    "sync over 5 lr 2": SyncSettings(10, 5.0, 1.5, 5, server_lr=2.0),
    "sync over 4 deadline 1 lr 2": SyncSettings(10, 4.0, 1.0, 5, server_lr=2.0),
    "sync over 8 lr 2": SyncSettings(10, 8.0, 1.5, 5, server_lr=2.0),
    "sync over 5 lr 1": SyncSettings(10, 5.0, 1.5, 5),
    "sync over 12 lr 2": SyncSettings(10, 12.0, 1.5, 5, server_lr=2.0),
    "sync over 8 lr 1": SyncSettings(10, 8.0, 1.5, 5),
    "sync over 12 lr 1": SyncSettings(10, 12.0, 1.5, 5),
    "c100": BASE,
    "c100 lr 0.7": replace(BASE, server_lr=0.7),
    "c100 lr 0.5": replace(BASE, server_lr=0.5),
    "c100 lr 0.3": replace(BASE, server_lr=0.3),
    "c100 lr 0.2": replace(BASE, server_lr=0.2),
    "c100 lr 1.5": replace(BASE, server_lr=1.5),
    "c100 lr 0.3 sqrt": replace(BASE, server_lr=0.3, staleness_weight="sqrt"),
    "c100 hinge after 0": replace(BASE, hinge_after=0),
    "c100 hinge after 5": replace(BASE, hinge_after=5),
    "c100 momentum 0.5": replace(BASE, strategy="fedavgm"),
    "c100 momentum 0.5 lr 0.5": replace(BASE, strategy="fedavgm", server_lr=0.5),
    "c100 momentum 0.9 lr 0.3": replace(BASE, strategy="fedavgm", momentum=0.9, server_lr=0.3),
    "c100 fedadam lr 0.01": replace(BASE, strategy="fedadam", server_lr=0.01),
    "K 5 c100 lr 0.3": replace(BASE, buffer=5, server_lr=0.3),
    "K 20 c100 lr 0.5": replace(BASE, buffer=20, server_lr=0.5),
    "c100 momentum 0.5 lr 0.15": replace(BASE, strategy="fedavgm", server_lr=0.15),
    "c50": replace(BASE, concurrency=50),
    "c50 lr 0.3": replace(BASE, concurrency=50, server_lr=0.3),
    "K 5 c30": replace(BASE, buffer=5, concurrency=30),
    "K 5 c50": replace(BASE, buffer=5, concurrency=50),
    "K 20 c200": replace(BASE, buffer=20, concurrency=200),
    "c150 lr 0.7": replace(BASE, concurrency=150, server_lr=0.7),
    "c200 lr 0.5": replace(BASE, concurrency=200, server_lr=0.5),
    "c200 lr 0.3": replace(BASE, concurrency=200, server_lr=0.3),
    "c300 lr 0.3": replace(BASE, concurrency=300, server_lr=0.3),
    "c400 lr 0.2": replace(BASE, concurrency=400, server_lr=0.2),
    "c100 sqrt step": SQRT_STEP,
    "c200 sqrt step": replace(SQRT_STEP, concurrency=200),
    "c300 sqrt step": replace(SQRT_STEP, concurrency=300),
    "c400 sqrt step": replace(SQRT_STEP, concurrency=400),
    "c400 lr 0.1": replace(BASE, concurrency=400, server_lr=0.1),
    "K 20 c400 lr 0.2": replace(BASE, buffer=20, concurrency=400, server_lr=0.2),
    "c600 sqrt step": replace(SQRT_STEP, concurrency=600),
    "c600 lr 0.15": replace(BASE, concurrency=600, server_lr=0.15),
    "K 20 c600 sqrt step": replace(SQRT_STEP, buffer=20, concurrency=600),
    "c400 sqrt step max staleness 80": replace(SQRT_STEP, concurrency=400, max_staleness=80),
    "c400 sqrt step fast first 3": replace(SQRT_STEP, concurrency=400, slow_factor=3.0),
    "c400 sqrt step fast first 2": replace(SQRT_STEP, concurrency=400, slow_factor=2.0),
    "c200 sqrt step fast first 2": replace(SQRT_STEP, concurrency=200, slow_factor=2.0),
    "c400 lr 0.2 fast first 2": replace(BASE, concurrency=400, server_lr=0.2, slow_factor=2.0),
    "c100 lr 0.3 fast first 2": replace(BASE, server_lr=0.3, slow_factor=2.0),
    "c400 lr 0.05 fast first 2": replace(BASE, concurrency=400, server_lr=0.05, slow_factor=2.0),
    "c400 lr 0.1 fast first 2": replace(BASE, concurrency=400, server_lr=0.1, slow_factor=2.0),
    "c400 lr 0.03 fast first 2": replace(BASE, concurrency=400, server_lr=0.03, slow_factor=2.0),
    "c200 sqrt step fast first 2 K 20": replace(
        SQRT_STEP, concurrency=200, buffer=20, slow_factor=2.0
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("names", help="comma-separated keys of VARIANTS, or all")
    parser.add_argument("--budget", type=float, default=40.0, help="simulated seconds per run")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--plot", type=Path, default=None, help="accuracy curves, one per run")
    args = parser.parse_args()
    names = list(VARIANTS) if args.names == "all" else args.names.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    target = TARGETS[args.task]
    shown = Table(title=f"{args.task}: to {target:.0%}, {args.budget:g} simulated s per run")
    for column in ("variant", "to target s", "device s to target", "final acc", "versions/s",
                   "mean staleness"):  # fmt: skip
        shown.add_column(column, justify="left" if column == "variant" else "right")
    with (
        tempfile.TemporaryDirectory(prefix="fedge-async-variants-") as work,
        prepared(args.task, args.devices, 0, Path(work)) as task,
    ):
        curves = []
        for name in names:
            r = one_run(task, name, VARIANTS[name], 1.0, args.budget).report
            curves.append((name, r))
            reached = r.reached(target)
            print(
                f"row: {name}: to target {'-' if reached is None else f'{reached.seconds:.1f}'} s,"
                f" final {r.final:.3f}, {r.models / args.budget:.1f} versions/s,"
                f" staleness {r.mean_staleness:.1f}",
                flush=True,
            )
            shown.add_row(
                name,
                "-" if reached is None else f"{reached.seconds:.1f}",
                "-" if reached is None else f"{reached.device_s:.0f}",
                f"{r.final:.3f}",
                f"{r.models / args.budget:.1f}",
                f"{r.mean_staleness:.1f}",
            )
    Console(width=140).print(shown)
    if args.plot is not None:
        plot(args.task, target, curves, args.plot)


def plot(task: str, target: float, curves: list[tuple[str, SimReport]], path: Path) -> None:
    title = f"{task}: the best of each mode (40 simulated s runs)"
    plot_panels([Panel(title, target, curves)], path)


if __name__ == "__main__":
    main()
