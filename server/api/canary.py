"""/v1/releases/{version}/evaluations: devices report on a canary, admins read the reports.

``POST`` (a device token): one device's evaluation of the candidate
against the live release on its own held-out data, numbers only
(:class:`fedge.wire.canary.Evaluation`). 201 with a receipt; the same
report again, 200 with the same receipt. A report may decide the
candidate: the sequential test of :mod:`fedge.server.releases.canary.decision`
on the reports that count (:mod:`fedge.server.releases.canary.reports`).

``GET`` (admin): the reports, in the order they came, each with
``counted`` (whether it counts in the decision), and their summary.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from fedge.server.api.common import (
    MAX_ROUND_ID,
    authenticated_device,
    json_body,
    list_limit,
    require_admin,
)
from fedge.server.api.release_health import release_width
from fedge.server.errors import BadRequest, NotFound
from fedge.server.http.context import context
from fedge.server.releases.canary import reports as canary
from fedge.server.releases.health.shape import check_shape
from fedge.wire.canary import CanaryWireError, Evaluation

bp = Blueprint("canary", __name__, url_prefix="/v1/releases")


@bp.post("/<int:version>/evaluations")
def report(version: int) -> Any:
    device = authenticated_device()
    try:
        evaluation = Evaluation.from_json(json_body())
    except CanaryWireError as exc:
        raise BadRequest(str(exc), code="bad_evaluation") from exc
    _known(version)
    ctx = context()
    if evaluation.predictions is not None:  # they must fit the candidate's output
        shown = evaluation.predictions
        width = release_width(ctx, version)
        check_shape(version, shown.histogram, shown.quantiles, width, "bad_evaluation")
    with ctx.store.transaction() as tx:
        receipt, created = canary.report(
            tx, version, device.id, evaluation, canary.policy_of(ctx.config)
        )
    response = jsonify(receipt.to_json())
    response.status_code = 201 if created else 200
    return response


@bp.get("/<int:version>/evaluations")
def listing(version: int) -> Any:
    require_admin()
    limit = list_limit()
    _known(version)
    ctx = context()
    with ctx.store.reading() as tx:
        if tx.releases.get(version) is None:
            raise NotFound(f"no release {version}", code="unknown_release")
        summary = canary.summary_of(tx, version, canary.policy_of(ctx.config))
        reports = tx.canary.listing(version, limit)
        counted = canary.counted_ids(tx, version, canary.policy_of(ctx.config))
    return jsonify(
        {
            "version": version,
            "canary": summary.to_json(),
            "evaluations": [{**r.to_json(), "counted": r.device_id in counted} for r in reports],
        }
    )


def _known(version: int) -> None:
    """An id past the stored 64-bit integers names no release (and must not reach it)."""
    if version > MAX_ROUND_ID:
        raise NotFound(f"no release {version}", code="unknown_release")
