"""The Prometheus text exposition, read as a scraper reads it."""

from __future__ import annotations

from fedge.server.metrics import Metrics


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

    assert metrics.render().splitlines() == [
        "# HELP job_seconds Time per job.",
        "# TYPE job_seconds summary",
        "job_seconds_count 2",
        "job_seconds_sum 0.75",
        "# HELP jobs_total Jobs done, by outcome.",
        "# TYPE jobs_total counter",
        'jobs_total{outcome="ok"} 3',
        'jobs_total{outcome="say \\"no\\"\\n"} 1',
        "# HELP queue Jobs waiting.",
        "# TYPE queue gauge",
        "queue 4",
    ]
