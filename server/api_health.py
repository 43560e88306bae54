"""/healthz and /metrics (Prometheus text format)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from fedge.server.app import context

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    ctx = context()
    ctx.db.connection().execute("SELECT 1").fetchone()
    return jsonify({"status": "ok", "checkpoint": ctx.coordinator.current_checkpoint})


@bp.get("/metrics")
def metrics() -> Any:
    return Response(context().coordinator.metrics.render(), mimetype="text/plain; version=0.0.4")
