"""/v1/releases: push a release (admin), list them, and the one for a device.

``POST /v1/releases`` takes the bundle as an uncompressed tar
(``application/x-tar``, or the same bytes as ``application/octet-stream``;
why a tar: :mod:`fedge.bundle.tar`) and its options as query parameters,
so the body is the bundle and nothing else and is read as a stream:
``notes``, ``rollout`` (the candidate's percent, default 10), ``force`` (a
reason to release a bundle whose parity failed) and ``by`` (who pushes;
default ``admin``). Its body may be up to ``max_release_bytes``, on this
route only (:mod:`fedge.server.http.route_limits`).

``GET /v1/releases/current`` answers a device with the release meant for it
(the candidate if the device is in its slice, a keyed hash: see
:mod:`fedge.server.releases.rollout`); its ETag is the quoted bundle id, so
a device polls with If-None-Match and gets a 304 until its release changes.
With ``?runtime=NAME`` a device is kept off a release whose parity failed on
its runtime (:mod:`fedge.server.releases.canary.delivery`).
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, jsonify, request

from fedge.server.api.common import (
    MAX_ROUND_ID,
    authenticated_device,
    list_limit,
    require_admin,
)
from fedge.server.errors import BadRequest, NotFound, ServerError
from fedge.server.http.context import context
from fedge.server.releases.actions import Push
from fedge.server.releases.canary import delivery
from fedge.server.releases.canary import reports as canary
from fedge.wire.canary import CanaryWireError, runtime_name

bp = Blueprint("releases", __name__, url_prefix="/v1/releases")

UPLOAD_ROUTE = ("POST", "/v1/releases")
TAR = "application/x-tar"
OCTET = "application/octet-stream"  # the same bytes, for clients that only send this
DEFAULT_ROLLOUT = 10.0
_TEXT_LIMITS = {"notes": 2000, "force": 1000, "by": 100, "rollout": 10}


class UnsupportedMediaType(ServerError):
    status, code = 415, "unsupported_media_type"


@bp.post("")
def push() -> Any:
    require_admin()
    options = _push_options()
    if request.mimetype not in (TAR, OCTET):
        raise UnsupportedMediaType(f"send the bundle as {TAR} (a tar of the bundle directory)")
    ctx = context()
    request.max_content_length = ctx.config.max_release_bytes
    record = ctx.releases.push(request.stream, options, ctx.config.max_release_bytes)
    response = jsonify(record.to_json())
    response.status_code = 201
    response.headers["Location"] = f"/v1/releases/{record.version}"
    return response


@bp.get("")
def listing() -> Any:
    limit = list_limit()
    with context().store.reading() as tx:
        releases, rollout = tx.releases.recent(limit), tx.releases.rollout()
    return jsonify(
        {
            "releases": [r.to_json() for r in releases],
            "rollout": rollout.to_json(),
        }
    )


@bp.get("/current")
def current() -> Any:
    device = authenticated_device()
    runtime = _runtime()
    ctx = context()
    with ctx.store.reading() as tx:
        release = delivery.meant_for(tx, device.id, runtime, canary.policy_of(ctx.config))
    if release is None:
        raise NotFound("the server has no release yet", code="no_release")
    response = jsonify(release.to_json())
    response.set_etag(release.etag_value)
    response.cache_control.private = True
    response.cache_control.no_cache = True
    return response.make_conditional(request)


@bp.get("/<int:version>")
def show(version: int) -> Any:
    """The release, with its ``canary`` summary (None until a device reports)
    and, for a release being built, the build's ``progress``."""
    ctx = context()
    with ctx.store.reading() as tx:
        record = tx.releases.get(version) if version <= MAX_ROUND_ID else None
        if record is None:
            raise NotFound(f"no release {version}", code="unknown_release")
        summary = canary.shown_summary(tx, record, canary.policy_of(ctx.config))
        runtimes = delivery.parity_of(tx, record, canary.policy_of(ctx.config))
    shown = {**record.to_json(), "canary": summary.to_json() if summary else None}
    shown["parity"] = runtimes
    if record.state == "building":
        progress = ctx.builds.progress(version)
        shown["progress"] = progress.to_json() if progress else None
    return jsonify(shown)


def _runtime() -> str | None:
    values = request.args.getlist("runtime")
    if len(values) > 1:
        raise BadRequest("runtime is one value", code="bad_query")
    try:
        return runtime_name(values[0]) if values else None
    except CanaryWireError as exc:
        raise BadRequest(str(exc), code="bad_query") from exc


def _push_options() -> Push:
    unknown = set(request.args) - set(_TEXT_LIMITS)
    if unknown:
        raise BadRequest(
            f"unknown query parameters: {', '.join(sorted(unknown))[:200]}", code="bad_query"
        )
    text = {name: _query_text(name, limit) for name, limit in _TEXT_LIMITS.items()}
    force = text["force"]
    if force is not None and not force.strip():
        raise BadRequest("force needs a reason", code="bad_query")
    return Push(
        notes=text["notes"] or "",
        percent=_percent(text["rollout"]),
        force=force,
        by=text["by"] or "admin",
    )


def _query_text(name: str, limit: int) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1 or any(len(v) > limit for v in values):
        raise BadRequest(f"{name} is one value of at most {limit} characters", code="bad_query")
    return values[0] if values else None


def _percent(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_ROLLOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 100:  # NaN fails too
        raise BadRequest("rollout is a percent of devices, 0 to 100", code="bad_query")
    return value
