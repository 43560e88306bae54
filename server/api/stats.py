"""/v1/stats: what the dashboard shows beside rounds and releases.

Public and read-only, like ``GET /v1/rounds``: aggregate numbers only,
never a device's id. ``devices``: enrolled, seen in the last hour and day,
by platform (:mod:`fedge.server.devices.counts`); ``rejections``: refused
uploads by reason for recent rounds, newest first
(:mod:`fedge.server.rounds.rejection_tally`, in memory since the server started).
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
    return jsonify(
        {
            "devices": counts.to_json(),
            "rejections": [r.to_json() for r in ctx.rejections.recent()],
        }
    )
