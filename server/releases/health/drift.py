"""The drift rule: one window's reports against the release's baseline window.

Devices differ: one user writes mostly sevens, another's camera is dim,
so a device's numbers are compared with *its own* report in the baseline
window, never with the population's (against which every device of a
non-IID fleet looks drifted). Each device that reported in the baseline
window is one vote, whatever it claims to have counted. It votes
"drifted" when, against its own baseline report, beyond the bounds and
beyond what the two samples' sizes explain:

* its metric is worse by more than ``margin`` plus two standard errors
  (accuracy: of the difference of two proportions), or
* its class shares moved further than ``max_distance`` (total variation)
  and its two histograms fail a chi-square test of homogeneity at three
  standard deviations, or
* its quantiles moved more than ``max_shift`` of its baseline's
  interquartile range.

A window raises the alert when at least ``min_devices`` devices voted and
more than half of them vote drifted: a minority can neither raise an
alert (lies from a few) nor silence one (healthy numbers from a few).
Devices that joined after the baseline window do not vote on this release.

A device's baseline is its canary evaluation of the release when it
made one on that runtime (the candidate's loss and metric on its held-out
examples and, when sent, what it predicted there: the release's canary
numbers, issue 23); otherwise its report in the release's baseline window,
the first window with at least ``min_devices`` devices on that runtime. So
a population that drifts right after a promotion, before any clean window,
is still compared with numbers from before.

The numbers shown for a window are medians over its devices (the metric,
the loss, each class's share renormalised, each quantile), with
``distance`` and ``drop`` of those medians against the reference: the
medians of the canary numbers when there are any, else the baseline
window's.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from fedge.wire.canary import HIGHER_IS_BETTER
from fedge.wire.health import HealthReport, HealthWindow

_TINY = 1e-12


@dataclass(frozen=True)
class Policy:
    window_s: float
    min_devices: int
    margin: float
    max_distance: float
    max_shift: float
    # Which canary evaluations are baselines: those the canary counted
    # (canary_require_history), so enrolling devices after the push buys no vote.
    require_history: bool = True


def judge(
    version: int,
    window: int,
    reports: Mapping[str, HealthReport],
    baseline: HealthWindow | None,
    own: Mapping[str, HealthReport],
    policy: Policy,
    reference: HealthWindow | None = None,
) -> HealthWindow:
    """The judged window of ``reports`` by device id (one runtime, at least
    one); ``own``: each device's baseline report (its canary numbers, or its
    report in the baseline window); ``reference``: the medians of the canary
    numbers, which ``distance`` and ``drop`` are against (else the baseline
    window's). Only the
    reports of the most common kind (metric, and histogram length or
    quantiles) are judged: a few devices naming another metric or class
    count cannot change which numbers are compared."""
    reports = _common_kind(reports)
    listed = list(reports.values())
    first = listed[0]
    distribution = _distribution(listed)
    judged = HealthWindow(
        version=version,
        runtime=first.runtime,
        window=window,
        start=window * policy.window_s,
        metric=first.metric,
        devices=len(listed),
        loss=statistics.median(r.loss for r in listed),
        value=statistics.median(r.value for r in listed),
        distribution=distribution,
        baseline=baseline is None and len(listed) >= policy.min_devices,
        distance=None,
        drop=None,
        voters=0,
        votes=0,
        alert=False,
    )
    compared = reference if reference is not None else baseline
    if compared is None:
        return judged
    distance = _distance(distribution, compared.distribution, first.histogram is not None)
    drop = None
    if compared.metric == judged.metric:
        higher = HIGHER_IS_BETTER[judged.metric]
        drop = compared.value - judged.value if higher else judged.value - compared.value
    pairs = [(now, own[device]) for device, now in reports.items() if device in own]
    votes = sum(drifted(now, then, policy) for now, then in pairs)
    alert = len(pairs) >= policy.min_devices and 2 * votes > len(pairs)
    return replace(
        judged, distance=distance, drop=drop, voters=len(pairs), votes=votes, alert=alert
    )


def _kind(report: HealthReport) -> tuple[str, int]:
    shape = len(report.histogram) if report.histogram is not None else 0
    return report.metric, shape


def _common_kind(reports: Mapping[str, HealthReport]) -> dict[str, HealthReport]:
    counts = Counter(_kind(r) for r in reports.values())
    kind = min(counts, key=lambda k: (-counts[k], k))
    return {device: r for device, r in reports.items() if _kind(r) == kind}


def drifted(now: HealthReport, then: HealthReport, policy: Policy) -> bool:
    """Whether one device's report moved from its baseline report beyond
    the bounds and beyond what the two samples' sizes explain."""
    if now.metric == then.metric:
        higher = HIGHER_IS_BETTER[now.metric]
        drop = then.value - now.value if higher else now.value - then.value
        noise = 0.0
        if now.metric == "accuracy":
            pooled = (now.value * now.num_examples + then.value * then.num_examples) / (
                now.num_examples + then.num_examples
            )
            variance = max(pooled * (1.0 - pooled), 0.01)
            noise = 2.0 * math.sqrt(variance * (1 / now.num_examples + 1 / then.num_examples))
        if drop > policy.margin + noise:
            return True
    if _kind(now) != _kind(then):
        return False
    if now.histogram is not None and then.histogram is not None:
        return _histograms_differ(now.histogram, then.histogram, policy.max_distance)
    if now.quantiles is not None and then.quantiles is not None:
        shift = _distance(now.quantiles, then.quantiles, classes=False)
        return shift is not None and shift > policy.max_shift
    return False


def _histograms_differ(a: tuple[int, ...], b: tuple[int, ...], bound: float) -> bool:
    if len(a) != len(b):
        return False
    na, nb = sum(a), sum(b)
    if 0.5 * sum(abs(x / na - y / nb) for x, y in zip(a, b, strict=True)) <= bound:
        return False
    # Chi-square test of homogeneity of the two histograms (2 x classes).
    total = na + nb
    statistic = 0.0
    used = 0
    for x, y in zip(a, b, strict=True):
        column = x + y
        if column == 0:
            continue
        used += 1
        for observed, row in ((x, na), (y, nb)):
            expected = row * column / total
            statistic += (observed - expected) ** 2 / expected
    freedom = max(used - 1, 1)
    return statistic > freedom + 3.0 * math.sqrt(2.0 * freedom)


def _distribution(reports: Sequence[HealthReport]) -> tuple[float, ...]:
    if reports[0].quantiles is not None:
        rows = [r.quantiles for r in reports if r.quantiles is not None]
        return tuple(statistics.median(column) for column in zip(*rows, strict=True))
    shares = [_shares(r.histogram) for r in reports if r.histogram is not None]
    columns = list(zip(*shares, strict=True))
    middle = [statistics.median(column) for column in columns]
    total = sum(middle)
    if total <= _TINY:  # every class's median share is 0 (tiny, scattered devices)
        middle = [statistics.fmean(column) for column in columns]
        total = sum(middle)
    return tuple(share / total for share in middle)


def _shares(histogram: tuple[int, ...]) -> tuple[float, ...]:
    total = sum(histogram)
    return tuple(count / total for count in histogram)


def _distance(now: tuple[float, ...], base: tuple[float, ...], classes: bool) -> float | None:
    if len(now) != len(base):
        return None
    if classes:  # total variation distance between the class shares
        return 0.5 * sum(abs(a - b) for a, b in zip(now, base, strict=True))
    spread = max(base[3] - base[1], _TINY)  # the baseline's interquartile range
    return max(abs(a - b) for a, b in zip(now, base, strict=True)) / spread
