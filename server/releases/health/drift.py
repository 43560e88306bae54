"""The drift rule: one window's reports against the release's baseline window.

Each device is one vote, whatever it claims to have counted. A device
votes "drifted" when its own numbers are off the baseline by more than
the bound *and* by more than its sample could explain: its metric is
worse than the baseline's by more than ``margin`` plus two standard
errors (accuracy: binomial on its ``num_examples``), or its class counts
are further than ``max_distance`` (total variation) from the baseline's
shares and fail a chi-square check at three standard deviations, or its
quantiles moved more than ``max_shift`` baseline interquartile ranges. A
window raises the alert when at least ``min_devices`` devices reported
and more than half of them vote drifted: a minority can neither raise an
alert (lies from a few) nor silence one (healthy numbers from a few).

The numbers shown for a window are medians over devices (the metric, the
loss, each class's share renormalised, each quantile), with ``distance``
and ``drop`` of those medians against the baseline's. The baseline is the
release's first window with at least ``min_devices`` devices on that
runtime.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from fedge.wire.canary import HIGHER_IS_BETTER
from fedge.wire.health import HealthReport, HealthWindow

_TINY = 1e-12
_FLOOR = 1e-3


@dataclass(frozen=True)
class Policy:
    window_s: float
    min_devices: int
    margin: float
    max_distance: float
    max_shift: float


def judge(
    version: int,
    window: int,
    reports: Sequence[HealthReport],
    baseline: HealthWindow | None,
    policy: Policy,
) -> HealthWindow:
    """The judged window of ``reports`` (one runtime, one metric, at least one report)."""
    first = reports[0]
    distribution = _distribution(reports)
    enough = len(reports) >= policy.min_devices
    judged = HealthWindow(
        version=version,
        runtime=first.runtime,
        window=window,
        start=window * policy.window_s,
        metric=first.metric,
        devices=len(reports),
        loss=statistics.median(r.loss for r in reports),
        value=statistics.median(r.value for r in reports),
        distribution=distribution,
        baseline=baseline is None and enough,
        distance=None,
        drop=None,
        votes=0,
        alert=False,
    )
    if baseline is None:
        return judged
    distance = _distance(distribution, baseline.distribution, first.histogram is not None)
    drop = None
    if baseline.metric == judged.metric:
        higher = HIGHER_IS_BETTER[judged.metric]
        drop = baseline.value - judged.value if higher else judged.value - baseline.value
    votes = sum(_drifted(r, baseline, policy) for r in reports)
    alert = enough and 2 * votes > len(reports)
    return HealthWindow(
        **{**judged.__dict__, "distance": distance, "drop": drop, "votes": votes, "alert": alert},
    )


def _drifted(report: HealthReport, baseline: HealthWindow, policy: Policy) -> bool:
    """Whether this one device's numbers are off the baseline beyond the
    bounds and beyond what its own sample size explains."""
    if report.metric == baseline.metric:
        higher = HIGHER_IS_BETTER[report.metric]
        drop = baseline.value - report.value if higher else report.value - baseline.value
        noise = 0.0
        if report.metric == "accuracy":
            b = min(max(baseline.value, 0.0), 1.0)
            noise = 2.0 * math.sqrt(max(b * (1.0 - b), 0.01) / report.num_examples)
        if drop > policy.margin + noise:
            return True
    if report.histogram is not None:
        return _histogram_drifted(report.histogram, baseline.distribution, policy.max_distance)
    if report.quantiles is not None:
        shift = _distance(report.quantiles, baseline.distribution, classes=False)
        return shift is not None and shift > policy.max_shift
    return False


def _histogram_drifted(counts: tuple[int, ...], base: tuple[float, ...], bound: float) -> bool:
    if len(counts) != len(base):
        return False
    shares = _shares(counts)
    if 0.5 * sum(abs(a - b) for a, b in zip(shares, base, strict=True)) <= bound:
        return False
    n = sum(counts)
    # Chi-square against the baseline's shares (floored: a class the baseline
    # never predicted must not make one prediction of it infinitely odd).
    expected = [max(b, _FLOOR) for b in base]
    total = sum(expected)
    statistic = sum(
        (c - n * e / total) ** 2 / (n * e / total) for c, e in zip(counts, expected, strict=True)
    )
    freedom = len(counts) - 1
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
