"""POST /v1/admin/releases: cut a release from a round's checkpoint (admin).

The body (JSON, every field optional): ``checkpoint`` (a checkpoint id;
default the current global one), ``notes``, ``rollout`` (the percent of
devices the release reaches as the candidate, default 10), ``by`` (default
``admin``) and ``why``. The answer is 202 with the release in state
``building``: the conversion runs in a worker process
(:mod:`fedge.server.releases.build.builder`), and ``GET /v1/releases/<version>``
shows its progress, then ``canary`` (or ``failed`` with the error).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from fedge.bundle.hashing import is_sha256
from fedge.server.api.common import json_body, require_admin, text_field
from fedge.server.errors import BadRequest
from fedge.server.http.context import context
from fedge.server.releases.build.builder import DEFAULT_ROLLOUT, CutRequest

bp = Blueprint("release_cuts", __name__, url_prefix="/v1/admin/releases")

_NOTES_CHARS = 2000
_WHY_CHARS = 1000
_BY_CHARS = 100


@bp.post("")
def cut() -> Any:
    require_admin()
    body = json_body()
    request = CutRequest(
        checkpoint=_checkpoint(body),
        notes=text_field(body, "notes", _NOTES_CHARS) or "",
        percent=_rollout(body),
        by=text_field(body, "by", _BY_CHARS) or "admin",
        why=text_field(body, "why", _WHY_CHARS),
    )
    record = context().builds.cut(request)
    response = jsonify(record.to_json())
    response.status_code = 202
    response.headers["Location"] = f"/v1/releases/{record.version}"
    return response


def _checkpoint(body: dict[str, Any]) -> str | None:
    value = body.get("checkpoint")
    if value is not None and (not isinstance(value, str) or not is_sha256(value)):
        raise BadRequest("checkpoint must be a checkpoint id (64 hex digits)", code="bad_json")
    return value.lower() if value is not None else None


def _rollout(body: dict[str, Any]) -> float:
    value = body.get("rollout", DEFAULT_ROLLOUT)
    # NaN and infinities fail the range (and strict JSON has neither).
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise BadRequest("rollout is a percent of devices, 0 to 100", code="bad_json")
    return float(value)
