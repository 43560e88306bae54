"""When the devices' numbers decide a canary release: pure functions, no server state.

Once ``min_reports`` devices of the candidate's slice have reported, the
example-weighted mean of the headline metric on the candidate is compared
with the same mean on the live release (the baseline): the candidate is
promoted unless it is worse by more than ``margin`` (in the metric's own
units; worse means lower for accuracy, higher for mae or loss), else it is
rolled back. Each device's weight is its ``num_examples``, capped at
``max_weight`` as update weights are, so no one device outweighs the rest.

    promote  iff  candidate >= baseline - margin   (higher is better)
             or   candidate <= baseline + margin   (lower is better)
"""

from __future__ import annotations

from dataclasses import dataclass

from fedge.server.storage.canary import Tally
from fedge.wire.canary import HIGHER_IS_BETTER, CanarySummary


@dataclass(frozen=True)
class Policy:
    min_reports: int
    margin: float
    max_weight: int
    # None: from the metric's name (fedge.wire.canary.HIGHER_IS_BETTER).
    higher_is_better: bool | None = None

    def direction(self, metric: str) -> bool:
        """Whether a higher ``metric`` is better."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return HIGHER_IS_BETTER[metric]


def summarize(
    tally: Tally, policy: Policy, decision: str | None, decided_at: float | None
) -> CanarySummary:
    """The summary a release shows (means None before any report)."""
    candidate = baseline = None
    if tally.metric is not None and tally.weight > 0:
        c_loss, c_metric, b_loss, b_metric = (s / tally.weight for s in tally.sums)
        candidate = {"loss": c_loss, tally.metric: c_metric}
        baseline = {"loss": b_loss, tally.metric: b_metric}
    return CanarySummary(
        metric=tally.metric,
        higher_is_better=policy.direction(tally.metric) if tally.metric is not None else None,
        reports=tally.reports,
        num_examples=tally.weight,
        candidate=candidate,
        baseline=baseline,
        using=tally.using,
        min_reports=policy.min_reports,
        margin=policy.margin,
        decision=decision,
        decided_at=decided_at,
    )


def decide(summary: CanarySummary, policy: Policy) -> str | None:
    """``promote``, ``rollback``, or None while fewer than ``min_reports``."""
    if summary.reports < policy.min_reports or summary.metric is None:
        return None
    if summary.candidate is None or summary.baseline is None:
        return None
    candidate = summary.candidate[summary.metric]
    baseline = summary.baseline[summary.metric]
    if policy.direction(summary.metric):
        holds = candidate >= baseline - policy.margin
    else:
        holds = candidate <= baseline + policy.margin
    return "promote" if holds else "rollback"


def explain(
    version: int, summary: CanarySummary, decision: str, slice_devices: int | None = None
) -> str:
    """The change log's ``why`` for a decision, with the numbers behind it;
    ``slice_devices``: a slice smaller than the minimum, decided by all of it."""
    metric = summary.metric or "metric"
    candidate = (summary.candidate or {}).get(metric, float("nan"))
    baseline = (summary.baseline or {}).get(metric, float("nan"))
    verdict = "holds" if decision == "promote" else "is worse"
    devices = (
        f"all {slice_devices} devices of its slice (fewer than canary_min_reports "
        f"{summary.min_reports})"
        if slice_devices is not None
        else f"{summary.reports} devices"
    )
    return (
        f"canary: release {version} {verdict} on {devices} "
        f"({summary.num_examples} examples): {metric} {candidate:.4g} vs {baseline:.4g} "
        f"live (margin {summary.margin:g}, "
        f"{'higher' if summary.higher_is_better else 'lower'} is better)"
    )
