"""/v1/rounds/{id}/secagg/...: the stages of a secure round (docs/http-api.md).

Each stage has a POST (what the device sends) and the next a GET (what the
server routes back). A GET answers 202 with the stage the round is still in
until its message is ready; the device asks again after ``retry_after_s``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from fedge.server.api.common import (
    authenticated_device,
    binary_body,
    json_body,
    round_id_in_range,
)
from fedge.server.errors import BadRequest, NotFound
from fedge.server.http.context import context
from fedge.server.rounds.secure import SecureRounds

bp = Blueprint("secure_rounds", __name__, url_prefix="/v1/rounds/<int:round_id>/secagg")

# A share bundle holds one ~300-byte share per neighbour.
MAX_SECAGG_JSON_BYTES = 1024 * 1024
RETRY_AFTER_S = 0.2


def _secure(round_id: int) -> SecureRounds:
    round_id_in_range(round_id)
    secure = context().coordinator.secure
    if secure is None:
        raise NotFound("this server does not run secure rounds", code="not_secure")
    return secure


def _message(answer: bytes | str) -> Any:
    if isinstance(answer, str):  # not ready: the stage the round is in
        response = jsonify({"stage": answer, "retry_after_s": RETRY_AFTER_S})
        response.status_code = 202
        return response
    return Response(answer, mimetype="application/json")


@bp.get("")
def status(round_id: int) -> Any:
    return jsonify(_secure(round_id).status(round_id))


@bp.post("/keys")
def advertise(round_id: int) -> Any:
    secure, device = _secure(round_id), authenticated_device()
    return jsonify(secure.advertise(device, round_id, json_body(MAX_SECAGG_JSON_BYTES)))


@bp.get("/directory")
def directory(round_id: int) -> Any:
    secure, device = _secure(round_id), authenticated_device()
    return _message(secure.directory(device, round_id))


@bp.post("/shares")
def share(round_id: int) -> Any:
    secure, device = _secure(round_id), authenticated_device()
    return jsonify(secure.share(device, round_id, json_body(MAX_SECAGG_JSON_BYTES)))


@bp.get("/inbox")
def inbox(round_id: int) -> Any:
    secure, device = _secure(round_id), authenticated_device()
    return _message(secure.inbox(device, round_id))


@bp.post("/masked")
def upload(round_id: int) -> Any:
    secure, device = _secure(round_id), authenticated_device()
    if request.mimetype != "application/octet-stream":
        raise BadRequest(
            "send the masked input as application/octet-stream (uint32 little-endian)",
            code="bad_content_type",
        )
    return jsonify(secure.upload(device, round_id, binary_body(4 * secure.spec.size)))


@bp.get("/unmask")
def unmask_request(round_id: int) -> Any:
    secure, device = _secure(round_id), authenticated_device()
    return _message(secure.unmask_request(device, round_id))


@bp.post("/unmask")
def unmask(round_id: int) -> Any:
    secure, device = _secure(round_id), authenticated_device()
    return jsonify(secure.unmask(device, round_id, json_body(MAX_SECAGG_JSON_BYTES)))
