"""A sequential test on the mean of the devices' paired differences.

Each counted device gives one number: the candidate's metric minus the
live release's, measured on the same held-out examples of that device, the
sign turned so that positive means the candidate is better, and clipped to
``[-bound, bound]``. Their population mean ``mu`` is what is tested; every
device weighs the same, whatever it claims about its example count.

Why a betting test (Waudby-Smith and Ramdas, "Estimating means of bounded
random variables by betting", JRSS-B 2024): the server looks after every
report and may stop at any one of them, so a fixed-n t-test or z-test
would overstate its confidence (peeking inflates the error rate several
times). For a null ``mu <= m`` a bettor starts with capital 1 and stakes a
fraction ``lam_i`` of it on each new difference being above ``m``:
``K_n = prod(1 + lam_i * (x_i - m))``. Under the null ``K_n`` is a
nonnegative supermartingale, so by Ville's inequality it ever reaches
``1/alpha`` with probability at most ``alpha``: the error rate holds under
optional stopping, whenever the server looks. The stakes are chosen
before each report is seen (predictable), by the growth-rate-adaptive
plug-in (aGRAPA) from the reports before it, so low-noise differences give
a decision after few reports and noisy ones wait. Unlike a Hoeffding
bound, the test adapts to the variance of the differences, which on
paired evaluations is far below the bound.

Two one-sided tests make the three outcomes (``margin`` = delta > 0):

    promote   once  K(mu <= -delta) >= 1/alpha   (not worse by the margin)
    roll back once  K(mu >= 0)      >= 1/beta    (worse than live)
    otherwise keep collecting

A candidate worse by the margin is promoted with probability <= alpha, an
equal (or better) one rolled back with probability <= beta. The interval
shown is the confidence sequence the same bets give (the values of ``m``
neither test rejects), on a grid.

Liars: with differences clipped to ``[-B, B]``, ``k`` liars among ``n``
devices move the mean by at most ``2 * B * k / n``. Keeping that below the
margin, ``k / n < delta / (2 * B)`` (10 % with the defaults 0.05 and 0.25),
a candidate worse by twice the margin still looks worse by the margin and
is not promoted, and one better by the margin still looks no worse than
live and is not rolled back (tests/server/releases/test_canary_rule.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# A stake is at most this share of what keeps the capital positive (0.8:
# strong evidence decides in a few reports; any share below 1 keeps the test valid).
MAX_STAKE = 0.8
# The grid the interval is read from, across [-bound, bound].
GRID = 401


@dataclass(frozen=True)
class Evidence:
    """What the differences show so far. ``promote_e`` and ``rollback_e``:
    the bettors' capital (e-values) against "worse by the margin" and
    against "not worse"; each test decides at its threshold."""

    devices: int
    estimate: float | None  # the mean clipped difference (positive: candidate better)
    lower: float | None
    upper: float | None
    promote_e: float
    rollback_e: float
    promote_threshold: float
    rollback_threshold: float

    @property
    def promote(self) -> bool:
        return self.promote_e >= self.promote_threshold

    @property
    def rollback(self) -> bool:
        return self.rollback_e >= self.rollback_threshold


def signed_difference(candidate: float, baseline: float, higher_is_better: bool) -> float:
    """Positive when the candidate is better, in the metric's units."""
    return candidate - baseline if higher_is_better else baseline - candidate


def evidence(
    differences: Sequence[float], margin: float, bound: float, alpha: float, beta: float
) -> Evidence:
    """The two tests on ``differences`` (in the order they came) and the interval."""
    x = np.clip(np.asarray(differences, dtype=np.float64), -bound, bound)
    n = int(x.size)
    null_promote = -min(margin, 0.999 * bound)
    promote_e = float(np.exp(log_capital(x, np.array([null_promote]), +1, bound)[0]))
    rollback_e = float(np.exp(log_capital(x, np.array([0.0]), -1, bound)[0]))
    if n == 0:
        return Evidence(0, None, None, None, 1.0, 1.0, 1 / alpha, 1 / beta)
    grid = np.linspace(-bound, bound, GRID)[1:-1]
    above = log_capital(x, grid, +1, bound) >= math.log(1 / alpha)  # mu <= m rejected
    below = log_capital(x, grid, -1, bound) >= math.log(1 / beta)  # mu >= m rejected
    lower = float(grid[above].max()) if above.any() else -bound
    upper = float(grid[below].min()) if below.any() else bound
    return Evidence(
        devices=n,
        estimate=float(x.mean()),
        lower=lower,
        upper=max(upper, lower),
        promote_e=promote_e,
        rollback_e=rollback_e,
        promote_threshold=1 / alpha,
        rollback_threshold=1 / beta,
    )


def log_gains(
    x: npt.NDArray[np.float64], nulls: npt.NDArray[np.float64], side: int, bound: float
) -> npt.NDArray[np.float64]:
    """log(1 + lam_i * y_i) per report (columns) and null (rows): side +1 bets against
    ``mu <= m`` (wins when the values are above m), -1 against ``mu >= m``.

    Gains ``y_i = side * (x_i - m)`` are at least ``-(bound + side * m)``;
    the stake stays below the inverse of that, so the capital stays
    positive. Vectorised: one row per null."""
    m = nulls[:, None]
    y = side * (x[None, :] - m)
    floor = bound + side * nulls[:, None]  # the largest possible loss per unit stake
    n = x.size
    if n == 0:
        return np.zeros((nulls.size, 0))
    # Running moments of the gains before each report (a prior of one
    # pseudo-gain at 0 with variance (bound / 2)^2 keeps the first stakes small).
    counts = np.arange(n, dtype=np.float64) + 1.0
    previous = np.concatenate([np.zeros((nulls.size, 1)), np.cumsum(y, axis=1)[:, :-1]], axis=1)
    mean = previous / counts
    squares = np.concatenate([np.zeros((nulls.size, 1)), np.cumsum(y * y, axis=1)[:, :-1]], axis=1)
    variance = (bound**2 / 4 + squares) / counts - mean**2
    variance = np.maximum(variance, 1e-12)
    stake = np.clip(mean / (variance + mean**2), 0.0, MAX_STAKE / floor)
    result: npt.NDArray[np.float64] = np.log1p(stake * y)
    return result


def log_capital(
    x: npt.NDArray[np.float64], nulls: npt.NDArray[np.float64], side: int, bound: float
) -> npt.NDArray[np.float64]:
    """log K_n for each null mean in ``nulls`` after all of ``x``."""
    result: npt.NDArray[np.float64] = log_gains(x, nulls, side, bound).sum(axis=1)
    return result


def first_decision(
    differences: Sequence[float],
    margin: float,
    bound: float,
    alpha: float,
    beta: float,
    floor: int = 1,
) -> tuple[str | None, int]:
    """Where the test, looking after every report from the ``floor``-th on,
    first decides: (``promote``, ``rollback`` or None, the number of reports
    then). For benchmarks and tests; the server calls :func:`evidence` per report."""
    x = np.clip(np.asarray(differences, dtype=np.float64), -bound, bound)
    null = np.array([-min(margin, 0.999 * bound)])
    up = np.cumsum(log_gains(x, null, +1, bound)[0]) >= math.log(1 / alpha)
    down = np.cumsum(log_gains(x, np.array([0.0]), -1, bound)[0]) >= math.log(1 / beta)
    for n in range(max(floor, 1) - 1, x.size):
        if up[n] != down[n]:
            return ("promote" if up[n] else "rollback"), n + 1
    return None, int(x.size)
