"""Health reports taken, windows judged, the series read: inside the caller's transaction.

:func:`report` checks before it writes (a refusal changes nothing): the
release is the one meant for this device (live, or the candidate for a
device in its slice), the prediction numbers fit the release's output,
and the device has not reported something else in this window already
(the same report again gets the same receipt, so a retry after a lost
answer is safe). A window is judged once it has closed: the first report
of a later window (or a read of the series) judges every closed window
not judged yet, so late reports cannot rewrite a judged window and a
window's first few reporters cannot decide it alone. A judged window that
starts or ends an alert writes a ``health`` event (public: numbers only).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from fedge.server.config import ServerConfig
from fedge.server.errors import Conflict, NotFound
from fedge.server.releases.canary.decision import Policy as CanaryPolicy
from fedge.server.releases.canary.delivery import meant_for
from fedge.server.releases.health.drift import Policy, judge
from fedge.server.releases.health.shape import check_shape
from fedge.server.storage.health import StoredHealthReport
from fedge.server.storage.store import Tx
from fedge.wire.health import HealthReceipt, HealthReport, HealthSeries, HealthWindow

EVENT = "health"


@dataclass(frozen=True)
class Judged:
    """A window judged now, and whether it ``raised`` or ``cleared`` the alert (else None)."""

    window: HealthWindow
    change: str | None


def policy_of(config: ServerConfig) -> Policy:
    return Policy(
        window_s=config.health_window_s,
        min_devices=config.health_min_devices,
        margin=config.health_margin,
        max_distance=config.health_max_distance,
        max_shift=config.health_max_shift,
        require_history=config.canary_require_history,
    )


def window_of(at: float, policy: Policy) -> int:
    return int(at // policy.window_s)


def report(
    tx: Tx,
    version: int,
    device_id: str,
    health: HealthReport,
    width: int | None,
    policy: Policy,
    canary: CanaryPolicy,
    now: float | None = None,
) -> tuple[HealthReceipt, bool, list[Judged]]:
    """The receipt, whether the report is new, and the windows this call
    judged. ``canary``: which canary reports count and the parity rule, for
    the parity that keeps a release off a runtime."""
    at = time.time() if now is None else now
    window = window_of(at, policy)
    _check(tx, version, device_id, health, width, canary)
    existing = tx.health.find(version, device_id, window)
    if existing is not None:
        if existing.report != health:
            raise Conflict(
                f"this device reported on release {version} in this window already; "
                f"the next window opens at {_next(window, policy):.0f}",
                code="already_reported",
            )
        return _receipt(version, existing, policy), False, []
    judged = judge_closed(tx, version, window, policy)
    stored = tx.health.insert(version, device_id, window, health, at)
    return _receipt(version, stored, policy), True, judged


def judge_closed(tx: Tx, version: int, current: int, policy: Policy) -> list[Judged]:
    """Judge the windows of ``version`` before ``current`` that have reports
    and no judgement; write an event for each alert raised or cleared."""
    judged: list[Judged] = []
    for window in tx.health.unjudged_windows(version, current):
        by_runtime: dict[str, dict[str, HealthReport]] = defaultdict(dict)
        for stored in tx.health.in_window(version, window):
            by_runtime[stored.report.runtime][stored.device_id] = stored.report
        for runtime, reports in sorted(by_runtime.items()):
            judged.append(_judge_one(tx, version, window, runtime, reports, policy))
    return judged


def series(tx: Tx, version: int, policy: Policy, now: float, limit: int) -> HealthSeries:
    if tx.releases.get(version) is None:
        raise NotFound(f"no release {version}", code="unknown_release")
    current = window_of(now, policy)
    return HealthSeries(
        version=version,
        window_s=policy.window_s,
        min_devices=policy.min_devices,
        margin=policy.margin,
        max_distance=policy.max_distance,
        open_window=current,
        open_reports=tx.health.count_in_window(version, current),
        windows=tuple(tx.health.windows(version, limit)),
    )


def _judge_one(
    tx: Tx,
    version: int,
    window: int,
    runtime: str,
    reports: dict[str, HealthReport],
    policy: Policy,
) -> Judged:
    previous = tx.health.latest(version, runtime)
    baseline = tx.health.baseline(version, runtime)
    own: dict[str, HealthReport] = {}
    if baseline is not None:
        own = {
            s.device_id: s.report
            for s in tx.health.in_window(version, baseline.window)
            if s.report.runtime == runtime
        }
    # A device's canary numbers on this release, when it has them, are its
    # baseline rather than a window after the promotion (issue 23).
    canary = canary_baselines(tx, version, runtime, policy)
    reference = judge(version, window, canary, None, {}, policy) if canary else None
    made = judge(version, window, reports, baseline, {**own, **canary}, policy, reference)
    tx.health.record_window(made)
    was_alert = previous is not None and previous.alert
    if made.alert != was_alert and (made.alert or made.voters >= policy.min_devices):
        shown = reference if reference is not None else tx.health.baseline(version, runtime)
        tx.events.add(EVENT, _event(made, shown))
        return Judged(made, "raised" if made.alert else "cleared")
    return Judged(made, None)


def canary_baselines(tx: Tx, version: int, runtime: str, policy: Policy) -> dict[str, HealthReport]:
    """Each counted canary device's evaluation of ``version`` on ``runtime``
    as a health report: the candidate's loss and metric on its held-out
    examples and what it predicted there (without predictions, the metric
    alone is compared)."""
    record = tx.releases.get(version)
    if record is None:
        return {}
    found: dict[str, HealthReport] = {}
    for stored in tx.canary.counted(version, record.created_at, policy.require_history):
        e = stored.evaluation
        if e.runtime != runtime:
            continue
        found[stored.device_id] = HealthReport(
            metric=e.metric,
            loss=e.candidate["loss"],
            value=e.candidate[e.metric],
            num_examples=e.num_examples,
            runtime=runtime,
            histogram=e.predictions.histogram if e.predictions is not None else None,
            quantiles=e.predictions.quantiles if e.predictions is not None else None,
        )
    return found


def _event(made: HealthWindow, baseline: HealthWindow | None) -> dict[str, object]:
    return {
        "version": made.version,
        "runtime": made.runtime,
        "window": made.window,
        "state": "raised" if made.alert else "cleared",
        "metric": made.metric,
        "value": made.value,
        "baseline_value": baseline.value if baseline is not None else None,
        "drop": made.drop,
        "distance": made.distance,
        "devices": made.devices,
    }


def _check(
    tx: Tx,
    version: int,
    device_id: str,
    health: HealthReport,
    width: int | None,
    canary: CanaryPolicy,
) -> None:
    if tx.releases.get(version) is None:
        raise NotFound(f"no release {version}", code="unknown_release")
    # The release meant for the device on the runtime it reports from: one
    # whose parity failed there is kept off it (issue 23).
    meant = meant_for(tx, device_id, health.runtime, canary)
    if meant is None or meant.version != version:
        raise Conflict(
            f"release {version} is not the release this device should serve", code="not_serving"
        )
    check_shape(version, health.histogram, health.quantiles, width, "bad_health_report")


def _next(window: int, policy: Policy) -> float:
    return (window + 1) * policy.window_s


def _receipt(version: int, stored: StoredHealthReport, policy: Policy) -> HealthReceipt:
    return HealthReceipt(
        version, stored.device_id, stored.window, stored.received_at, _next(stored.window, policy)
    )
