"""What a simulation shows: tables, closing lines, a JSON report, a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from fedge.client_sim.report.fleet_report import FleetReport
from fedge.client_sim.report.releases import releases_panel
from fedge.wire.strict_json import finite_or_null

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MODELS = {
    "deployed": "round 0 (deployed)",
    "final": "final global",
    "personalised": "personalised",
}


def summary_table(report: FleetReport) -> Table:
    table = Table(title="fedge simulate: rounds")
    metric = report.metric
    for column in (
        "round",
        "state",
        f"global {metric}",
        "global loss",
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
            _number(r.metrics[metric]),
            _number(r.metrics["loss"]),
            str(r.participants),
            str(r.dropouts),
            rejects,
            f"{r.bytes_up / 1e6:.2f}",
            f"{r.bytes_down / 1e6:.2f}",
            f"{r.seconds:.2f}",
        )
    return table


def scores_table(report: FleetReport) -> Table:
    """Round 0 (the deployed model) -> final global -> personalised, on the
    global test split and on the devices' own held-out data."""
    metric = report.metric
    table = Table(title=f"fedge simulate: {metric} and loss, global test and device data")
    table.add_column("model", justify="left")
    for column in (
        f"global test {metric}",
        "global test loss",
        f"device data {metric}",
        "device data loss",
    ):
        table.add_column(column, justify="right")
    for key, label in MODELS.items():
        scores = report.scores[key]
        table.add_row(
            label,
            _number(scores.global_test[metric]),
            _number(scores.global_test["loss"]),
            _number(scores.devices[metric]),
            _number(scores.devices["loss"]),
        )
    return table


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def closing_lines(report: FleetReport) -> list[str]:
    rounds = report.rounds
    seconds = sorted(r.seconds for r in rounds)
    rejects: dict[str, int] = {}
    for r in rounds:
        for reason, count in r.rejects.items():
            rejects[reason] = rejects.get(reason, 0) + count
    taking_part = sum(1 for p in report.participation if p > 0)
    metric = report.metric
    deployed, final, personal = (report.scores[k] for k in MODELS)
    return [
        f"global test {metric}: round 0 (deployed) {_number(deployed.global_test[metric])} -> "
        f"final {_number(final.global_test[metric])}",
        f"on the devices' own held-out data ({metric}): deployed "
        f"{_number(deployed.devices[metric])}, final global {_number(final.devices[metric])}, "
        f"personalised {_number(personal.devices[metric])}",
        f"devices: {len(report.participation)} ({report.partition}); "
        f"{taking_part} took part, per device min {min(report.participation)}, "
        f"max {max(report.participation)}",
        f"dropouts {sum(r.dropouts for r in rounds)}, crashes mid-upload {report.crashes}, "
        f"client retries {report.retries}, rejects {rejects or 'none'}",
        f"seconds per round: median {seconds[len(seconds) // 2]:.2f}" if seconds else "",
    ]


def write_json(report: FleetReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Strict JSON: a score with no examples behind it (NaN) is written as null.
    text = json.dumps(finite_or_null(report.to_json()), indent=2, allow_nan=False)
    path.write_text(text + "\n")


def write_plot(report: FleetReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report.metric
    panels = 4 if report.releases is not None and report.releases.releases else 3
    fig, axes = plt.subplots(1, panels, figsize=(16 + 5 * (panels - 3), 4.2))
    left, middle, right = axes[:3]
    rounds = [0, *(r.round_id for r in report.rounds)]
    curve = [report.scores["deployed"].global_test[metric]]
    curve += [r.metrics[metric] for r in report.rounds]
    left.plot(rounds, curve, marker="o", label="global model, global test")
    left.axhline(
        report.scores["personalised"].devices[metric],
        color="tab:green",
        linestyle="--",
        label="personalised (device data, end)",
    )
    left.axhline(
        report.scores["final"].devices[metric],
        color="tab:orange",
        linestyle=":",
        label="final global (device data)",
    )
    left.set(xlabel="round (0: deployed)", ylabel=metric, title=f"{metric} per round")
    if metric == "accuracy":
        left.set_ylim(0, 1)
    left.legend(loc="best", fontsize=8)
    left.grid(alpha=0.3)
    _scores_bars(middle, report)
    ids = [r.round_id for r in report.rounds]
    right.bar(ids, [r.participants for r in report.rounds], label="updates accepted")
    right.bar(
        ids,
        [sum(r.rejects.values()) for r in report.rounds],
        bottom=[r.participants for r in report.rounds],
        label="rejected",
    )
    right.set(xlabel="round", ylabel="devices", title="participation")
    right.legend(loc="lower right")
    if panels == 4:
        releases_panel(axes[3], report)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scores_bars(axes: Axes, report: FleetReport) -> None:
    """Deployed -> final -> personalised, on the global test and the devices' data."""
    metric = report.metric
    width = 0.38
    positions = range(len(MODELS))
    for offset, (where, label) in enumerate(
        (("global_test", "global test"), ("devices", "devices' own data"))
    ):
        values = [getattr(report.scores[key], where)[metric] for key in MODELS]
        bars = axes.bar([p + (offset - 0.5) * width for p in positions], values, width, label=label)
        axes.bar_label(bars, fmt="%.3f", fontsize=7)
    axes.set_xticks(list(positions), [MODELS[k] for k in MODELS], fontsize=8)
    axes.set(ylabel=metric, title="deployed -> federated -> personalised")
    axes.legend(loc="lower right", fontsize=8)
