"""What a simulation shows: a summary table, a JSON report, a plot."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from fedge.client_sim.fleet import FleetReport


def summary_table(report: FleetReport) -> Table:
    table = Table(title="fedge simulate: rounds")
    for column in (
        "round",
        "state",
        "global acc",
        "participants",
        "dropouts",
        "rejects",
        "MB up",
        "MB down",
        "seconds",
    ):
        table.add_column(column, justify="left" if column in ("state", "rejects") else "right")
    for r in report.rounds:
        rejects = ", ".join(f"{k}={v}" for k, v in sorted(r.rejects.items())) or "-"
        table.add_row(
            str(r.round_id),
            r.state,
            f"{r.global_accuracy:.3f}",
            str(r.participants),
            str(r.dropouts),
            rejects,
            f"{r.bytes_up / 1e6:.2f}",
            f"{r.bytes_down / 1e6:.2f}",
            f"{r.seconds:.2f}",
        )
    return table


def closing_lines(report: FleetReport) -> list[str]:
    rounds = report.rounds
    seconds = sorted(r.seconds for r in rounds)
    rejects: dict[str, int] = {}
    for r in rounds:
        for reason, count in r.rejects.items():
            rejects[reason] = rejects.get(reason, 0) + count
    taking_part = sum(1 for p in report.participation if p > 0)
    return [
        f"final global test accuracy: {rounds[-1].global_accuracy:.4f}" if rounds else "",
        f"on the devices' own held-out data: global model {report.global_accuracy_on_devices:.4f},"
        f" personalised {report.personal_accuracy_on_devices:.4f}",
        f"participation: {taking_part}/{len(report.participation)} devices took part; "
        f"per device min {min(report.participation)}, max {max(report.participation)}",
        f"dropouts {sum(r.dropouts for r in rounds)}, crashes mid-upload {report.crashes}, "
        f"client retries {report.retries}, rejects {rejects or 'none'}",
        f"seconds per round: median {seconds[len(seconds) // 2]:.2f}" if seconds else "",
    ]


def write_json(report: FleetReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")


def write_plot(report: FleetReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r.round_id for r in report.rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(rounds, [r.global_accuracy for r in report.rounds], marker="o", label="global")
    left.axhline(
        report.personal_accuracy_on_devices,
        color="tab:green",
        linestyle="--",
        label="personalised (device data, end)",
    )
    left.axhline(
        report.global_accuracy_on_devices,
        color="tab:orange",
        linestyle=":",
        label="global (device data, end)",
    )
    left.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title="accuracy per round")
    left.legend(loc="lower right")
    left.grid(alpha=0.3)
    right.bar(rounds, [r.participants for r in report.rounds], label="updates accepted")
    right.bar(
        rounds,
        [sum(r.rejects.values()) for r in report.rounds],
        bottom=[r.participants for r in report.rounds],
        label="rejected",
    )
    right.set(xlabel="round", ylabel="devices", title="participation")
    right.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
