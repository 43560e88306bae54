"""Reading a live server's ``/metrics`` (Prometheus text) from a test."""

from __future__ import annotations

import time

import requests


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of ``/metrics`` (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def wait_for_metric(url: str, name: str, value: float, timeout_s: float = 30.0) -> None:
    """Until ``name`` reads ``value``; an AssertionError naming the last
    reading after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (seen := metric(url, name)) != value:
        assert time.monotonic() < deadline, f"{name} stayed {seen}, not {value}"
        time.sleep(0.1)
