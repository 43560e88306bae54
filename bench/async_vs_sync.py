"""Asynchronous buffered aggregation (FedBuff) against synchronous rounds, at
scale: the same 1,000 devices with heavy-tailed speeds, the same seeds.

    .venv/bin/python -m bench.async_vs_sync [--quick | --best] [--devices 1000]
        [--tasks digits,text] [--budget 120] [--sigma 1.0]
        [--report bench/reports/async_vs_sync.md] [--plot bench/reports/async_vs_sync.png]

Two tasks (:mod:`bench.async_tasks`): the digits CNN from a seeded random
start, and a user's model through the any-model path (the zoo's small
Transformer text classifier). Device speeds from
:mod:`fedge.client_sim.device.speeds`: log-normal compute and network delay
of spread ``--sigma``, a tenth of the fleet slow browsers (10x slower
again), availability windows. Time is simulated (:mod:`bench.async_sim` says
how and why that is fair); training and aggregation are real.

Each mode is tuned by a small sweep, printed: synchronous rounds over
over-selection, deadline and server learning rate, async over concurrency,
the staleness weight and server learning rate (K = 10 in both: the round's
target, the async buffer). For each run:
simulated seconds and device-compute seconds until the global test
accuracy reaches the task's target (one both modes reach) and holds it for
three evaluations in a row (of 150 per run), the
accuracy at the end of the same budget, models made, uploads accepted and
refused (late or too stale: their training wasted), bytes moved. The plot:
accuracy against simulated seconds, the best run of each mode per task.
Then a profile of the best async setting per task, one change at a time
(staleness weight, a staleness bound, the server learning rate both ways,
FedBuff's scaled step, the step scaled by the sqrt weight (the server's
``step_weight``), server momentum, a larger buffer, seats for the devices
measured fast first): what limits async. ``--quick`` (about a
minute): the digits only, one setting per mode, a shorter budget, no profile.
``--best`` (``bench.report``'s full run): per task the best setting of
each mode in the committed sweep (``bench/reports/async_vs_sync.md``), sync's
best of the 40 s profile runs (over-selection 8, lr 2) and async's two
400-seat profile settings, the full budget, no profile.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.async_sim import AsyncSettings, SimReport, Simulation, SyncSettings
from bench.async_tasks import TASKS, Task, prepared
from fedge.client_sim.device.profiles import fleet_profiles
from fedge.client_sim.device.speeds import SpeedModel, with_speeds

K = 10
SEED = 0
# Compute per example of a typical device (a phone's TFLite training step);
# the network delay is speeds.py's median (50 ms).
COMPUTE_S_PER_EXAMPLE = 0.02
# A target each task's best sync and async runs both reach within the budget.
TARGETS = {"digits": 0.8, "text": 0.9}
# The profile's runs stop sooner: the digits' target is reached well within it.
PROFILE_BUDGET_S = 40.0


@dataclass(frozen=True)
class Run:
    task: str
    label: str
    mode: str
    settings: SyncSettings | AsyncSettings
    report: SimReport
    real_s: float


NO_BOUND = 100_000  # a staleness bound no update reaches: no straggler's work refused


# Each task's best setting of each mode in the full sweep
# (bench/reports/async_vs_sync.md): (sync row, async row) as in sweeps().
BEST = {
    "digits": ((K, 3.0, 1.5, 2.0), (40 * K, "hinge", 0.2)),
    "text": ((K, 4.0, 1.5, 1.0), (40 * K, "hinge", 0.2)),
}


def sweeps(
    quick: bool, best_of: str | None = None
) -> list[tuple[str, SyncSettings | AsyncSettings]]:
    """Synchronous rounds of K updates (and, with as many devices at once as
    the async runs train, of 10 K) over over-selection, deadline and the
    server learning rate; async with a buffer of K over concurrency, the
    staleness weight and the server learning rate, with no staleness bound
    (none of a straggler's work refused; the profile shows what a bound
    does). Both modes' server learning rates are swept around their best
    setting, both ways (larger and smaller)."""
    sync = [
        (K, 1.0, 5.0, 1.0),
        (K, 1.5, 1.5, 1.0),
        (K, 2.0, 1.5, 1.0),
        (K, 3.0, 1.5, 1.0),
        (K, 4.0, 1.5, 1.0),
        (K, 3.0, 1.0, 1.0),
        (K, 3.0, 1.5, 0.5),
        (K, 3.0, 1.5, 2.0),
        # Heavier over-selection: a round of the K fastest of 80 or 120.
        (K, 8.0, 1.5, 1.0),
        (K, 8.0, 1.5, 2.0),
        (K, 12.0, 1.5, 1.0),
        (K, 12.0, 1.5, 2.0),
        (10 * K, 1.3, 1.5, 1.0),
    ]
    fedbuff = [
        (10 * K, "sqrt", 1.0),
        (10 * K, "hinge", 1.0),
        (30 * K, "hinge", 1.0),
        (10 * K, "hinge", 0.3),
        (30 * K, "hinge", 0.3),
        (40 * K, "hinge", 0.2),
    ]
    if quick:
        sync, fedbuff = [(K, 2.0, 1.5, 1.0)], [(10 * K, "hinge", 1.0)]
    elif best_of is not None:  # and sync's best of the profile runs: over 8, lr 2
        sync, fedbuff = [BEST[best_of][0], (K, 8.0, 1.5, 2.0)], [BEST[best_of][1]]
    chosen: list[tuple[str, SyncSettings | AsyncSettings]] = [
        (
            f"sync K {per_round} over {over:g} deadline {deadline:g}s server lr {lr:g}",
            SyncSettings(per_round, over, deadline, per_round // 2, server_lr=lr),
        )
        for per_round, over, deadline, lr in sync
    ]
    chosen += [
        (
            f"async K {K} concurrency {concurrency} {weight} server lr {lr:g}",
            AsyncSettings(K, concurrency, NO_BOUND, staleness_weight=weight, server_lr=lr),
        )
        for concurrency, weight, lr in fedbuff
    ]
    if not quick:  # the profile runs' best async settings, swept as sync's over 8 and 12 are
        chosen += [
            (
                f"async K {K} concurrency 400 hinge server lr 0.1",
                AsyncSettings(K, 400, NO_BOUND, staleness_weight="hinge", server_lr=0.1),
            ),
            (
                f"async K {K} concurrency 400 hinge, step scaled by mean sqrt",
                AsyncSettings(
                    K, 400, NO_BOUND, staleness_weight="hinge", scaled_step=True, step_weight="sqrt"
                ),
            ),
        ]
    return chosen


def profile_variants(base: AsyncSettings) -> list[tuple[str, AsyncSettings]]:
    """The best async setting with one thing changed at a time."""
    others = {"sqrt": "hinge", "hinge": "sqrt"}
    lr = base.server_lr
    return [
        ("as swept", base),
        ("staleness weight constant", replace(base, staleness_weight="constant")),
        (
            f"staleness weight {others[base.staleness_weight]}",
            replace(base, staleness_weight=others[base.staleness_weight]),
        ),
        ("max staleness 10", replace(base, max_staleness=10)),
        (f"server lr {2 * lr:g} (x2)", replace(base, server_lr=2 * lr)),
        (f"server lr {lr / 2:g} (/2)", replace(base, server_lr=lr / 2)),
        ("FedBuff's scaled step", replace(base, scaled_step=True)),
        (
            "step scaled by mean sqrt factor",
            replace(base, scaled_step=True, step_weight="sqrt"),
        ),
        (
            f"server momentum 0.5 (fedavgm, lr {lr / 2:g})",
            replace(base, strategy="fedavgm", momentum=0.5, server_lr=lr / 2),
        ),
        ("buffer 2 K", replace(base, buffer=2 * base.buffer)),
        ("fast devices first (slow factor 2)", replace(base, slow_factor=2.0)),
    ]


def run_task(task: Task, sigma: float, budget_s: float, quick: bool, best: bool) -> list[Run]:
    runs = []
    for label, settings in sweeps(quick, task.name if best else None):
        runs.append(one_run(task, label, settings, sigma, budget_s))
    return runs


def one_run(
    task: Task, label: str, settings: SyncSettings | AsyncSettings, sigma: float, budget_s: float
) -> Run:
    speeds = SpeedModel(sigma, compute_s_per_example=COMPUTE_S_PER_EXAMPLE)
    profiles = with_speeds(fleet_profiles(len(task.devices)), speeds, SEED)
    started = time.perf_counter()
    report = Simulation(task, profiles, settings, budget_s, SEED).run()
    mode = "sync" if isinstance(settings, SyncSettings) else "async"
    run = Run(task.name, label, mode, settings, report, time.perf_counter() - started)
    reached = report.reached(TARGETS[task.name])
    print(
        f"done: {task.name}: {label} ({run.real_s:.0f} s): to target "
        f"{'-' if reached is None else f'{reached.seconds:.1f}'} s, final {report.final:.3f}",
        flush=True,
    )
    return run


def profile_table(runs: list[Run], target: float, budget_s: float) -> Table:
    shown = Table(
        title=f"{runs[0].task}: the best async setting, one change at a time "
        f"({budget_s:g} simulated s)"
    )
    for column in (
        "change", "to target s", "final acc", "versions/s", "mean staleness", "wasted s",
    ):  # fmt: skip
        shown.add_column(column, justify="left" if column == "change" else "right")
    for run in runs:
        r = run.report
        reached = r.reached(target)
        shown.add_row(
            run.label,
            "-" if reached is None else f"{reached.seconds:.1f}",
            f"{r.final:.3f}",
            f"{r.models / budget_s:.1f}",
            f"{r.mean_staleness:.1f}",
            f"{r.wasted_s:.0f}",
        )
    return shown


def table(runs: list[Run], target: float, budget_s: float) -> Table:
    task = runs[0].task
    shown = Table(
        title=f"{task}: to {target:.0%} test accuracy, and after {budget_s:g} simulated s"
    )
    for column in (
        "run", "to target s", "device s to target", "final acc", "models", "uploaded",
        "accepted", "refused", "device s", "wasted s", "MB moved",
    ):  # fmt: skip
        shown.add_column(column, justify="left" if column == "run" else "right")
    for run in runs:
        r = run.report
        reached = r.reached(target)
        refused = ", ".join(f"{k} {n}" for k, n in sorted(r.refused.items())) or "0"
        shown.add_row(
            run.label,
            "-" if reached is None else f"{reached.seconds:.1f}",
            "-" if reached is None else f"{reached.device_s:.0f}",
            f"{r.final:.3f}",
            str(r.models),
            str(r.uploads),
            str(r.accepted),
            refused,
            f"{r.device_s:.0f}",
            f"{r.wasted_s:.0f}",
            f"{r.bytes_moved / 1e6:.0f}",
        )
    return shown


def best(runs: list[Run], mode: str, target: float) -> Run:
    def key(run: Run) -> tuple[float, float]:
        reached = run.report.reached(target)
        return (float("inf") if reached is None else reached.seconds, -run.report.final)

    return min((r for r in runs if r.mode == mode), key=key)


def verdict(runs: list[Run], target: float) -> list[str]:
    sync, fedbuff = best(runs, "sync", target), best(runs, "async", target)
    lines = [f"{runs[0].task}: best sync: {sync.label}; best async: {fedbuff.label}"]
    s, a = sync.report.reached(target), fedbuff.report.reached(target)
    if s is None or a is None:
        missing = [m for m, p in (("sync", s), ("async", a)) if p is None]
        lines.append(f"  {target:.0%} not reached by {' and '.join(missing)} within the budget")
    else:
        lines.append(
            f"  to {target:.0%}: async {s.seconds / max(a.seconds, 1e-9):.2f}x sooner "
            f"({a.seconds:.1f} s vs {s.seconds:.1f} s simulated), "
            f"sync spent {s.device_s / max(a.device_s, 1e-9):.2f}x async's device compute "
            f"(async {a.device_s:.0f} vs sync {s.device_s:.0f} device-s)"
        )
    lines.append(
        f"  final accuracy after the budget: async {fedbuff.report.final:.3f}, "
        f"sync {sync.report.final:.3f}; wasted device-s: async {fedbuff.report.wasted_s:.0f}, "
        f"sync {sync.report.wasted_s:.0f}"
    )
    return lines


def plot(groups: list[list[Run]], targets: dict[str, float], path: Path) -> None:
    panels = []
    for runs in groups:
        task = runs[0].task
        best_runs = [best(runs, mode, targets[task]) for mode in ("sync", "async")]
        panels.append(
            Panel(
                f"{task}, {len(runs)} runs swept, best of each mode",
                targets[task],
                [(run.label, run.report) for run in best_runs],
            )
        )
    plot_panels(panels, path)


@dataclass(frozen=True)
class Panel:
    """One plot of accuracy against simulated seconds: named runs' curves
    and the task's target."""

    title: str
    target: float
    curves: list[tuple[str, SimReport]]


def plot_panels(panels: list[Panel], path: Path) -> None:
    """The panels side by side, written to ``path`` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        for label, report in panel.curves:
            axis.plot(
                [p.seconds for p in report.points], [p.score for p in report.points], label=label
            )
        axis.axhline(panel.target, color="grey", linestyle=":", label="target")
        axis.set_title(panel.title)
        axis.set_xlabel("simulated seconds")
        axis.set_ylabel("global test accuracy")
        axis.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits only, one setting per mode")
    parser.add_argument(
        "--best",
        action="store_true",
        help="each task's best setting per mode from the full sweep, no profile",
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--budget", type=float, default=None, help="simulated seconds per run")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--report", type=Path, default=None, help="markdown report to write")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    tasks = ["digits"] if args.quick else args.tasks.split(",")
    budget = args.budget or (40.0 if args.quick else 120.0)
    console = Console(width=170, record=True)
    console.print(
        f"{args.devices} devices, speed spread sigma {args.sigma}, "
        f"{COMPUTE_S_PER_EXAMPLE * 1000:g} ms per example median, K = {K}, seed {SEED}, "
        f"{budget:g} simulated s per run"
    )
    groups: list[list[Run]] = []
    lines: list[str] = []
    profiles: list[list[Run]] = []
    for name in tasks:
        with (
            tempfile.TemporaryDirectory(prefix="fedge-async-bench-") as work,
            prepared(name, args.devices, SEED, Path(work)) as task,
        ):
            runs = run_task(task, args.sigma, budget, args.quick, args.best)
            fedbuff = best(runs, "async", TARGETS[name])
            if not args.quick and not args.best:
                assert isinstance(fedbuff.settings, AsyncSettings)
                profiles.append(
                    [
                        one_run(task, change, settings, args.sigma, PROFILE_BUDGET_S)
                        for change, settings in profile_variants(fedbuff.settings)
                    ]
                )
        groups.append(runs)
        console.print(table(runs, TARGETS[name], budget))
        lines += verdict(runs, TARGETS[name])
    for profiled in profiles:
        console.print(profile_table(profiled, TARGETS[profiled[0].task], PROFILE_BUDGET_S))
    for line in lines:
        console.print(line)
    if args.plot is not None:
        plot(groups, TARGETS, args.plot)
        console.print(f"plot: {args.plot}")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text("```text\n" + console.export_text() + "```\n")


if __name__ == "__main__":
    main()
