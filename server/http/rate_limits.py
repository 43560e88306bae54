"""The per-client limits (:mod:`fedge.server.devices.rate_limits`) applied
to requests: 429 ``rate_limited`` with ``Retry-After``, counted in
``/metrics`` as ``fedge_rate_limited_total{family=...}``.

Three places take a token, each where its client is known:

- :func:`install_rate_limits`: before any view, the routes whose client is
  its address (enrolment, event streams, pages). Nothing is parsed yet.
- :func:`limit_device`: right after a device is authenticated, for the
  routes whose client is the device (tasks, uploads, predict).
- :func:`credential_attempt`: around a credential check (an admin token,
  an enrolment key, an identity token). A locked-out address is refused
  before its credential is looked at; a failure takes a token.

The client address is the connection's, or with ``trusted_proxies`` the
address their ``X-Forwarded-For`` names (see
:func:`~fedge.server.devices.rate_limits.client_address`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g, request

from fedge.server.devices.rate_limits import (
    RateLimiter,
    Refusal,
    client_address,
    parse_proxies,
)
from fedge.server.errors import Forbidden, RateLimited, Unauthorized
from fedge.server.http.context import context, context_of

EXTENSION = "fedge.rate_limits"
METRIC = "fedge_rate_limited_total"
# Endpoints (blueprint.view) whose client is its address, and their family.
BY_ADDRESS = {
    "devices.enrol": "enrol",
    "events.stream": "events",
    "events.poll": "events",
}
ADDRESS_BLUEPRINTS = {"web": "pages"}  # server/http/web_pages.py
# Endpoints whose client is the device that sent them.
BY_DEVICE = {
    "rounds.task": "tasks",
    "rounds.upload": "uploads",
    "predict.predict": "predict",
}


class ClientLimits:
    """What the app keeps: the buckets, and the proxies it believes."""

    def __init__(self, limiter: RateLimiter, proxies: tuple[str, ...]) -> None:
        self.limiter = limiter
        self.proxies = parse_proxies(proxies)


def install_rate_limits(app: Flask) -> None:
    config = context_of(app).config
    app.extensions[EXTENSION] = ClientLimits(
        RateLimiter.from_settings(config.rate_limits), config.trusted_proxies
    )
    context_of(app).coordinator.metrics.define(
        METRIC, "counter", "Requests refused over a per-client limit, by family."
    )

    @app.before_request
    def limit_by_address() -> None:
        if request.method == "OPTIONS":
            return  # a CORS preflight: the request it asks about takes the token
        endpoint = request.endpoint or ""
        family = BY_ADDRESS.get(endpoint) or ADDRESS_BLUEPRINTS.get(request.blueprint or "")
        if family is not None:
            _refuse(_limits().limiter.take(family, requester()))


def requester() -> str:
    """The client's address (memoised for the request)."""
    address: str | None = g.get("client_address")
    if address is None:
        address = client_address(
            request.remote_addr or "", request.headers.get("X-Forwarded-For"), _limits().proxies
        )
        g.client_address = address
    return address


def limit_device(device_id: str) -> None:
    """Take a token of the request's family for ``device_id`` (a no-op on
    routes without a per-device limit)."""
    family = BY_DEVICE.get(request.endpoint or "")
    if family is not None:
        _refuse(_limits().limiter.take(family, device_id))


@contextmanager
def credential_attempt(kind: str) -> Iterator[None]:
    """Check a credential of ``kind`` (``admin``, ``enrolment``) inside: an
    address whose failures used up its ``auth`` bucket is refused first; a
    refused credential (401, 403) takes a token."""
    limiter, key = _limits().limiter, f"{kind}:{requester()}"
    _refuse(limiter.locked_out("auth", key))
    try:
        yield
    except (Unauthorized, Forbidden):
        limiter.take("auth", key)
        raise


def _refuse(refusal: Refusal | None) -> None:
    if refusal is None:
        return
    context().coordinator.metrics.inc(METRIC, family=refusal.family)
    raise RateLimited(
        f"too many {refusal.family} requests from this client; retry in {refusal.retry_after} s",
        retry_after=refusal.retry_after,
    )


def _limits() -> ClientLimits:
    from flask import current_app

    limits: ClientLimits = current_app.extensions[EXTENSION]
    return limits
