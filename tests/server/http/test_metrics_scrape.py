"""``/metrics`` of a real ``fedge serve`` process, parsed as Prometheus
parses it: the histograms count what happened, and no label takes a value
a client chooses (a raw path, a device id, a method)."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.live_server import LiveServer, running
from tests.server.helpers import OCTET, auth, constant_update, settled

ROUND_FLAGS = ["--rounds-target", "3", "--rounds-min", "3", "--deadline", "300"]
RANDOM_PATHS = 1000


class CountingClient:
    """Every request the test makes, counted by route template and status
    class, to compare with what the server recorded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.made: Counter[str] = Counter()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=30, **kwargs)
        self.made[f"{response.status_code // 100}xx"] += 1
        return response

    def scrape(self) -> dict[str, Metric]:
        text = requests.get(f"{self.url}/metrics", timeout=30).text
        return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def scraped(
    tiny_keras: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Metric], CountingClient, list[str], list[str]]]:
    """A round of three devices, then 1,000 unknown paths and odd methods,
    then one scrape: (families, client, device ids, random paths)."""
    tmp = tmp_path_factory.mktemp("metrics")
    with running(tmp / "data", ["--model", str(tiny_keras), *ROUND_FLAGS], tmp / "log") as live:
        yield _exercise(live)


def _exercise(live: LiveServer) -> tuple[dict[str, Metric], CountingClient, list[str], list[str]]:
    client = CountingClient(live.url)
    devices = [client.call("POST", "/v1/devices", json={"platform": "test"}).json() for _ in "abc"]
    tokens = [d["token"] for d in devices]
    base = ""
    for token in tokens:
        task = client.call("POST", "/v1/tasks", json={}, headers=auth(token)).json()["task"]
        base = task["base_checkpoint"]
    for token, value in zip(tokens, (1.0, 2.0, 6.0), strict=True):
        receipt = client.call(
            "POST",
            "/v1/rounds/1/updates",
            data=constant_update(1, base, value),
            headers={**auth(token), "Content-Type": OCTET},
        )
        assert receipt.status_code == 201, receipt.text
    assert settled(lambda path: client.call("GET", path).json(), 1)["state"] == "closed"
    for device, token in zip(devices, tokens, strict=True):  # a device id in the path
        assert client.call("GET", f"/v1/devices/{device['device_id']}", headers=auth(token)).ok
    paths = [f"/{secrets.token_hex(6)}/{secrets.token_hex(4)}" for _ in range(RANDOM_PATHS)]
    for path in paths:
        assert client.call("GET", path).status_code == 404
    for method in ("BREW", "PATCH", "X-" + secrets.token_hex(4)):
        assert client.call(method, "/v1/rounds/1").status_code in (400, 405, 501)
    return client.scrape(), client, [d["device_id"] for d in devices], paths


def test_the_request_histogram_counts_every_request_made(scraped: Any) -> None:
    families, client, _, _ = scraped
    histogram = families["fedge_http_request_seconds"]
    assert histogram.type == "histogram"
    counted: Counter[str] = Counter()
    for sample in histogram.samples:
        if sample.name.endswith("_count"):
            counted[sample.labels["status_class"]] += int(sample.value)
    assert counted == client.made
    unmatched = [
        s
        for s in histogram.samples
        if s.name.endswith("_count") and s.labels["route"] == "unmatched"
    ]
    assert sum(s.value for s in unmatched) >= RANDOM_PATHS


def test_every_histogram_has_monotone_buckets_ending_at_its_count(scraped: Any) -> None:
    families, _, _, _ = scraped
    histograms = [f for f in families.values() if f.type == "histogram"]
    assert {f.name for f in histograms} >= {
        "fedge_http_request_seconds",
        "fedge_update_receipt_seconds",
        "fedge_aggregation_fold_seconds",
        "fedge_aggregation_seconds",
        "fedge_round_duration_seconds",
    }
    for family in histograms:
        series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        counts: dict[tuple[tuple[str, str], ...], float] = {}
        for sample in family.samples:
            key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if sample.name.endswith("_bucket"):
                series.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                counts[key] = sample.value
        for key, buckets in series.items():
            values = [value for _, value in sorted(buckets)]
            assert values == sorted(values), (family.name, key)
            assert sorted(buckets)[-1] == (float("inf"), counts[key]), (family.name, key)


def test_the_round_pipeline_histograms_count_its_updates_and_close(scraped: Any) -> None:
    families, _, _, _ = scraped

    def count(name: str, **labels: str) -> float:
        return sum(
            float(s.value)
            for s in families[name].samples
            if s.name == f"{name}_count" and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert count("fedge_update_receipt_seconds") == 3
    assert count("fedge_aggregation_fold_seconds") == 3
    assert count("fedge_aggregation_seconds") == 1
    assert count("fedge_round_duration_seconds", outcome="closed") == 1
    receipt_sum = [
        s.value for s in families["fedge_update_receipt_seconds"].samples if s.name.endswith("_sum")
    ]
    assert 0 < receipt_sum[0] < 60


def test_no_label_holds_a_path_a_device_id_or_a_method_a_client_chose(scraped: Any) -> None:
    families, _, device_ids, paths = scraped
    values = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    chosen = set(device_ids) | set(paths) | {p.split("/")[1] for p in paths}
    assert not values & chosen
    assert not any(v.startswith("X-") or v == "BREW" for v in values)
    http_series = [
        s for f in families.values() if f.name.startswith("fedge_http") for s in f.samples
    ]
    # 1,000 distinct paths, still a bounded number of series: one per route
    # template and status seen (18 per histogram label set), not one per path.
    assert len(http_series) < 200  # 117 when written
    unmatched = {
        tuple(sorted(s.labels.items()))
        for s in families["fedge_http_requests"].samples
        if s.labels["route"] == "unmatched"
    }
    assert len(unmatched) <= 3  # 404, and 405 or 501 for the odd methods
    routes = {s.labels["route"] for s in http_series if "route" in s.labels}
    assert "/v1/devices/<device_id>" in routes
    assert "unmatched" in routes
