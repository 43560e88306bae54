"""/v1/admin: the staged rollout of releases, promotion, rollback, the change log.

Each change is one call, one transaction, recorded with who (``by``,
default ``admin``), when and why (``why``; a rollback must say why). The
actions themselves are :mod:`fedge.server.releases.actions`; the views parse
the body and answer with the rollout as it now is and the recorded change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify

from fedge.server.api.common import MAX_ROUND_ID, json_body, list_limit, require_admin, text_field
from fedge.server.errors import BadRequest, NotFound
from fedge.server.http.context import context
from fedge.server.releases import actions
from fedge.server.storage.store import Tx
from fedge.wire.releases import ReleaseChange

bp = Blueprint("release_admin", __name__, url_prefix="/v1/admin")

_WHY_CHARS = 1000
_BY_CHARS = 100


@bp.post("/rollout")
def rollout() -> Any:
    require_admin()
    body = json_body()
    percent = body.get("percent")
    # NaN and infinities fail the range (and strict JSON has neither).
    if not isinstance(percent, int | float) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise BadRequest("percent is a number from 0 to 100", code="bad_json")
    by, why = _who(body), text_field(body, "why", _WHY_CHARS)
    return _apply(lambda tx: actions.set_rollout(tx, float(percent), by, why))


@bp.post("/releases/<int:version>/promote")
def promote(version: int) -> Any:
    require_admin()
    body = json_body()
    by, why = _who(body), text_field(body, "why", _WHY_CHARS)
    if version > MAX_ROUND_ID:
        raise NotFound(f"no release {version}", code="unknown_release")
    return _apply(lambda tx: actions.promote(tx, version, by, why))


@bp.post("/rollback")
def rollback() -> Any:
    require_admin()
    body = json_body()
    why = text_field(body, "why", _WHY_CHARS)
    if why is None or not why.strip():
        raise BadRequest("a rollback says why (why: text)", code="bad_json")
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise BadRequest("version must be an integer", code="bad_json")
    if version is not None and not 1 <= version <= MAX_ROUND_ID:
        raise NotFound(f"no release {version}", code="unknown_release")
    by = _who(body)
    return _apply(lambda tx: actions.rollback(tx, version, by, why))


@bp.get("/release-changes")
def changes() -> Any:
    require_admin()
    limit = list_limit()
    with context().store.reading() as tx:
        recorded = tx.releases.changes(limit)
    return jsonify({"changes": [change.to_json() for change in recorded]})


def _who(body: dict[str, Any]) -> str:
    return text_field(body, "by", _BY_CHARS) or "admin"


def _apply(change: Callable[[Tx], ReleaseChange]) -> Any:
    store = context().store
    with store.transaction() as tx:
        recorded = change(tx)
    with store.reading() as tx:
        rollout = tx.releases.rollout()
    return jsonify({"rollout": rollout.to_json(), "change": recorded.to_json()})
