"""What ``fedge simulate --aggregation async`` shows: the versions over
wall-clock time (each scored on the global test split when it appeared,
with its buffer's staleness from the server), what the devices' steps came
to, and the run as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from fedge.client_sim.fleet.free_run import FreeRunReport
from fedge.wire.strict_json import finite_or_null


def _number(value: Any, digits: int = 4) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def headline(report: FreeRunReport) -> str:
    """The score shown: accuracy when the points have it, else loss."""
    keys = {k for p in report.points for k in p.metrics}
    return "accuracy" if "accuracy" in keys else "loss"


def versions_table(report: FreeRunReport) -> Table:
    metric = headline(report)
    table = Table(title="fedge simulate: versions (asynchronous aggregation)")
    columns = ["seconds", "version", f"global {metric}", "global loss", "updates"]
    columns += ["mean staleness", "max staleness", "staleness histogram", "device-seconds"]
    for column in columns:
        table.add_column(column, justify="left" if column == "staleness histogram" else "right")
    for point in report.points:
        server = point.server_metrics
        histogram = server.get("staleness_histogram") or {}
        table.add_row(
            f"{point.seconds:.1f}",
            str(point.model_id),
            _number(point.metrics.get(metric, math.nan)),
            _number(point.metrics.get("loss", math.nan)),
            str(server.get("updates", "-")),
            _number(server.get("mean_staleness"), 2),
            str(server.get("max_staleness", "-")),
            " ".join(f"{k}:{v}" for k, v in sorted(histogram.items(), key=lambda kv: int(kv[0])))
            or "-",
            f"{point.device_seconds:.1f}",
        )
    return table


def closing_lines(report: FreeRunReport) -> list[str]:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())) or "none"
    made = report.points[-1].model_id if report.points else 0
    lines = [
        # The watcher scores the newest version it sees: a version made within
        # a quarter second of the next is not scored on its own.
        f"{made} versions made ({len(report.points)} scored as they appeared) in "
        f"{report.seconds:.1f} s (the steps under way at the end included); "
        f"device steps: {outcomes}",
        f"device-seconds {report.device_seconds:.1f}, of which wasted on refused uploads "
        f"{report.wasted_seconds:.1f}",
    ]
    if report.points:
        last = report.points[-1]
        metric = headline(report)
        lines.append(
            f"final global {metric} {_number(last.metrics.get(metric, math.nan))} "
            f"(version {last.model_id}, {last.seconds:.1f} s)"
        )
    return lines


def write_json(report: FreeRunReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "mode": "async",
        "seconds": report.seconds,
        "device_seconds": report.device_seconds,
        "wasted_seconds": report.wasted_seconds,
        "outcomes": dict(report.outcomes),
        "versions": [dataclasses.asdict(p) for p in report.points],
    }
    path.write_text(json.dumps(finite_or_null(body), indent=2, allow_nan=False) + "\n")
