"""A canary release tested on the devices: their reports, and the decision.

:func:`report` takes one device's evaluation of the candidate inside the
caller's transaction. It checks before it writes (so a refusal changes
nothing): the device has not reported a different evaluation already (the
same one again gets the same receipt, so a retry after a lost answer is
safe), the release is the candidate, the device is in its slice (the same
keyed hash ``GET /v1/releases/current`` uses) and the baseline is the live
release. Then it stores the numbers and settles the canary (:func:`settle`).

Which reports count: those of devices enrolled before the candidate was
created that had a history by then (an accepted update, or a report on an
earlier release, received before the candidate). Enrolling devices after
a push, or keeping fresh ones ready, buys an attacker stored reports but
no say (issue 22). The others
are kept and listed (``counted: false``), as evidence of who reported.

:func:`settle` weighs the counted reports with the sequential test of
:mod:`.decision`: a promotion or a rollback is applied in the same
transaction (:mod:`fedge.server.releases.actions`, announced as
``release`` events) and the change log records the evidence under the
actor ``canary``; while it keeps collecting and every counted device of
the slice has reported, the slice widens (doubling, up to
``canary_max_percent``). The round driver calls it too
(:mod:`.deadline`), so a canary that gets no reports still ends at
``canary_max_s``.
"""

from __future__ import annotations

import time
from typing import Any

from fedge.server.config import ServerConfig
from fedge.server.errors import Conflict, NotFound
from fedge.server.releases import actions, slice_key
from fedge.server.releases.canary import parity
from fedge.server.releases.canary.decision import (
    COLLECTING,
    Policy,
    Verdict,
    decide,
    explain,
    summarize,
    weigh,
)
from fedge.server.releases.rollout import in_canary, release_for
from fedge.server.storage.canary import Decision
from fedge.server.storage.store import Tx
from fedge.wire.canary import CanarySummary, Evaluation, EvaluationReceipt
from fedge.wire.releases import ReleaseRecord

ACTOR = "canary"
LIMIT_DEVICE = ""  # a decision made by a limit, not by a device's report


def policy_of(config: ServerConfig) -> Policy:
    return Policy(
        min_reports=config.canary_min_reports,
        margin=config.canary_margin,
        alpha=config.canary_alpha,
        beta=config.canary_beta,
        bound=config.canary_difference_bound,
        max_reports=config.canary_max_reports,
        max_s=config.canary_max_s,
        default=config.canary_default,
        max_percent=config.canary_max_percent,
        require_history=config.canary_require_history,
        higher_is_better=config.canary_metric_higher_is_better,
        parity=config.parity_rule,
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
    now = time.time()
    stored = tx.canary.insert(version, device_id, evaluation, now)
    settle(tx, policy, now, device_id)
    return _receipt(tx, version, device_id, stored.received_at), True


def settle(tx: Tx, policy: Policy, now: float, device_id: str = LIMIT_DEVICE) -> str | None:
    """Decide the candidate if the evidence (or a limit) says so, else widen
    its slice when every counted device in it has reported; the outcome
    applied, or None."""
    live, candidate = tx.releases.delivering()
    if candidate is None or live is None or tx.canary.decision(candidate.version):
        return None
    counted = tx.canary.counted(candidate.version, candidate.created_at, policy.require_history)
    evaluations = [r.evaluation for r in counted]
    metric = evaluations[0].metric if evaluations else None
    found = weigh(evaluations, metric, policy)
    verdict = decide(found, policy, now - candidate.created_at)
    if verdict.outcome != COLLECTING:
        _apply(tx, candidate.version, device_id, verdict, now, policy)
        return verdict.outcome
    _widen(tx, candidate, found.devices, policy)
    return None


def summary_of(tx: Tx, version: int, policy: Policy) -> CanarySummary:
    record = tx.releases.get(version)
    if record is None:
        raise NotFound(f"no release {version}", code="unknown_release")
    counted = tx.canary.counted(version, record.created_at, policy.require_history)
    reports, using = tx.canary.count(version)
    evaluations = [r.evaluation for r in counted]
    metric = evaluations[0].metric if evaluations else tx.canary.metric_of(version)
    made = tx.canary.decision(version)
    decided = None
    if made is not None:
        change = tx.releases.change(made.change_id)
        details: dict[str, Any] = change.details.get("canary", {}) if change else {}
        decided = (made.decision, made.decided_at, details.get("reason"))
    return summarize(reports, evaluations, metric, using, policy, decided)


def shown_summary(tx: Tx, record: ReleaseRecord, policy: Policy) -> CanarySummary | None:
    """The summary ``GET /v1/releases/{version}`` shows: the candidate's (0
    reports at first), a decided or reported one's; None for the rest."""
    summary = summary_of(tx, record.version, policy)
    shown = record.state == "canary" or summary.reports or summary.decision
    return summary if shown else None


def counted_ids(tx: Tx, version: int, policy: Policy) -> set[str]:
    """The devices whose reports on ``version`` count."""
    record = tx.releases.get(version)
    if record is None:
        return set()
    rows = tx.canary.counted(version, record.created_at, policy.require_history)
    return {r.device_id for r in rows}


def _widen(tx: Tx, candidate: ReleaseRecord, reported: int, policy: Policy) -> None:
    if candidate.percent >= policy.max_percent or candidate.bundle_id is None:
        return
    key = slice_key.of(tx.state)
    eligible = tx.canary.eligible_devices(
        candidate.version, candidate.created_at, policy.require_history
    )
    inside = sum(in_canary(key, candidate.bundle_id, d, candidate.percent) for d in eligible)
    if reported < inside or len(eligible) <= inside:
        return  # devices of the slice still to report, or nobody to add
    percent = min(policy.max_percent, max(candidate.percent * 2, candidate.percent + 1))
    why = (
        f"canary: not enough evidence yet from {reported} counted devices; "
        f"the slice widens from {candidate.percent:g}% to {percent:g}% "
        f"(canary_max_percent {policy.max_percent:g})"
    )
    actions.set_rollout(tx, percent, ACTOR, why)


def _check(tx: Tx, version: int, device_id: str, evaluation: Evaluation) -> None:
    if tx.releases.get(version) is None:
        raise NotFound(f"no release {version}", code="unknown_release")
    live, candidate = tx.releases.delivering()
    if candidate is None or candidate.version != version or live is None:
        raise Conflict(f"release {version} is not the candidate", code="not_candidate")
    meant = release_for(slice_key.of(tx.state), device_id, live, candidate)
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
    tx: Tx, version: int, device_id: str, verdict: Verdict, at: float, policy: Policy
) -> None:
    summary = summary_of(tx, version, policy)
    numbers = {
        "version": version,
        **summary.to_json(),
        "decision": verdict.outcome,
        "decided_at": at,
        "outcome": verdict.outcome,
        "reason": verdict.reason,
    }
    evidence: dict[str, Any] = {"canary": numbers}
    record = tx.releases.get(version)
    assert record is not None  # the candidate, found by settle in this transaction
    counted = tx.canary.counted(version, record.created_at, policy.require_history)
    runtimes = parity.by_runtime((r.evaluation for r in counted), policy.parity)
    if runtimes:
        # Promoted or not, the runtimes whose parity failed keep their release
        # (:mod:`.delivery`); the change log says which.
        evidence["parity"] = {name: found.to_json() for name, found in runtimes.items()}
        held = sorted(name for name, found in runtimes.items() if not found.ok)
        if held and verdict.outcome == "promote":
            evidence["held_runtimes"] = held
    why = explain(version, summary, verdict)
    if verdict.outcome == "promote":
        change = actions.promote(tx, version, ACTOR, why, evidence)
    else:
        live, _ = tx.releases.delivering()
        assert live is not None  # settle found it in this transaction
        change = actions.rollback(tx, live.version, ACTOR, why, evidence)
    tx.canary.record_decision(version, Decision(verdict.outcome, device_id, change.id, at))


def _receipt(tx: Tx, version: int, device_id: str, received_at: float) -> EvaluationReceipt:
    made = tx.canary.decision(version)
    decided = made.decision if made is not None and made.device_id == device_id else None
    return EvaluationReceipt(version, device_id, received_at, decided)
