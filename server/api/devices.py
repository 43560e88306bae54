"""/v1/devices: enrolment, heartbeat, a device's own state."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify

from fedge.server.api.common import authenticated_device, flag, json_body, text_field
from fedge.server.devices.auth import check_enrolment_key, require_same_device
from fedge.server.devices.issuer import MAX_TOKEN_CHARS
from fedge.server.errors import BadRequest
from fedge.server.http.context import context
from fedge.server.http.rate_limits import credential_attempt
from fedge.server.storage.devices import Conditions

bp = Blueprint("devices", __name__, url_prefix="/v1/devices")


@bp.post("")
def enrol() -> Any:
    """Enrol a device. With a ``request_id`` (a secret the device draws once
    per enrolment) a retry after a lost response returns the same device,
    with a fresh token, instead of creating a second one. With a device
    issuer, the ``identity_token``'s subject is the device: enrolling again
    with a token for the same subject returns the same device (its old
    token stops working), never a second one."""
    body = json_body()
    ctx = context()
    platform = text_field(body, "platform", 64) or ""
    request_id = text_field(body, "request_id", 128)
    if request_id is not None and len(request_id) < 16:
        raise BadRequest("request_id must have at least 16 characters", code="bad_json")
    identity = text_field(body, "identity_token", MAX_TOKEN_CHARS)
    subject = None
    with credential_attempt("enrolment"):
        check_enrolment_key(text_field(body, "enrolment_key", 256), ctx.config.enrolment_key)
        if ctx.issuer is not None:
            subject = ctx.issuer.subject(identity)
    enrolment = ctx.coordinator.enrol(platform, request_id, subject)
    response = jsonify({"device_id": enrolment.device_id, "token": enrolment.token})
    response.status_code = 201 if enrolment.created else 200
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
