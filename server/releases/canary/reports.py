"""A canary release tested on the devices: their reports, and the decision.

:func:`report` takes one device's evaluation of the candidate inside the
caller's transaction. It checks before it writes (so a refusal changes
nothing): the device has not reported a different evaluation already (the
same one again gets the same receipt, so a retry after a lost answer is
safe), the release is the candidate, the device is in its slice (the same
hash ``GET /v1/releases/current`` uses) and the baseline is the live
release. Then it stores the numbers and, once there are enough (or every
device of a slice smaller than ``canary_min_reports`` has reported), decides by
:mod:`fedge.server.releases.canary.decision`: the candidate is promoted or rolled
back (:mod:`fedge.server.releases.actions`, announced as ``release``
events) in the same transaction, and the change log records the numbers
behind it under the actor ``canary``.
"""

from __future__ import annotations

import time
from dataclasses import replace

from fedge.server.config import ServerConfig
from fedge.server.errors import Conflict, NotFound
from fedge.server.releases import actions
from fedge.server.releases.canary.decision import Policy, decide, explain, summarize
from fedge.server.releases.rollout import release_for
from fedge.server.storage.canary import Decision
from fedge.server.storage.store import Tx
from fedge.wire.canary import CanarySummary, Evaluation, EvaluationReceipt
from fedge.wire.releases import ReleaseRecord

ACTOR = "canary"


def policy_of(config: ServerConfig) -> Policy:
    return Policy(
        min_reports=config.canary_min_reports,
        margin=config.canary_margin,
        max_weight=config.max_example_weight,
        higher_is_better=config.canary_metric_higher_is_better,
    )


def report(
    tx: Tx,
    version: int,
    device_id: str,
    evaluation: Evaluation,
    policy: Policy,
) -> tuple[EvaluationReceipt, bool]:
    """The receipt, and whether the report is new (False: a repeat)."""
    existing = tx.canary.find(version, device_id)
    if existing is not None:
        if existing.evaluation != evaluation:
            raise Conflict(
                f"this device reported a different evaluation of release {version} already",
                code="already_reported",
            )
        return _receipt(tx, version, device_id, existing.received_at), False
    _check(tx, version, device_id, evaluation)
    stored = tx.canary.insert(version, device_id, evaluation, time.time())
    summary = summary_of(tx, version, policy)
    slice_devices = _small_slice(tx, summary, policy)
    if slice_devices is not None:  # the whole slice decides
        policy = replace(policy, min_reports=slice_devices)
    decision = decide(summary, policy)
    if decision is not None:
        _apply(tx, version, device_id, decision, summary, stored.received_at, slice_devices)
    return _receipt(tx, version, device_id, stored.received_at), True


def summary_of(tx: Tx, version: int, policy: Policy) -> CanarySummary:
    made = tx.canary.decision(version)
    tally = tx.canary.tally(version, policy.max_weight)
    if made is None:
        return summarize(tally, policy, None, None)
    return summarize(tally, policy, made.decision, made.decided_at)


def shown_summary(tx: Tx, record: ReleaseRecord, policy: Policy) -> CanarySummary | None:
    """The summary ``GET /v1/releases/{version}`` shows: the candidate's (0
    reports at first), a decided or reported one's; None for the rest."""
    summary = summary_of(tx, record.version, policy)
    shown = record.state == "canary" or summary.reports or summary.decision
    return summary if shown else None


# A slice of one device stays pending (no single device decides a release).
MIN_SLICE_DEVICES = 2


def _small_slice(tx: Tx, summary: CanarySummary, policy: Policy) -> int | None:
    """The devices in the candidate's slice, when fewer than the reports
    the policy asks for (None otherwise): 50 % of 6 devices never sends 5
    reports, so the canary would stay pending forever. Observers (the
    simulator's, which only read) never report and are not counted."""
    if summary.reports >= policy.min_reports:
        return None
    live, candidate = tx.releases.delivering()
    if candidate is None:
        return None
    size = sum(_canary(device, live, candidate) for device in tx.devices.ids_except("observer"))
    return size if MIN_SLICE_DEVICES <= size < policy.min_reports else None


def _canary(device_id: str, live: ReleaseRecord | None, candidate: ReleaseRecord) -> bool:
    meant = release_for(device_id, live, candidate)
    return meant is not None and meant.channel == "canary"


def _check(tx: Tx, version: int, device_id: str, evaluation: Evaluation) -> None:
    if tx.releases.get(version) is None:
        raise NotFound(f"no release {version}", code="unknown_release")
    live, candidate = tx.releases.delivering()
    if candidate is None or candidate.version != version or live is None:
        raise Conflict(f"release {version} is not the candidate", code="not_candidate")
    meant = release_for(device_id, live, candidate)
    if meant is None or meant.channel != "canary":
        raise Conflict(
            f"this device is not in release {version}'s canary slice", code="not_in_canary"
        )
    if evaluation.baseline_version != live.version:
        raise Conflict(
            f"the live release is {live.version}, not {evaluation.baseline_version}: "
            "evaluate the candidate against it",
            code="stale_baseline",
        )
    metric = tx.canary.metric_of(version)
    if metric is not None and metric != evaluation.metric:
        raise Conflict(
            f"release {version} is scored by {metric}, not {evaluation.metric}",
            code="metric_mismatch",
        )


def _apply(
    tx: Tx,
    version: int,
    device_id: str,
    decision: str,
    summary: CanarySummary,
    at: float,
    slice_devices: int | None,
) -> None:
    numbers = {"version": version, **summary.to_json(), "decision": decision, "decided_at": at}
    if slice_devices is not None:
        numbers["slice_devices"] = slice_devices
    evidence = {"canary": numbers}
    why = explain(version, summary, decision, slice_devices)
    if decision == "promote":
        change = actions.promote(tx, version, ACTOR, why, evidence)
    else:
        live, _ = tx.releases.delivering()
        assert live is not None  # _check found it in this transaction
        change = actions.rollback(tx, live.version, ACTOR, why, evidence)
    tx.canary.record_decision(version, Decision(decision, device_id, change.id, at))


def _receipt(tx: Tx, version: int, device_id: str, received_at: float) -> EvaluationReceipt:
    made = tx.canary.decision(version)
    decided = made.decision if made is not None and made.device_id == device_id else None
    return EvaluationReceipt(version, device_id, received_at, decided)
