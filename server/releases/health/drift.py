"""The drift rule: one window's reports against the release's baseline window.

Each device is one vote, whatever it claims to have counted: its histogram
becomes shares of its own predictions, and the window's numbers are
medians over the devices (the metric, the loss, each class's share, each
quantile). A median moves past the honest devices' range only when half
of the devices lie, so a minority can neither raise an alert (drifted
numbers from a few) nor silence one (healthy numbers from a few).

The baseline is the release's first window with at least ``min_devices``
devices on that runtime. A later window with as many devices raises an
alert when its metric is worse than the baseline's by more than
``margin`` (in the metric's units) or its prediction distribution is
further than ``max_distance`` (total variation between class shares) or
``max_shift`` (the largest quantile move, in the baseline's interquartile
ranges) from the baseline's.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

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
        alert=False,
    )
    if baseline is None:
        return judged
    distance = _distance(distribution, baseline.distribution, first.histogram is not None)
    drop = None
    if baseline.metric == judged.metric:
        higher = HIGHER_IS_BETTER[judged.metric]
        drop = baseline.value - judged.value if higher else judged.value - baseline.value
    bound = policy.max_distance if first.histogram is not None else policy.max_shift
    alert = enough and (
        (drop is not None and drop > policy.margin) or (distance is not None and distance > bound)
    )
    return HealthWindow(
        **{**judged.__dict__, "distance": distance, "drop": drop, "alert": alert},
    )


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
