"""Prometheus metrics of one server, on its own ``prometheus_client``
registry: tests run several servers in one process, so the global registry
is never used.

Callers name a metric and its labels as keyword arguments
(``metrics.inc("fedge_rounds_total", outcome="closed")``); a family whose
label names were not given to :meth:`Metrics.define` takes them (sorted)
from its first use. Label values must come from small fixed sets (route
templates, status codes, refusal codes), never from a device id or a raw
path: each value is a series kept for the life of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    disable_created_metrics,
    generate_latest,
)

# The text format 0.0.4, as /metrics always served.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Without this every counter and histogram gets a second ``_created`` series
# (a timestamp per label set) that doubles the scrape for no use here.
# A process-wide switch of prometheus_client, set once at import.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Request and receipt latency: a millisecond to a minute.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
LATENCY_BUCKETS += (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Aggregation: a fold is microseconds to a second, a close up to minutes.
AGGREGATION_BUCKETS: tuple[float, ...] = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1)
AGGREGATION_BUCKETS += (0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# A round lasts seconds (a test) to a day (a phone fleet that trains at night).
ROUND_BUCKETS: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
ROUND_BUCKETS += (1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram, "summary": Summary}
_Key = tuple[str, tuple[tuple[str, str], ...]]


class Metrics:
    """Counters, gauges, histograms and summaries of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._specs: dict[str, tuple[str, str, tuple[float, ...] | None]] = {}
        self._families: dict[str, Any] = {}
        # (name, labels) -> the labelled child: a dict lookup per record
        # instead of prometheus_client's label checks. Bounded by the
        # label sets, which are small by design.
        self._children: dict[_Key, Any] = {}

    def define(
        self,
        name: str,
        kind: str,
        help_text: str,
        labels: Sequence[str] | None = None,
        buckets: Sequence[float] | None = None,
    ) -> None:
        """Declare a metric once (a second call is ignored). ``labels``
        given (``()`` for none): the family is registered now, so it is
        listed before its first sample."""
        if kind not in _KINDS:
            raise ValueError(f"unknown metric kind {kind!r}")
        if buckets is not None and kind != "histogram":
            raise ValueError("only a histogram has buckets")
        with self._lock:
            if name in self._specs:
                return
            self._specs[name] = (kind, help_text, None if buckets is None else tuple(buckets))
            if labels is not None:
                self._register(name, tuple(sorted(labels)))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._child(name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._child(name, labels).set(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._child(name, labels).observe(value)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (``/metrics``)."""
        return generate_latest(self.registry)

    def render(self) -> str:
        return self.exposition().decode("utf-8")

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        # Keyed in the caller's keyword order (not sorted: this runs on
        # every request); another order of the same labels is another key
        # to the same child.
        key = (name, tuple(labels.items()))
        child = self._children.get(key)
        if child is not None:
            return child
        with self._lock:
            family = self._families.get(name)
            if family is None:
                if name not in self._specs:
                    raise KeyError(f"metric {name} is not defined")
                family = self._register(name, tuple(sorted(labels)))
            child = family.labels(**labels) if labels else family
            self._children[key] = child
            return child

    def _register(self, name: str, labelnames: tuple[str, ...]) -> Any:
        kind, help_text, buckets = self._specs[name]
        options: dict[str, Any] = {"registry": self.registry}
        if buckets is not None:
            options["buckets"] = buckets
        family = _KINDS[kind](name, help_text, labelnames, **options)
        self._families[name] = family
        return family


def server_metrics() -> Metrics:
    metrics = Metrics()
    metrics.define("fedge_rounds_total", "counter", "Rounds ended, by outcome.", ["outcome"])
    metrics.define("fedge_updates_accepted_total", "counter", "Updates accepted.", [])
    metrics.define(
        "fedge_updates_rejected_total", "counter", "Updates rejected, by reason.", ["reason"]
    )
    metrics.define(
        "fedge_aggregation_seconds",
        "histogram",
        "Time to aggregate a round at its close.",
        [],
        AGGREGATION_BUCKETS,
    )
    metrics.define(
        "fedge_aggregation_fold_seconds",
        "histogram",
        "Time to fold one accepted update into the round's running sum.",
        [],
        AGGREGATION_BUCKETS,
    )
    metrics.define(
        "fedge_update_receipt_seconds",
        "histogram",
        "From an upload's arrival to its receipt (validated, on disk, summed).",
        [],
        LATENCY_BUCKETS,
    )
    metrics.define(
        "fedge_round_duration_seconds",
        "histogram",
        "From a round's opening to its end, by outcome.",
        ["outcome"],
        ROUND_BUCKETS,
    )
    metrics.define("fedge_http_bytes_in_total", "counter", "Request body bytes received.", [])
    metrics.define("fedge_http_bytes_out_total", "counter", "Response body bytes sent.", [])
    metrics.define(
        "fedge_http_requests_total",
        "counter",
        "HTTP requests, by route template and status.",
        ["route", "status"],
    )
    metrics.define(
        "fedge_http_request_seconds",
        "histogram",
        "HTTP request latency to the response's start, by route template and status class.",
        ["route", "status_class"],
        LATENCY_BUCKETS,
    )
    metrics.define("fedge_devices", "gauge", "Enrolled devices.", [])
    metrics.define("fedge_round_updates", "gauge", "Updates received in the open round.", [])
    metrics.define("fedge_current_round", "gauge", "Id of the open round (0: none).", [])
    metrics.define(
        "fedge_round_close_failures_total", "counter", "Failed attempts to close a round.", []
    )
    metrics.define(
        "fedge_round_close_failing", "gauge", "1 while a round cannot close (retried), else 0.", []
    )
    metrics.define(
        "fedge_aggregator",
        "gauge",
        "1 while this worker holds the aggregator's lease (runs the rounds), else 0.",
        [],
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
