"""Prometheus text exposition, owned by one app (no global registry)."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels) + "}"


@dataclass
class _Family:
    kind: str
    help: str
    values: dict[tuple[tuple[str, str], ...], float] = field(
        default_factory=lambda: defaultdict(float)
    )


class Metrics:
    """Counters, gauges and summaries (as ``_sum`` / ``_count``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def define(self, name: str, kind: str, help_text: str) -> None:
        self._families.setdefault(name, _Family(kind, help_text))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._families[name].values[tuple(sorted(labels.items()))] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._families[name].values[tuple(sorted(labels.items()))] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            key = tuple(sorted(labels.items()))
            family = self._families[name]
            family.values[(("__part", "sum"), *key)] += value
            family.values[(("__part", "count"), *key)] += 1

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, family in sorted(self._families.items()):
                lines.append(f"# HELP {name} {family.help}")
                lines.append(f"# TYPE {name} {family.kind}")
                for key, value in sorted(family.values.items()):
                    if key and key[0][0] == "__part":
                        lines.append(f"{name}_{key[0][1]}{_labels(key[1:])} {value:g}")
                    else:
                        lines.append(f"{name}{_labels(key)} {value:g}")
        return "\n".join(lines) + "\n"


def server_metrics() -> Metrics:
    metrics = Metrics()
    metrics.define("fedge_rounds_total", "counter", "Rounds ended, by outcome.")
    metrics.define("fedge_updates_accepted_total", "counter", "Updates accepted.")
    metrics.define("fedge_updates_rejected_total", "counter", "Updates rejected, by reason.")
    metrics.define("fedge_aggregation_seconds", "summary", "Time to aggregate a round.")
    metrics.define("fedge_http_bytes_in_total", "counter", "Request body bytes received.")
    metrics.define("fedge_http_bytes_out_total", "counter", "Response body bytes sent.")
    metrics.define("fedge_http_requests_total", "counter", "HTTP requests, by route and status.")
    metrics.define("fedge_devices", "gauge", "Enrolled devices.")
    metrics.define("fedge_round_updates", "gauge", "Updates received in the open round.")
    metrics.define("fedge_current_round", "gauge", "Id of the open round (0: none).")
    metrics.define(
        "fedge_round_close_failures_total", "counter", "Failed attempts to close a round."
    )
    metrics.define(
        "fedge_round_close_failing", "gauge", "1 while a round cannot close (retried), else 0."
    )
    metrics.define("fedge_versions_total", "counter", "Async aggregation: versions published.")
    metrics.define(
        "fedge_update_staleness", "summary", "Async aggregation: versions an accepted update lags."
    )
    metrics.define(
        "fedge_updates_by_staleness_total",
        "counter",
        "Async aggregation: accepted updates by staleness (versions behind).",
    )
    return metrics
