"""Per-client request limits: token buckets, keyed by device or by address.

Each *family* of requests has a bucket per client: ``burst`` requests at
once, refilled at ``rate_per_s``. A request takes one token; with none
left it is refused (429 ``rate_limited``) and told how long until one is
back. The families, and who a bucket belongs to:

=========  ==========================================  =======================
family     requests                                     keyed by
=========  ==========================================  =======================
enrol      ``POST /v1/devices``                         client address
auth       failed credentials: wrong enrolment keys,    client address and the
           identity tokens and admin tokens             kind of credential
events     event stream connects and long-polls         client address
pages      the web pages and their static files         client address
tasks      ``POST /v1/tasks``                           device
uploads    ``POST /v1/rounds/{id}/updates``             device
predict    ``POST /v1/models/{name}/predict``           device
=========  ==========================================  =======================

The defaults let one address enrol a fleet of 2,000 devices at once (the
project's simulated fleets run up to 1,000 from 127.0.0.1 against a plain
``fedge serve``; ``fedge simulate``'s own server raises the burst to its
fleet's size), and no honest device comes near the per-device ones.
``auth`` is the strict one: after 20 failures an address may try again
once every 5 s, and while its bucket is empty its credentials of that
kind are not even checked (a right guess would otherwise stand out).

Memory is bounded: each family keeps at most ``max_clients`` buckets and
drops the least recently used (a bucket idle long enough to be full again
is the same as no bucket, so the dropped ones are almost always those).
Plain Python, no Flask: :mod:`fedge.server.http.rate_limits` applies it.
"""

from __future__ import annotations

import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fedge.server.errors import ConfigurationError

FAMILIES = ("enrol", "auth", "events", "pages", "tasks", "uploads", "predict")
DEFAULTS: Mapping[str, str] = {
    "enrol": "5/s:2000",
    "auth": "12/min:20",
    "events": "5/s:120",
    "pages": "50/s:500",
    "tasks": "5/s:60",
    "uploads": "2/s:30",
    "predict": "100/s:300",
}
OFF = "off"
MAX_CLIENTS = 65_536  # buckets kept per family
_SPEC = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|min|h)\s*:\s*([0-9]+)\s*")
_PER_S = {"s": 1.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class RateLimit:
    rate_per_s: float
    burst: float

    @classmethod
    def parse(cls, family: str, spec: str) -> RateLimit | None:
        """``RATE/s:BURST`` (or ``/min``, ``/h``); ``off``: no limit (None)."""
        if spec.strip().lower() == OFF:
            return None
        match = _SPEC.fullmatch(spec)
        if match is None:
            raise ConfigurationError(
                f"rate_limits.{family}: cannot use {spec!r}; write RATE/s:BURST "
                "(or RATE/min:BURST, RATE/h:BURST), e.g. 5/s:2000, or off"
            )
        rate = float(match.group(1)) / _PER_S[match.group(2)]
        burst = float(match.group(3))
        if not (rate > 0 and burst >= 1 and math.isfinite(rate)):
            raise ConfigurationError(
                f"rate_limits.{family}: the rate must be > 0 and the burst >= 1 ({spec!r})"
            )
        return cls(rate, burst)


def parse_rate_limits(overrides: Mapping[str, str]) -> dict[str, RateLimit | None]:
    """Every family's limit: the defaults, with ``overrides`` on top
    (an unknown family is an error, not ignored)."""
    unknown = set(overrides) - set(FAMILIES)
    if unknown:
        raise ConfigurationError(
            f"rate_limits: unknown families {', '.join(sorted(unknown))}; "
            f"known: {', '.join(FAMILIES)}"
        )
    specs = {**DEFAULTS, **overrides}
    return {family: RateLimit.parse(family, str(specs[family])) for family in FAMILIES}


class Buckets:
    """One family's token buckets, by client key; at most ``max_clients``."""

    def __init__(
        self,
        limit: RateLimit,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._max = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens, when counted), least recently used first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float | None:
        """Take a token for ``key``: None if there was one, else the
        seconds until there is (nothing is taken then)."""
        with self._lock:
            tokens, now = self._refilled(key)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now)
                return None
            self._store(key, tokens, now)
            return (1.0 - tokens) / self.limit.rate_per_s

    def wait(self, key: str) -> float | None:
        """Like :meth:`take` without taking: None while ``key`` has a token."""
        with self._lock:
            if key not in self._buckets:
                return None
            tokens, _ = self._refilled(key)
            return None if tokens >= 1.0 else (1.0 - tokens) / self.limit.rate_per_s

    def _refilled(self, key: str) -> tuple[float, float]:
        now = self._clock()
        tokens, then = self._buckets.get(key, (self.limit.burst, now))
        return min(self.limit.burst, tokens + (now - then) * self.limit.rate_per_s), now

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


@dataclass(frozen=True)
class Refusal:
    """A request over its family's limit."""

    family: str
    retry_after_s: float

    @property
    def retry_after(self) -> int:
        """Whole seconds, at least 1 (what ``Retry-After`` carries)."""
        return max(1, math.ceil(self.retry_after_s))


class RateLimiter:
    """Every family's buckets; a family set ``off`` lets everything through."""

    def __init__(
        self, limits: Mapping[str, RateLimit | None], max_clients: int = MAX_CLIENTS
    ) -> None:
        self._families = {
            family: Buckets(limit, max_clients)
            for family, limit in limits.items()
            if limit is not None
        }

    @classmethod
    def from_settings(cls, overrides: Mapping[str, str]) -> RateLimiter:
        return cls(parse_rate_limits(overrides))

    def take(self, family: str, key: str) -> Refusal | None:
        buckets = self._families.get(family)
        wait = None if buckets is None else buckets.take(key)
        return None if wait is None else Refusal(family, wait)

    def locked_out(self, family: str, key: str) -> Refusal | None:
        """Whether ``key``'s bucket is empty now (nothing is taken): for
        failures, which are taken only when they happen."""
        buckets = self._families.get(family)
        wait = None if buckets is None else buckets.wait(key)
        return None if wait is None else Refusal(family, wait)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(proxies: Sequence[str]) -> tuple[Network, ...]:
    """The trusted proxies' networks (an address is a network of one)."""
    networks = []
    for proxy in proxies:
        try:
            networks.append(ipaddress.ip_network(proxy.strip(), strict=False))
        except ValueError as exc:
            raise ConfigurationError(
                f"trusted_proxies: {proxy!r} is not an address or network ({exc})"
            ) from exc
    return tuple(networks)


def client_address(remote: str, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """Who a request is from: the connection's address, unless that is a
    trusted proxy; then the nearest address in ``X-Forwarded-For`` (read
    from the right: each proxy appends the address it was called from) that
    is not itself a trusted proxy. Entries left of that one are whatever the
    client wrote, never believed."""
    if not proxies or forwarded_for is None or not _trusted(remote, proxies):
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return _address(hop) or remote
        remote = hop
    return remote


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    parsed = _address(address)
    return parsed is not None and any(ipaddress.ip_address(parsed) in net for net in proxies)


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
