"""/v1/devices: enrolment, heartbeat, a device's own state."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify

from fedge.server.app import context
from fedge.server.auth import (
    check_enrolment_key,
    hash_token,
    new_device_credentials,
    require_same_device,
)
from fedge.server.coordinator import Conditions
from fedge.server.errors import BadRequest
from fedge.server.views_common import authenticated_device, flag, json_body

bp = Blueprint("devices", __name__, url_prefix="/v1/devices")


@bp.post("")
def enrol() -> Any:
    body = json_body()
    ctx = context()
    check_enrolment_key(body.get("enrolment_key"), ctx.config.enrolment_key)
    platform = body.get("platform", "")
    if not isinstance(platform, str) or len(platform) > 64:
        raise BadRequest("platform must be a string of at most 64 characters", code="bad_json")
    device_id, token = new_device_credentials()
    now = time.time()
    with ctx.db.transaction() as conn:
        conn.execute(
            "INSERT INTO devices (id, token_hash, platform, created_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?)",
            (device_id, hash_token(token), platform, now, now),
        )
        (count,) = conn.execute("SELECT COUNT(*) FROM devices").fetchone()
    ctx.coordinator.metrics.set("fedge_devices", count)
    response = jsonify({"device_id": device_id, "token": token})
    response.status_code = 201
    return response


@bp.get("/<device_id>")
def show(device_id: str) -> Any:
    device = authenticated_device()
    require_same_device(device, device_id)
    return jsonify(
        {
            "device_id": device.id,
            "platform": device.platform,
            "participations": device.participations,
            "conditions": {
                "idle": device.idle,
                "charging": device.charging,
                "unmetered": device.unmetered,
            },
        }
    )


@bp.post("/<device_id>/heartbeat")
def heartbeat(device_id: str) -> Any:
    device = authenticated_device()
    require_same_device(device, device_id)
    body = json_body()
    conditions = Conditions(flag(body, "idle"), flag(body, "charging"), flag(body, "unmetered"))
    context().coordinator.heartbeat(device, conditions)
    return jsonify({"device_id": device.id, "server_time": time.time()})
