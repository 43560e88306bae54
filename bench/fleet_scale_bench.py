"""Large fleets on one machine: seconds per round, updates per second, check-ins
per round and memory over the run, for fleets of growing size against a
real ``fedge serve`` process.

    .venv/bin/python -m bench.fleet_scale_bench [--devices 10,1000,10000] [--rounds 5]
        [--per-round 100] [--plot fleet_scale.png]

Every selected device enrols, asks for a task, downloads the base
checkpoint, trains with the bundle's TFLite training artifact and uploads
over HTTP; a round's time includes the server's aggregation and the
fleet's evaluation of the new global model on the test split. Round 1 is
shown apart: every device of the fleet checks in once then (the server
spreads them over the next rounds). The medians are over rounds 2 and
later. Memory: the peak RSS of the fleet's process (devices, runtimes) and
of the server's, per fleet, and both after every round in the plot.
A fleet larger than the digits' private examples shares 1,000 data shards
round-robin (``FleetConfig.data_shards``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.model_source import build_bundle
from fedge.client_sim.fleet.run import run_fleet
from fedge.client_sim.report.fleet_report import RoundReport
from tests.helpers.live_server import running

SEED = 0
SHARDS = 1000  # the most devices the digits' private part gives one example each
TASKS_ROUTE = 'route="/v1/tasks"'


@dataclass
class Sample:
    round_id: int
    seconds: float
    updates: int
    check_ins: int
    fleet_rss_mib: float
    server_rss_mib: float


@dataclass
class FleetRun:
    devices: int
    per_round: int
    setup_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    fleet_peak_mib: float = 0.0
    server_peak_mib: float = 0.0

    @property
    def steady(self) -> list[Sample]:
        return self.samples[1:] or self.samples


def status_mib(pid: int | str, key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} line")


def reset_peak_rss() -> None:
    """Start this process's VmHWM again from its RSS now (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def check_ins(url: str) -> int:
    """``POST /v1/tasks`` answered so far, from the server's metrics."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("fedge_http_requests_total") and TASKS_ROUTE in line
    )


def run_one(devices: int, per_round: int, rounds: int, workers: int, bundle: Path) -> FleetRun:
    per_round = min(per_round, devices)
    result = FleetRun(devices, per_round)
    with tempfile.TemporaryDirectory(prefix="fedge-scale-") as tmp:
        work = Path(tmp)
        config_file = work / "server.toml"
        config_file.write_text(
            f"threads = {workers}\n"
            # The whole fleet enrols from 127.0.0.1 at once (the default burst is 2,000).
            f'rate_limits = {{ enrol = "5/s:{devices + 16}" }}\n'
            f"[rounds]\ntarget_participants = {per_round}\n"
            f"min_participants = {max(1, per_round // 2)}\ndeadline_s = 60.0\n"
            "over_selection = 1.0\n"
        )
        flags = ["--config", str(config_file), "--model", str(bundle)]
        with running(work / "data", flags, work / "server.log") as server:
            pid = server.process.pid
            reset_peak_rss()
            started = time.perf_counter()
            counted = [0]

            def on_round(report: RoundReport) -> None:
                if not result.samples:
                    result.setup_s = time.perf_counter() - started - report.seconds
                total = check_ins(server.url)
                result.samples.append(
                    Sample(
                        report.round_id,
                        report.seconds,
                        report.participants,
                        total - counted[0],
                        status_mib("self", "VmRSS"),
                        status_mib(pid, "VmRSS"),
                    )
                )
                counted[0] = total

            run_fleet(
                FleetConfig(
                    devices=devices,
                    per_round=per_round,
                    rounds=rounds,
                    seed=SEED,
                    workers=workers,
                    min_examples=1,
                    public_fraction=0.0,
                    data_shards=SHARDS if devices > SHARDS else None,
                    server_url=server.url,
                    model=bundle,
                ),
                progress=on_round,
            )
            result.fleet_peak_mib = status_mib("self", "VmHWM")
            result.server_peak_mib = status_mib(pid, "VmHWM")
    return result


def table(runs: list[FleetRun], workers: int) -> Table:
    out = Table(
        title=f"fleets against fedge serve ({workers} device workers, TFLite training, "
        "real HTTP; medians over rounds 2..)"
    )
    columns = (
        "devices",
        "per round",
        "setup s",
        "round 1 s",
        "median s/round",
        "median updates/s",
        "check-ins/round",
        "fleet peak RSS MiB",
        "server peak RSS MiB",
    )
    for column in columns:
        out.add_column(column, justify="right")
    for run in runs:
        steady = run.steady
        out.add_row(
            f"{run.devices:,}",
            str(run.per_round),
            f"{run.setup_s:.1f}",
            f"{run.samples[0].seconds:.2f}",
            f"{statistics.median(s.seconds for s in steady):.2f}",
            f"{statistics.median(s.updates / s.seconds for s in steady):.0f}",
            f"{statistics.median(s.check_ins for s in steady):.0f}",
            f"{run.fleet_peak_mib:.0f}",
            f"{run.server_peak_mib:.0f}",
        )
    return out


def plot(runs: list[FleetRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (secs, rate, memory) = plt.subplots(1, 3, figsize=(16, 4.2))
    for index, run in enumerate(runs):
        rounds = [s.round_id for s in run.samples]
        label, color = f"{run.devices:,} devices", f"C{index}"
        secs.plot(rounds, [s.seconds for s in run.samples], "o-", color=color, label=label)
        rate.plot(
            rounds, [s.updates / s.seconds for s in run.samples], "o-", color=color, label=label
        )
        memory.plot(
            rounds,
            [s.fleet_rss_mib for s in run.samples],
            "o-",
            color=color,
            label=f"{label}: fleet",
        )
        memory.plot(
            rounds,
            [s.server_rss_mib for s in run.samples],
            "x--",
            color=color,
            label=f"{label}: server",
        )
    secs.set(xlabel="round", ylabel="seconds", title="seconds per round")
    rate.set(xlabel="round", ylabel="updates / s", title="updates accepted per second")
    memory.set(xlabel="round", ylabel="RSS MiB", title="RSS after each round")
    for axis in (secs, rate, memory):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="10,1000,10000", help="comma-separated sizes")
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--plot", type=Path, help="write s/round, updates/s and RSS as a PNG")
    args = parser.parse_args()
    console = Console(width=150)  # the table's columns, untruncated
    runs = []
    with tempfile.TemporaryDirectory(prefix="fedge-scale-model-") as tmp:
        console.print("building the reference CNN's bundle (TFLite with its training artifact)")
        bundle = build_bundle(Path(tmp), SEED)
        for size in (int(s) for s in args.devices.split(",")):
            console.print(f"{size:,} devices, {min(args.per_round, size)} per round ...")
            runs.append(run_one(size, args.per_round, args.rounds, args.workers, bundle))
            for sample in runs[-1].samples:
                console.print(
                    f"  round {sample.round_id}: {sample.seconds:.2f} s, {sample.updates} "
                    f"updates, {sample.check_ins} check-ins, fleet {sample.fleet_rss_mib:.0f} "
                    f"MiB, server {sample.server_rss_mib:.0f} MiB"
                )
    console.print(table(runs, args.workers))
    if args.plot is not None:
        plot(runs, args.plot)
        console.print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
