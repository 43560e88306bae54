"""/v1/stats: what the dashboard shows beside rounds and releases.

Public and read-only, like ``GET /v1/rounds``: aggregate numbers only,
never a device's id. ``devices``: enrolled, seen in the last hour and day,
by platform (:mod:`fedge.server.devices.counts`); ``rejections``: refused
uploads by reason for recent rounds, newest first
(:mod:`fedge.server.rounds.rejection_tally`, in memory since the server started);
``aggregation``: the mode, and in async mode the version, versions per
minute, buffer fill, leases in use, the recent staleness histogram and the
uploads refused as too stale, counted since this process started
(:mod:`fedge.server.rounds.buffered.progress`).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify

from fedge.server.devices.counts import device_counts
from fedge.server.http.context import context

bp = Blueprint("stats", __name__, url_prefix="/v1")


@bp.get("/stats")
def stats() -> Any:
    ctx = context()
    with ctx.store.reading() as tx:
        counts = device_counts(tx.devices, time.time())
    rejections = ctx.rejections.recent()
    refused_stale = sum(r.reasons.get("too_stale", 0) for r in rejections)
    return jsonify(
        {
            "devices": counts.to_json(),
            "rejections": [r.to_json() for r in rejections],
            "aggregation": ctx.coordinator.aggregation_stats(
                refused_stale, ctx.rejections.started_at
            ),
        }
    )
