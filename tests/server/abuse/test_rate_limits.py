"""The token buckets and the client address, by hand-checkable numbers; and
over HTTP, that a spoofed ``X-Forwarded-For`` is believed only from a
trusted proxy."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from werkzeug.test import TestResponse

from fedge.server.config import load_config
from fedge.server.devices.rate_limits import (
    Buckets,
    RateLimit,
    RateLimiter,
    client_address,
    parse_proxies,
    parse_rate_limits,
)
from fedge.server.errors import ConfigurationError
from fedge.server.http.rate_limits import ADDRESS_BLUEPRINTS, BY_ADDRESS, BY_DEVICE
from tests.helpers.live_server import running
from tests.server.abuse.floods import enrol, flood
from tests.server.conftest import AppFactory
from tests.server.helpers import auth


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = Buckets(RateLimit(rate_per_s=2.0, burst=3), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    assert buckets.take("a") == pytest.approx(0.5)  # one token back in 1/2 s
    assert buckets.take("b") is None  # another client has its own bucket
    clock.now = 0.5
    assert buckets.take("a") is None
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now = 100.0  # refilled up to the burst, not past it
    assert [buckets.take("a") for _ in range(4)][-1] == pytest.approx(0.5)


def test_buckets_are_bounded_least_recently_used_first() -> None:
    clock = Clock()
    buckets = Buckets(RateLimit(rate_per_s=1.0, burst=1), max_clients=100, clock=clock)
    for n in range(10_000):
        buckets.take(f"10.0.{n // 256}.{n % 256}")
    assert len(buckets) == 100
    buckets.take("victim")
    assert buckets.take("victim") is not None  # still held: used last


def test_a_locked_out_key_is_told_without_taking() -> None:
    limiter = RateLimiter({"auth": RateLimit(1.0, 2)})
    assert limiter.locked_out("auth", "k") is None
    limiter.take("auth", "k")
    limiter.take("auth", "k")
    refusal = limiter.locked_out("auth", "k")
    assert refusal is not None and refusal.retry_after == 1 and refusal.family == "auth"
    assert limiter.take("events", "k") is None  # no limit configured for it


def test_limits_parse_and_refuse_nonsense() -> None:
    limits = parse_rate_limits({"enrol": "2/min:10", "predict": "off"})
    assert limits["enrol"] == RateLimit(rate_per_s=2 / 60, burst=10)
    assert limits["predict"] is None
    assert limits["auth"] is not None  # the default kept
    for bad in ({"enrol": "fast"}, {"enrol": "0/s:10"}, {"enrol": "1/s:0"}, {"nope": "1/s:1"}):
        with pytest.raises(ConfigurationError):
            parse_rate_limits(bad)
    config = load_config(environ={"FEDGE_RATE_LIMITS": "enrol=1/s:5,tasks=off"})
    assert config.rate_limits == {"enrol": "1/s:5", "tasks": "off"}
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        load_config(environ={}, overrides={"trusted_proxies": ["not-an-address"]})


def test_the_client_address_behind_trusted_proxies() -> None:
    proxies = parse_proxies(["10.0.0.0/8", "::1"])
    assert client_address("203.0.113.9", "1.2.3.4", proxies) == "203.0.113.9"  # not a proxy
    assert client_address("10.0.0.2", "198.51.100.7", proxies) == "198.51.100.7"
    # The client may write anything left of what the proxies appended.
    assert client_address("10.0.0.2", "1.1.1.1, 198.51.100.7, 10.0.0.3", proxies) == "198.51.100.7"
    assert client_address("10.0.0.2", "garbage", proxies) == "10.0.0.2"
    assert client_address("10.0.0.2", None, proxies) == "10.0.0.2"
    assert client_address("::1", "2001:db8::1", proxies) == "2001:db8::1"
    assert client_address("10.0.0.2", "1.2.3.4", ()) == "10.0.0.2"  # none trusted
    assert isinstance(proxies[0], ipaddress.IPv4Network)


def test_a_forged_forwarded_for_is_not_believed(tmp_path: Path) -> None:
    """Without --trusted-proxy, rotating X-Forwarded-For does not get a
    flooding client fresh buckets; with it, each forwarded client has its own."""
    limits = ["--rate-limit", "enrol=1/min:20"]
    addresses = iter(f"198.51.100.{n % 250}" for n in range(10_000))

    def forged(session):  # type: ignore[no-untyped-def]
        headers = {"X-Forwarded-For": next(addresses)}
        return session.post(f"{url}/v1/devices", json={}, headers=headers, timeout=30)

    with running(tmp_path / "a", limits, tmp_path / "a.log") as server:
        url = server.url
        result = flood(forged, 60)
        assert result.statuses[201] == 20 and result.statuses[429] == 40
    proxied = [*limits, "--trusted-proxy", "127.0.0.1"]
    with running(tmp_path / "b", proxied, tmp_path / "b.log") as server:
        url = server.url
        result = flood(forged, 60)
        assert result.statuses[201] == 60
        # One forwarded client past its burst is refused.
        same = [
            enrol(url, None).status_code  # no header: the proxy itself is the client
            for _ in range(25)
        ]
        assert same.count(429) == 5


def closed(response: TestResponse) -> int:
    """The status of a page's response, its file closed."""
    response.close()
    return response.status_code


def test_each_family_is_limited_per_client(make_app: AppFactory) -> None:
    """Pages and event polls by address, tasks by device: past the burst 429
    with Retry-After; another device keeps its own; a CORS preflight takes
    nothing."""
    limits = {"pages": "1/min:3", "events": "1/min:2", "tasks": "1/min:2", "enrol": "1/min:4"}
    client = make_app(rate_limits=limits, cors_origins=["https://app.example.com"]).test_client()
    assert [closed(client.get("/")) for _ in range(4)] == [200, 200, 200, 429]
    polls = [client.get("/v1/events/poll?timeout=0").status_code for _ in range(3)]
    assert polls == [200, 200, 429]
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    for _ in range(5):
        client.options("/v1/devices", headers=preflight)
    first, second = (client.post("/v1/devices", json={}).get_json()["token"] for _ in range(2))
    tasks = [client.post("/v1/tasks", json={}, headers=auth(first)) for _ in range(3)]
    assert [t.status_code for t in tasks] == [200, 200, 429]
    assert tasks[-1].headers["Retry-After"] == "60"  # a whole token short at 1/min
    assert tasks[-1].get_json()["code"] == "rate_limited"
    assert client.post("/v1/tasks", json={}, headers=auth(second)).status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    for family in ("pages", "events", "tasks"):
        assert f'fedge_rate_limited_total{{family="{family}"}} 1' in metrics


def test_every_limited_endpoint_exists(make_app: AppFactory) -> None:
    """The families name views by endpoint: a renamed view would go unlimited."""
    app = make_app()
    for endpoint in (*BY_ADDRESS, *BY_DEVICE):
        assert endpoint in app.view_functions, endpoint
    for blueprint in ADDRESS_BLUEPRINTS:
        assert blueprint in app.blueprints, blueprint
