"""/v1/events: the event log as server-sent events, and a long-poll fallback.

Public, like ``GET /v1/rounds`` and ``/v1/models`` whose data the events
repeat: they carry round ids, checkpoint ids, aggregate metrics and release
versions, never a device's id or data. A token would also shut out the
browser's ``EventSource``, which cannot send an ``Authorization`` header.

What a stream costs is a thread while it is open. Streams and waiting
long-polls each have their own budget of threads (``event_streams``,
``event_polls``) on top of the request threads, and a request takes a slot
of its budget before it starts to wait, so at most that many threads ever
wait and the request threads stay free. Who may take a slot
(:mod:`fedge.server.devices.slots`): a client holds at most
``event_streams_per_client`` of each budget, where a client is the device
of a bearer token, the admin (the dashboard) or, without credentials, the
address; part of each budget is reserved for devices and the admin. A
wrong token is a 401, not an anonymous stream. Past a client's share:
429 ``too_many_streams``; past what the server holds: 503, the same code.

Where to start: the ``Last-Event-ID`` header (what ``EventSource`` sends
when it reconnects to the same URL, so it wins over the query), else
``?after=N``, else the newest event now (only what happens from now on).
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState

from fedge.server.api.common import MAX_ROUND_ID
from fedge.server.devices.auth import bearer_token, device_for_token
from fedge.server.devices.slots import Client, ClientSlots, Refusal
from fedge.server.errors import BadRequest, RateLimited, ServerError, Unavailable
from fedge.server.events.log import EVENT_TYPES
from fedge.server.events.stream import (
    Subscription,
    pending,
    sse_messages,
    wait_for_events,
)
from fedge.server.http.context import EXTENSION, ServerContext, context

bp = Blueprint("events", __name__, url_prefix="/v1/events")

MAX_POLL_S = 30.0
RETRY_AFTER_S = 5  # what a refused stream is told to wait
STREAMS_GAUGE = "fedge_event_streams"
_ID = re.compile(r"[0-9]{1,19}")


@bp.record_once
def _define_metrics(state: BlueprintSetupState) -> None:
    ctx: ServerContext = state.app.extensions[EXTENSION]
    ctx.coordinator.metrics.define(
        STREAMS_GAUGE, "gauge", "Open event streams and waiting long-polls."
    )


@bp.get("")
def stream() -> Any:
    ctx = context()
    config = ctx.config
    # A stream may always end early (clients reconnect): a longer timeout is capped.
    duration_s = min(
        _timeout(default=config.event_stream_s, maximum=math.inf), config.event_stream_s
    )
    subscription = Subscription(after=_after(), types=_types(), duration_s=duration_s)
    release = _take_slot(ctx.events.streams)
    if isinstance(release, Refusal):
        raise _too_many_streams(release, ctx.events.streams)
    try:
        messages = sse_messages(
            ctx.store,
            ctx.events,
            subscription,
            config.event_keepalive_s,
            request.environ.get("waitress.client_disconnected", lambda: False),
        )
        response = Response(messages, mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # a proxy must not hold it back
        response.call_on_close(release)
    except BaseException:
        release()
        raise
    return response


@bp.get("/poll")
def poll() -> Any:
    ctx = context()
    duration_s = _timeout(default=0.0, maximum=MAX_POLL_S)
    subscription = Subscription(after=_after(), types=_types(), duration_s=duration_s)
    client = _client()
    page = pending(ctx.store, subscription)
    if not page.events and duration_s > 0:  # only a poll that waits needs a slot
        release = _take_slot(ctx.events.polls, client)
        if isinstance(release, Refusal):
            raise _too_many_streams(release, ctx.events.polls)
        try:
            page = wait_for_events(ctx.store, ctx.events, subscription)
        finally:
            release()
    return jsonify({"events": [e.to_json() for e in page.events], "last_id": page.last_id})


def _after() -> int:
    header = request.headers.get("Last-Event-ID", "").strip()
    if header:
        return _event_id(header, "the Last-Event-ID header")
    query = request.args.get("after")
    if query is not None:
        return _event_id(query, "after")
    with context().store.reading() as tx:
        return tx.events.latest_id()


def _event_id(raw: str, what: str) -> int:
    if not _ID.fullmatch(raw) or int(raw) > MAX_ROUND_ID:
        raise BadRequest(f"{what} must be an event id (an integer >= 0)", code="bad_query")
    return int(raw)


def _types() -> frozenset[str]:
    raw = request.args.get("types")
    if raw is None:
        return frozenset(EVENT_TYPES)
    types = raw.split(",")
    if not all(t in EVENT_TYPES for t in types):
        raise BadRequest(
            f"types is a comma-separated list of {', '.join(EVENT_TYPES)}", code="bad_query"
        )
    return frozenset(types)


def _timeout(default: float, maximum: float) -> float:
    """``?timeout=``: seconds, 0..``maximum``."""
    raw = request.args.get("timeout")
    if raw is None:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 <= seconds <= maximum):
        bound = "" if math.isinf(maximum) else f" and <= {maximum:g}"
        raise BadRequest(f"timeout must be a number of seconds >= 0{bound}", code="bad_query")
    return seconds


def _client() -> Client:
    """Who asks: the device of a bearer token, the admin, or else the address.
    A token that is neither is refused (401) rather than taken as anonymous."""
    header = request.headers.get("Authorization")
    if header is None:
        return Client.address(request.remote_addr)
    token = bearer_token(header)
    ctx = context()
    if hmac.compare_digest(token.encode(), ctx.admin_token.encode()):
        return Client.admin()
    with ctx.store.reading() as tx:
        return Client.device(device_for_token(tx.devices, token).id)


def _take_slot(slots: ClientSlots, client: Client | None = None) -> Callable[[], None] | Refusal:
    """A slot of ``slots``: its release (to call once; counted in the
    gauge), or why not."""
    held = slots.acquire(client if client is not None else _client())
    if isinstance(held, Refusal):
        return held
    metrics = context().coordinator.metrics
    metrics.inc(STREAMS_GAUGE, 1.0)

    def release() -> None:
        held.release()
        metrics.inc(STREAMS_GAUGE, -1.0)

    return release


def _too_many_streams(refusal: Refusal, slots: ClientSlots) -> ServerError:
    if refusal is Refusal.CLIENT_FULL:
        return RateLimited(
            f"this client already holds {slots.per_client} event streams (or waiting "
            "long-polls), the most one client may; close one, or poll without waiting",
            RETRY_AFTER_S,
            code="too_many_streams",
        )
    return Unavailable(
        f"this server holds at most {slots.limit} event streams and as many waiting "
        "long-polls at once; retry later, or poll without waiting (timeout=0)",
        code="too_many_streams",
        retry_after=RETRY_AFTER_S,
    )
