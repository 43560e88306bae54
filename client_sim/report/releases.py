"""What a simulation shows of its releases: a table, closing lines, a plot panel."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.table import Table

from fedge.client_sim.report.fleet_report import FleetReport, ReleaseReport
from fedge.wire.canary import describe, describe_parity

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def releases_table(report: FleetReport) -> Table | None:
    """One row per release made during the run (None: no release was made)."""
    if report.releases is None or not report.releases.releases:
        return None
    metric = report.metric
    table = Table(title="fedge simulate: releases (canary on the devices' own data)")
    for column in (
        "release",
        "source",
        "after round",
        "state",
        "rollout %",
        "reports",
        "counted",
        f"candidate {metric}",
        f"live {metric}",
        "difference [interval]",
        "decision",
        "parity",
        "canary devices use",
    ):
        table.add_column(column, justify="left" if column in ("source", "state") else "right")
    for r in report.releases.releases:
        using = ", ".join(f"{k} {v}" for k, v in r.using.items() if v) or "-"
        table.add_row(
            str(r.version),
            r.source,
            str(r.cut_after_round) if r.cut_after_round is not None else "-",
            r.state + (f" ({r.error[:40]})" if r.error else ""),
            f"{r.percent:g}",
            str(r.reports),
            str((r.canary or {}).get("devices", "-")),
            _mean(r.candidate, r.metric),
            _mean(r.baseline, r.metric),
            _difference(r.canary),
            r.decision or "not enough evidence yet",
            describe_parity(r.parity),
            using,
        )
    return table


def release_lines(report: FleetReport) -> list[str]:
    if report.releases is None:
        return []
    rollout = report.releases.rollout
    adoption = ", ".join(f"{k} {v}" for k, v in report.releases.adoption.items())
    candidate = (
        f", candidate {rollout['candidate']} at {rollout['percent']:g} %"
        if rollout["candidate"] is not None
        else ""
    )
    evidence = [
        f"release {r.version}: {describe(r.canary)}"
        + (f"; parity {describe_parity(r.parity)}" if r.parity else "")
        for r in report.releases.releases
    ]
    return [
        f"releases: {len(report.releases.releases)} made; live release {rollout['live']}"
        f"{candidate}; devices serve: {adoption}",
        *evidence,
    ]


def releases_panel(axes: Axes, report: FleetReport) -> None:
    """Per release: the canary devices' weighted mean metric, candidate vs live."""
    made = report.releases.releases if report.releases is not None else []
    metric = report.metric
    decided = [r for r in made if r.candidate is not None]
    width = 0.38
    for offset, (label, values) in enumerate(
        (
            ("candidate", [_value(r.candidate, r) for r in decided]),
            ("live (baseline)", [_value(r.baseline, r) for r in decided]),
        )
    ):
        positions = [i + (offset - 0.5) * width for i in range(len(decided))]
        bars = axes.bar(positions, values, width, label=label)
        axes.bar_label(bars, fmt="%.3f", fontsize=7)
    axes.set_xticks(
        list(range(len(decided))),
        [f"v{r.version}\n{r.decision or 'pending'} ({r.reports})" for r in decided],
        fontsize=8,
    )
    axes.set(ylabel=metric, title=f"canary releases: {metric} on devices' data")
    if decided:
        axes.legend(loc="lower right", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no canary reports", ha="center", va="center")


def _value(means: dict[str, float] | None, release: ReleaseReport) -> float:
    if means is None or release.metric is None:
        return math.nan
    return means[release.metric]


def _difference(canary: dict[str, Any] | None) -> str:
    """The mean paired difference (candidate minus live) and its interval."""
    if not canary or canary.get("estimate") is None:
        return "-"
    low, high = canary.get("interval") or (float("nan"), float("nan"))
    return f"{canary['estimate']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _mean(means: dict[str, float] | None, metric: str | None) -> str:
    if means is None or metric is None:
        return "-"
    return f"{means[metric]:.4f}"
