"""/healthz and /metrics (Prometheus text format)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from fedge.server.http.context import context
from fedge.server.metrics import CONTENT_TYPE

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """200 ``ok``; 503 ``failing`` while a round cannot close (a full disk,
    say): requests are still answered, but no new model comes out. Says
    which worker this is and which one runs the rounds (the aggregator's
    lease: its holder and age; null while none holds it)."""
    ctx = context()
    ctx.store.check()
    coordinator = ctx.coordinator
    failure = coordinator.close_failure
    body: dict[str, Any] = {
        "status": "ok" if failure is None else "failing",
        "checkpoint": coordinator.current_checkpoint,
        **coordinator.aggregator(),
    }
    if failure is not None:
        body["close_error"] = failure.to_json()
    response = jsonify(body)
    response.status_code = 200 if failure is None else 503
    return response


@bp.get("/metrics")
def metrics() -> Any:
    return Response(context().coordinator.metrics.exposition(), content_type=CONTENT_TYPE)
