"""What a simulation shows of the live model's health: a table of the judged
windows and closing lines that say whether the drift alert was raised.

The series is the live release's at the end of the run (``GET
/v1/releases/{v}/health``: medians over devices, the votes and the alert
of each judged window), kept in :attr:`Releases.health`.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from fedge.client_sim.report.fleet_report import FleetReport


def _series(report: FleetReport) -> dict[str, Any] | None:
    return report.releases.health if report.releases is not None else None


def health_table(report: FleetReport) -> Table | None:
    """One row per judged window (None: no health was reported)."""
    series = _series(report)
    if series is None or not series["windows"]:
        return None
    table = Table(title=f"fedge simulate: the live model's health (release {series['version']})")
    for column in (
        "window",
        "runtime",
        "devices",
        "metric",
        "drop",
        "distance",
        "drifted",
        "alert",
    ):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    for w in series["windows"]:
        table.add_row(
            str(w["window"]) + (" (baseline)" if w["baseline"] else ""),
            w["runtime"],
            str(w["devices"]),
            f"{w['metric']} {w['value']:.3f}",
            _signed(w["drop"]),
            _signed(w["distance"]),
            f"{w['votes']} of {w['voters']}",
            "ALERT" if w["alert"] else "-",
        )
    return table


def health_lines(report: FleetReport) -> list[str]:
    """Per runtime: the first window that raised the alert, or that none did."""
    series = _series(report)
    if series is None:
        return []
    version, windows = series["version"], series["windows"]
    if not windows:
        return [f"health: release {version}: no window judged yet"]
    lines = []
    for runtime in sorted({w["runtime"] for w in windows}):
        mine = [w for w in windows if w["runtime"] == runtime]
        raised = [w for w in mine if w["alert"]]
        if not raised:
            judged = f"{len(mine)} window{'' if len(mine) == 1 else 's'} judged"
            lines.append(f"health: release {version} ({runtime}): {judged}, no alert")
            continue
        first = raised[0]
        lines.append(
            f"health: release {version} ({runtime}): ALERT in {len(raised)} of {len(mine)} "
            f"windows, first window {first['window']}: {first['votes']} of {first['voters']} "
            f"devices drifted, {first['metric']} {first['value']:.3f} (drop "
            f"{_signed(first['drop'])}), predictions moved {_signed(first['distance'])}"
        )
    return lines


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
