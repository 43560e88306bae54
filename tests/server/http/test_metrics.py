"""The Prometheus text exposition, read as a scraper reads it."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedge.server.metrics import Metrics, server_metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render())
        for s in family.samples
    }


def test_counters_gauges_and_summaries_render_as_prometheus_text() -> None:
    metrics = Metrics()
    metrics.define("jobs_total", "counter", "Jobs done, by outcome.")
    metrics.define("queue", "gauge", "Jobs waiting.")
    metrics.define("job_seconds", "summary", "Time per job.")

    metrics.inc("jobs_total", outcome="ok")
    metrics.inc("jobs_total", 2, outcome="ok")
    metrics.inc("jobs_total", outcome='say "no"\n')
    metrics.set("queue", 7)
    metrics.set("queue", 4)
    metrics.observe("job_seconds", 0.25)
    metrics.observe("job_seconds", 0.5)

    assert samples(metrics) == {
        ("job_seconds_count", ()): 2,
        ("job_seconds_sum", ()): 0.75,
        ("jobs_total", (("outcome", "ok"),)): 3,
        ("jobs_total", (("outcome", 'say "no"\n'),)): 1,
        ("queue", ()): 4,
    }
    text = metrics.render()
    assert "# TYPE jobs_total counter" in text
    assert "# HELP queue Jobs waiting." in text
    assert "_created" not in text  # no timestamp series beside each counter


def test_a_histogram_counts_into_cumulative_buckets() -> None:
    metrics = Metrics()
    metrics.define("wait_seconds", "histogram", "Waits.", ["route"], buckets=[0.1, 1.0])
    for value in (0.05, 0.5, 0.7, 3.0):
        metrics.observe("wait_seconds", value, route="/a")

    got = samples(metrics)
    assert [got[("wait_seconds_bucket", (("le", le), ("route", "/a")))] for le in
            ("0.1", "1.0", "+Inf")] == [1, 3, 4]  # fmt: skip
    assert got[("wait_seconds_count", (("route", "/a"),))] == 4
    assert got[("wait_seconds_sum", (("route", "/a"),))] == pytest.approx(4.25)


def test_two_servers_in_one_process_keep_their_own_numbers() -> None:
    """No global registry: a second server neither fails to register its
    metrics nor sees the first one's."""
    first, second = server_metrics(), server_metrics()
    first.inc("fedge_updates_accepted_total", 5)
    assert samples(first)[("fedge_updates_accepted_total", ())] == 5
    assert samples(second)[("fedge_updates_accepted_total", ())] == 0


def test_misuse_is_an_error_not_a_silent_new_series() -> None:
    metrics = server_metrics()
    with pytest.raises(KeyError):
        metrics.inc("fedge_no_such_total")
    with pytest.raises(ValueError):
        metrics.inc("fedge_rounds_total", reason="closed")  # its label is outcome
    with pytest.raises(ValueError):
        metrics.define("x", "meter", "no such kind")
    assert 'reason="closed"' not in metrics.render()


def test_labels_in_any_order_count_in_one_series() -> None:
    metrics = Metrics()
    metrics.define("health", "gauge", "Alert by release and runtime.")  # labels from first use
    metrics.set("health", 1, version="2", runtime="tflite")
    metrics.set("health", 3, runtime="tflite", version="2")

    assert samples(metrics) == {("health", (("runtime", "tflite"), ("version", "2"))): 3}
    assert 'health{runtime="tflite",version="2"} 3.0' in metrics.render()  # sorted names
