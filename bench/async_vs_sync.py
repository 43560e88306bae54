"""Asynchronous buffered aggregation (FedBuff) against synchronous rounds,
on the same fleet with heavy-tailed device speeds and the same seeds.

    .venv/bin/python -m bench.async_vs_sync [--devices 200] [--budget 40]
        [--sigma 1.0] [--target 0.8] [--plot artifacts/async_vs_sync.png]

The digits task from a seeded random CNN (``public_fraction = 0``), devices
with speeds from :mod:`fedge.client_sim.device.speeds` (log-normal compute
and network delay with spread ``--sigma``, a tenth slow browsers, windows
of availability), on the wall clock (:mod:`fedge.client_sim.fleet.free_run`:
each device asks whenever its own time comes). Both modes are tuned by a
small sweep, printed: synchronous rounds over over-selection and deadline,
async over the concurrency and the staleness bound (K = the rounds'
target, 10). For each run:
seconds and device-compute seconds until the global test accuracy first
reaches ``--target``, the accuracy at the end of the same budget, models
made, updates accepted and refused (their training wasted), bytes moved.
The plot: accuracy against wall-clock seconds, the best run of each mode.

A small version of issue 26's Show: 200 devices (not 1,000) and the digits
task only, on a shared 2-core machine; read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedge.client_sim.device.profiles import fleet_profiles
from fedge.client_sim.device.speeds import SpeedModel, with_speeds
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.free_run import FreeRunReport, run_free
from fedge.client_sim.fleet.preparation import prepare_model
from fedge.client_sim.fleet.threads import ThreadBackend

K = 10
SEED = 0


@dataclass(frozen=True)
class Run:
    label: str
    mode: str
    config: FleetConfig
    report: FreeRunReport
    bytes_moved: int

    def reached(self, target: float) -> tuple[float, float] | None:
        """(seconds, device seconds) when the accuracy first reached ``target``."""
        for point in self.report.points:
            if point.metrics.get("accuracy", 0.0) >= target:
                return point.seconds, point.device_seconds
        return None

    @property
    def final_accuracy(self) -> float:
        points = self.report.points
        return points[-1].metrics.get("accuracy", 0.0) if points else 0.0


def one_run(label: str, config: FleetConfig, speeds: SpeedModel, budget_s: float) -> Run:
    with prepare_model(config) as (model, data):
        profiles = with_speeds(fleet_profiles(len(data.devices)), speeds, config.seed)
        backend = ThreadBackend.start(config, model, data, profiles)
        try:
            report = run_free(
                backend.devices, model, model.trainer(), data.test, budget_s, config.workers
            )
            counters = backend.counters()
        finally:
            backend.close()
    return Run(label, config.aggregation, config, report, counters.bytes_up + counters.bytes_down)


def sweep(devices: int, budget_s: float, sigma: float, workers: int) -> list[Run]:
    speeds = SpeedModel(sigma, compute_s_per_example=0.1)
    base = FleetConfig(
        devices=devices,
        per_round=K,
        public_fraction=0.0,
        seed=SEED,
        workers=workers,
        learning_rate=0.1,
        local_epochs=2,
    )
    runs = []
    for over, deadline in ((1.0, 4.0), (1.0, 12.0), (1.5, 4.0), (1.5, 12.0)):
        config = replace(base, over_selection=over, deadline_s=deadline, min_participants=K // 2)
        label = f"sync over {over} deadline {deadline:g}s"
        runs.append(one_run(label, config, speeds, budget_s))
        print(f"done: {label}", flush=True)
    # Async: a lease of 60 s (the rounds' deadline), concurrency x staleness bound.
    for concurrency, bound in ((2 * K, 5), (3 * K, 5), (2 * K, 20), (3 * K, 20)):
        config = replace(
            base,
            aggregation="async",
            buffer=K,
            concurrency=concurrency,
            max_staleness=bound,
            deadline_s=60.0,
        )
        label = f"async K {K} concurrency {concurrency} max staleness {bound}"
        runs.append(one_run(label, config, speeds, budget_s))
        print(f"done: {label}", flush=True)
    return runs


def table(runs: list[Run], target: float) -> Table:
    shown = Table(title=f"async vs sync: time to {target:.0%} global test accuracy")
    for column in (
        "run", "to target s", "device s to target", "final acc", "models",
        "accepted", "refused", "device s", "wasted s", "MB moved",
    ):  # fmt: skip
        shown.add_column(column, justify="left" if column == "run" else "right")
    for run in runs:
        reached = run.reached(target)
        outcomes = run.report.outcomes
        refused = sum(n for kind, n in outcomes.items() if kind.startswith("rejected"))
        shown.add_row(
            run.label,
            "-" if reached is None else f"{reached[0]:.1f}",
            "-" if reached is None else f"{reached[1]:.1f}",
            f"{run.final_accuracy:.3f}",
            str(len(run.report.points)),
            str(outcomes.get("contributed", 0)),
            str(refused),
            f"{run.report.device_seconds:.1f}",
            f"{run.report.wasted_seconds:.1f}",
            f"{run.bytes_moved / 1e6:.1f}",
        )
    return shown


def best(runs: list[Run], mode: str, target: float) -> Run:
    def key(run: Run) -> tuple[float, float]:
        reached = run.reached(target)
        return (float("inf") if reached is None else reached[0], -run.final_accuracy)

    return min((r for r in runs if r.mode == mode), key=key)


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for run in runs:
        points = run.report.points
        axes.plot(
            [p.seconds for p in points],
            [p.metrics.get("accuracy", 0.0) for p in points],
            marker=".",
            label=run.label,
        )
    axes.set_xlabel("wall-clock seconds")
    axes.set_ylabel("global test accuracy")
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--budget", type=float, default=40.0, help="seconds per run")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--plot", type=Path, default=Path("artifacts/async_vs_sync.png"))
    args = parser.parse_args()
    runs = sweep(args.devices, args.budget, args.sigma, args.workers)
    console = Console(width=160)
    console.print(table(runs, args.target))
    for run in runs:
        refusals = {k: n for k, n in run.report.outcomes.items() if k.startswith("rejected")}
        console.print(f"{run.label}: refused uploads {refusals or 'none'}")
    sync, fedbuff = best(runs, "sync", args.target), best(runs, "async", args.target)
    console.print(f"best sync: {sync.label}; best async: {fedbuff.label}")
    s, a = sync.reached(args.target), fedbuff.reached(args.target)
    if s is not None and a is not None:
        console.print(
            f"to {args.target:.0%}: async {s[0] / a[0]:.2f}x sooner in wall-clock, "
            f"{s[1] / max(a[1], 1e-9):.2f}x less device compute"
        )
    # A target both reach within the budget: the best sync run's final accuracy.
    matched = fedbuff.reached(sync.final_accuracy)
    if matched is not None:
        console.print(
            f"async first reached the best sync run's final accuracy "
            f"({sync.final_accuracy:.3f}, after {args.budget:g} s) after {matched[0]:.1f} s "
            f"({args.budget / max(matched[0], 1e-9):.1f}x sooner) and {matched[1]:.0f} "
            f"device-seconds (sync: {sync.report.device_seconds:.0f})"
        )
    plot([sync, fedbuff], args.plot)
    console.print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
