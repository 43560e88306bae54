"""When the devices' numbers decide a canary release: pure functions, no server state.

The counted reports (one per device that existed before the candidate
and has a history: :mod:`.reports`) become paired differences, candidate
minus live on the same examples, sign by the metric's direction; the
sequential test of :mod:`.sequential` on their mean gives one of three
outcomes:

    promote          the candidate is not worse than live by the margin
                     (wrongly, for one worse by the margin: <= alpha)
    rollback         the candidate is worse than live
                     (wrongly, for one as good or better: <= beta)
    keep collecting  not enough evidence yet: more devices are asked
                     (the slice widens step by step up to a limit)

No decision before ``min_reports`` distinct devices have been counted (a
floor, not the rule). At ``max_reports`` counted devices, or ``max_s``
seconds after the push, a canary still collecting ends with the
configured ``default`` (roll back unless told otherwise), recorded as
such. Every device weighs the same: its example count is shown, never
used as a weight (a device could claim any).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedge.server.parity_rule import ParityRule
from fedge.server.releases.canary.sequential import Evidence, evidence, signed_difference
from fedge.wire.canary import HIGHER_IS_BETTER, CanarySummary, Evaluation

COLLECTING = "keep collecting"


@dataclass(frozen=True)
class Policy:
    min_reports: int
    margin: float
    alpha: float  # wrong promotion of a candidate worse by the margin
    beta: float  # wrong rollback of a candidate as good as live
    bound: float  # per-device differences clipped to [-bound, bound]
    max_reports: int
    max_s: float
    default: str  # what a canary that reached a limit becomes
    max_percent: float  # the slice widens up to this
    require_history: bool = True
    # None: from the metric's name (fedge.wire.canary.HIGHER_IS_BETTER).
    higher_is_better: bool | None = None
    # Which runtimes a release is kept off (frozen, so one shared default is safe).
    parity: ParityRule = ParityRule()  # noqa: RUF009

    def direction(self, metric: str) -> bool:
        """Whether a higher ``metric`` is better."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return HIGHER_IS_BETTER[metric]

    @property
    def tolerated_liars(self) -> float:
        """The share of counted devices that may lie without flipping a
        decision about a candidate twice the margin away: k liars move the
        mean of differences in [-bound, bound] by at most 2 * bound * k / n."""
        return self.margin / (2 * self.bound)


@dataclass(frozen=True)
class Verdict:
    outcome: str  # promote, rollback or COLLECTING
    reason: str


def weigh(reports: Sequence[Evaluation], metric: str | None, policy: Policy) -> Evidence:
    """The sequential test on the counted reports, in the order they came."""
    higher = policy.direction(metric) if metric is not None else True
    differences = [
        signed_difference(r.candidate[r.metric], r.baseline[r.metric], higher) for r in reports
    ]
    return evidence(differences, policy.margin, policy.bound, policy.alpha, policy.beta)


def decide(found: Evidence, policy: Policy, age_s: float) -> Verdict:
    """What the evidence supports now; a limit ends a canary with the default."""
    if found.devices < policy.min_reports:
        verdict = Verdict(
            COLLECTING,
            f"not enough evidence yet: {found.devices} of at least "
            f"{policy.min_reports} devices (canary_min_reports)",
        )
    elif found.promote and not found.rollback:
        verdict = Verdict(
            "promote",
            f"not worse than live by the margin {policy.margin:g}: e-value "
            f"{found.promote_e:.3g} >= {found.promote_threshold:.3g} (1/alpha)",
        )
    elif found.rollback and not found.promote:
        verdict = Verdict(
            "rollback",
            f"worse than live: e-value {found.rollback_e:.3g} >= "
            f"{found.rollback_threshold:.3g} (1/beta)",
        )
    else:
        verdict = Verdict(COLLECTING, "not enough evidence yet")
    if verdict.outcome != COLLECTING:
        return verdict
    if found.devices >= policy.max_reports:
        return _limit(policy, f"{found.devices} devices reached canary_max_reports")
    if age_s >= policy.max_s:
        return _limit(policy, f"{age_s:.0f} s reached canary_max_s without a decision")
    return verdict


def _limit(policy: Policy, what: str) -> Verdict:
    return Verdict(policy.default, f"limit: {what}; the default ({policy.default}) applies")


def summarize(
    reports: int,
    counted: Sequence[Evaluation],
    metric: str | None,
    using: dict[str, int],
    policy: Policy,
    made: tuple[str, float, str | None] | None,
) -> CanarySummary:
    """The summary a release shows; ``made``: (decision, when, reason) once decided."""
    found = weigh(counted, metric, policy)
    verdict = decide(found, policy, 0.0) if made is None else None
    candidate = baseline = None
    if metric is not None and counted:
        n = len(counted)
        candidate = {
            "loss": sum(r.candidate["loss"] for r in counted) / n,
            metric: sum(r.candidate[metric] for r in counted) / n,
        }
        baseline = {
            "loss": sum(r.baseline["loss"] for r in counted) / n,
            metric: sum(r.baseline[metric] for r in counted) / n,
        }
    return CanarySummary(
        metric=metric,
        higher_is_better=policy.direction(metric) if metric is not None else None,
        reports=reports,
        num_examples=sum(r.num_examples for r in counted),
        candidate=candidate,
        baseline=baseline,
        using=using,
        min_reports=policy.min_reports,
        margin=policy.margin,
        decision=made[0] if made is not None else None,
        decided_at=made[1] if made is not None else None,
        devices=found.devices,
        estimate=found.estimate,
        interval=_interval(found),
        statistic={"promote": found.promote_e, "rollback": found.rollback_e},
        threshold={"promote": found.promote_threshold, "rollback": found.rollback_threshold},
        alpha=policy.alpha,
        beta=policy.beta,
        bound=policy.bound,
        outcome=made[0] if made is not None else (verdict.outcome if verdict else COLLECTING),
        reason=made[2] if made is not None else (verdict.reason if verdict else None),
    )


def _interval(found: Evidence) -> list[float] | None:
    if found.lower is None or found.upper is None:
        return None
    return [found.lower, found.upper]


def explain(version: int, summary: CanarySummary, verdict: Verdict) -> str:
    """The change log's ``why`` for a decision, with the numbers behind it."""
    metric = summary.metric or "metric"
    interval = summary.interval or [float("nan"), float("nan")]
    estimate = summary.estimate if summary.estimate is not None else float("nan")
    return (
        f"canary: release {version} {verdict.outcome} on {summary.devices} devices "
        f"({summary.num_examples} examples, {summary.reports} reports): {metric} "
        f"difference {estimate:+.4g} (candidate minus live, "
        f"{'higher' if summary.higher_is_better else 'lower'} is better), "
        f"interval [{interval[0]:+.4g}, {interval[1]:+.4g}]; {verdict.reason}"
    )
