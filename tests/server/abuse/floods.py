"""What the abuse tests share: a client that fires many requests at once
(the attacker), and reading what it got back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from fedge.server.config import ServerConfig
from fedge.server.devices.rate_limits import RateLimit, parse_rate_limits

ADMIN_TOKEN = "admin-secret"  # what tests.helpers.live_server gives the server


@dataclass
class Flood:
    """What one attacking client got back, by status, and the answers it
    got past its limit (429s: their ``Retry-After`` and JSON)."""

    statuses: Counter[int] = field(default_factory=Counter)
    refusals: list[tuple[str | None, dict[str, object]]] = field(default_factory=list)
    seconds: float = 0.0


def flood(
    send: Callable[[requests.Session], requests.Response], count: int, workers: int = 4
) -> Flood:
    """``count`` requests made by ``send`` on ``workers`` threads, as fast as they go."""
    result = Flood()
    lock = threading.Lock()
    sessions = [requests.Session() for _ in range(workers)]

    def one(index: int) -> None:
        response = send(sessions[index % workers])
        with lock:
            result.statuses[response.status_code] += 1
            if response.status_code == 429 and len(result.refusals) < 20:
                result.refusals.append((response.headers.get("Retry-After"), response.json()))

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(count)))
    finally:
        for session in sessions:
            session.close()
    result.seconds = time.perf_counter() - started
    return result


def enrol(url: str, session: requests.Session | None = None, **body: object) -> requests.Response:
    return (session or requests).post(
        f"{url}/v1/devices", json={"platform": "test", **body}, timeout=30
    )


def assert_rate_limited(result: Flood) -> None:
    """Some requests were refused with 429, each a JSON ``rate_limited`` with
    a whole number of seconds to wait."""
    assert result.statuses[429] > 0, dict(result.statuses)
    for retry_after, body in result.refusals:
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
        assert body["code"] == "rate_limited", body
        assert isinstance(body["message"], str) and body["message"]


def default_limit(family: str) -> RateLimit:
    """The limit a plain ``fedge serve`` puts on ``family``."""
    limit = parse_rate_limits(ServerConfig().rate_limits)[family]
    assert limit is not None
    return limit
