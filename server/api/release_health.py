"""/v1/releases/{version}/health: devices report on the live model, anyone reads the series.

``POST`` (a device token): one device's numbers on the release it serves
for the current window (:class:`fedge.wire.health.HealthReport`); 201
with a receipt that says when the next window opens (the pace the server
sets); the same report again in the same window, 200 with the same
receipt; a different one, 409 ``already_reported``.

``GET`` (public: medians over devices and settings, never a device's
id or its own numbers): the release's judged windows per runtime
(:class:`fedge.wire.health.HealthSeries`), oldest first, at most
``limit``. Reading judges windows that have closed and wait for their
judgement (the first report of a later window would, too).

With ``health_alert_cut`` set, a judgement that raises the alert also cuts
a release from the current global checkpoint (as ``POST
/v1/admin/releases`` would, by ``health``), after the judgement has
committed: the federated rounds go on on the devices' drifted data, and
the release's canary decides whether what they learned is better. A cut
the builder refuses (another build running) is logged, not retried.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, jsonify

from fedge.server.api.common import MAX_ROUND_ID, authenticated_device, json_body, list_limit
from fedge.server.errors import BadRequest, NotFound, ServerError
from fedge.server.http.context import ServerContext, context
from fedge.server.metrics import Metrics
from fedge.server.releases.build.builder import CutRequest
from fedge.server.releases.canary import reports as canary
from fedge.server.releases.health import reports as health
from fedge.server.releases.health.shape import output_width
from fedge.wire.health import HealthReport, HealthWireError

log = logging.getLogger("fedge.server")

bp = Blueprint("release_health", __name__, url_prefix="/v1/releases")

# A histogram of 1,000 classes of 8-digit counts fits with room to spare.
MAX_REPORT_BYTES = 16 * 1024


@bp.post("/<int:version>/health")
def report(version: int) -> Any:
    device = authenticated_device()
    try:
        parsed = HealthReport.from_json(json_body(MAX_REPORT_BYTES))
    except HealthWireError as exc:
        raise BadRequest(str(exc), code="bad_health_report") from exc
    _known(version)
    ctx = context()
    width = release_width(ctx, version)
    with ctx.store.transaction() as tx:
        receipt, created, judged = health.report(
            tx,
            version,
            device.id,
            parsed,
            width,
            health.policy_of(ctx.config),
            canary.policy_of(ctx.config),
        )
    _after_judging(ctx, parsed.runtime if created else None, judged)
    response = jsonify(receipt.to_json())
    response.status_code = 201 if created else 200
    return response


@bp.get("/<int:version>/health")
def series(version: int) -> Any:
    limit = list_limit()
    _known(version)
    ctx = context()
    policy = health.policy_of(ctx.config)
    now = time.time()
    current = health.window_of(now, policy)
    with ctx.store.reading() as tx:
        waiting = tx.releases.get(version) is not None and tx.health.unjudged_windows(
            version, current
        )
    if waiting:
        with ctx.store.transaction() as tx:
            judged = health.judge_closed(tx, version, current, policy)
        _after_judging(ctx, None, judged)
    with ctx.store.reading() as tx:
        shown = health.series(tx, version, policy, now, limit)
    return jsonify(shown.to_json())


def release_width(ctx: ServerContext, version: int) -> int | None:
    """How many numbers the release's predictions have (None: unknown)."""
    with ctx.store.reading() as tx:
        record = tx.releases.get(version)
    if record is None or record.bundle_id is None:
        return None
    stored = ctx.releases.bundle(record.bundle_id)
    return output_width(stored.root) if stored is not None else None


def _after_judging(ctx: ServerContext, runtime: str | None, judged: list[health.Judged]) -> None:
    _count(ctx.coordinator.metrics, runtime, judged)
    raised = [j.window for j in judged if j.change == "raised"]
    if not raised or not ctx.config.health_alert_cut:
        return
    first = raised[0]
    why = (
        f"health alert on release {first.version} ({first.runtime}): {first.votes} of "
        f"{first.devices} devices drifted"
    )
    try:
        record = ctx.builds.cut(CutRequest(notes=why, by="health", why=why))
    except ServerError as exc:
        log.warning("health alert: no release cut: %s", exc)
        return
    log.info("health alert: cutting release %s", record.version)


def _count(metrics: Metrics, runtime: str | None, judged: list[health.Judged]) -> None:
    metrics.define("fedge_health_reports_total", "counter", "Health reports taken, by runtime.")
    metrics.define(
        "fedge_health_alert", "gauge", "1 while the live model's health alert is raised."
    )
    metrics.define("fedge_health_value", "gauge", "The median metric of the last judged window.")
    metrics.define(
        "fedge_health_distance", "gauge", "How far the predictions moved from the baseline."
    )
    if runtime is not None:
        metrics.inc("fedge_health_reports_total", runtime=runtime)
    for made in (j.window for j in judged):
        labels = {"version": str(made.version), "runtime": made.runtime}
        metrics.set("fedge_health_alert", float(made.alert), **labels)
        metrics.set("fedge_health_value", made.value, **labels)
        if made.distance is not None:
            metrics.set("fedge_health_distance", made.distance, **labels)


def _known(version: int) -> None:
    if version > MAX_ROUND_ID:
        raise NotFound(f"no release {version}", code="unknown_release")
