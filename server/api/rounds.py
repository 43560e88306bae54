"""/v1/tasks, /v1/rounds, /v1/checkpoints: the federated round protocol."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, send_file

from fedge.server.api.common import (
    authenticated_device,
    binary_body,
    flag,
    json_body,
    list_limit,
    require_admin,
    round_id_in_range,
)
from fedge.server.errors import BadRequest, NotFound
from fedge.server.http.context import context
from fedge.server.storage import rounds as rs
from fedge.server.storage.devices import Conditions

bp = Blueprint("rounds", __name__, url_prefix="/v1")


@bp.post("/tasks")
def task() -> Any:
    device = authenticated_device()
    body = json_body()
    conditions = Conditions(flag(body, "idle"), flag(body, "charging"), flag(body, "unmetered"))
    decision = context().coordinator.request_task(device, conditions)
    return jsonify(decision.to_json())


@bp.get("/rounds/current")
def current() -> Any:
    return jsonify(_public(context().coordinator.current_round()))


@bp.get("/rounds")
def listing() -> Any:
    with context().store.reading() as tx:
        records = tx.rounds.recent(list_limit())
    return jsonify({"rounds": [_public(r) for r in records]})


@bp.get("/rounds/<int:round_id>")
def show(round_id: int) -> Any:
    round_id_in_range(round_id)
    with context().store.reading() as tx:
        record = tx.rounds.get(round_id)
    if record is None:
        raise NotFound(f"no round {round_id}", code="unknown_round")
    return jsonify(_public(record))


@bp.post("/rounds/<int:round_id>/updates")
def upload(round_id: int) -> Any:
    device = authenticated_device()
    round_id_in_range(round_id)
    if request.mimetype != "application/octet-stream":
        raise BadRequest(
            "send the update as application/octet-stream (safetensors)", code="bad_content_type"
        )
    # An update of this model is at most this large (see request_limits).
    body = binary_body(context().limits.max_update_bytes)
    receipt, created = context().coordinator.accept_update(device, round_id, body)
    response = jsonify(receipt)
    response.status_code = 201 if created else 200
    return response


@bp.get("/checkpoints/<checkpoint_id>")
def checkpoint(checkpoint_id: str) -> Any:
    authenticated_device()
    if len(checkpoint_id) != 64 or any(c not in "0123456789abcdef" for c in checkpoint_id):
        raise NotFound(f"no checkpoint {checkpoint_id}", code="unknown_checkpoint")
    path = context().coordinator.checkpoint_path(checkpoint_id)
    # Streamed from the file (with Range and If-None-Match), not read into
    # memory; private: the route needs a device token.
    response = send_file(
        path,
        mimetype="application/octet-stream",
        etag=checkpoint_id,
        conditional=True,
        max_age=31536000,
    )
    response.cache_control.public = False
    response.cache_control.private = True
    response.cache_control.immutable = True
    return response


@bp.post("/admin/rounds/current/end")
def end_current() -> Any:
    require_admin()
    return jsonify(_public(context().coordinator.end_round_now()))


_ACTIVE = ("open", "closing")


def _public(record: rs.RoundRecord) -> dict[str, Any]:
    ctx = context()
    with ctx.store.reading() as tx:
        updates = tx.updates.count(record.id)
        selected = tx.selections.count(record.id)
    if record.metrics and record.metrics.get("secure_aggregation"):
        # A secure round stores no update: its count is the unmasked sum's.
        updates = int(record.metrics.get("updates", 0))
    public = {**record.to_json(), "updates": updates, "selected": selected}
    failure = ctx.coordinator.close_failure
    # Only while it is in progress: a round read as ended between its closing
    # commit and the driver forgetting the failure has closed.
    if failure is not None and failure.round_id == record.id and record.state in _ACTIVE:
        public["close_error"] = failure.to_json()
    return public
