"""The live-model drift rule under lying minorities: how often the alert is wrong.

Simulated windows of 20 devices, each with its own label shares
(Dirichlet ``--alpha``, as the simulator partitions the digits) and 10 to
40 labelled examples a window: a stable population (accuracy 0.9, fresh
draws from each device's shares) and a drifted one (accuracy 0.4, half
of each device's predictions moved onto one class). Some devices lie: in
the stable window they claim the worst (everything one class, accuracy
0) to raise a false alert; in the drifted one they repeat their own
baseline report to silence it.
The table gives, per number of liars, how often the alert was raised on
the stable population and missed on the drifted one, over ``--seeds``
seeds, for the vote rule the server uses (:mod:`fedge.server.releases.health.drift`)
and for plain medians over devices (the rule it replaced) side by side.

    .venv/bin/python -m bench.health_drift --seeds 400
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from fedge.server.releases.health.drift import Policy, judge
from fedge.wire.health import HealthReport, HealthWindow

POLICY = Policy(window_s=60.0, min_devices=5, margin=0.05, max_distance=0.2, max_shift=1.0)
DEVICES = 20
ONE_CLASS = np.eye(10)[1]
WORST = HealthReport("accuracy", 1e9, 0.0, 10_000_000, "tflite", (10_000_000,) + (0,) * 9, None)
Shares = np.ndarray[Any, np.dtype[np.float64]]


def device(rng: np.random.Generator, shares: Shares, accuracy: float) -> HealthReport:
    examples = int(rng.integers(10, 40))
    correct = int(rng.binomial(examples, accuracy))
    histogram = tuple(int(c) for c in rng.multinomial(examples, shares))
    return HealthReport(
        "accuracy",
        1.0 - correct / examples,
        correct / examples,
        examples,
        "tflite",
        histogram,
        None,
    )


def by_medians(made: HealthWindow) -> bool:
    """The first rule: the window medians' drop or distance past the bounds."""
    return made.devices >= POLICY.min_devices and (
        (made.drop is not None and made.drop > POLICY.margin)
        or (made.distance is not None and made.distance > POLICY.max_distance)
    )


def window(
    rng: np.random.Generator,
    shares: list[Shares],
    drifted: bool,
    liars: dict[str, HealthReport],
) -> dict[str, HealthReport]:
    reports = {
        f"d{i}": device(rng, 0.5 * s + 0.5 * ONE_CLASS, 0.4) if drifted else device(rng, s, 0.9)
        for i, s in enumerate(shares)
    }
    return {**reports, **liars}


def run(liars: int, seeds: int, alpha: float) -> tuple[float, float, float, float]:
    false_vote = missed_vote = false_median = missed_median = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        shares = [rng.dirichlet(np.full(10, alpha)) for _ in range(DEVICES)]
        own = {f"d{i}": device(rng, s, 0.9) for i, s in enumerate(shares)}
        base = judge(1, 0, own, None, {}, POLICY)
        lying = {f"d{i}": WORST for i in range(liars)}
        made = judge(1, 1, window(rng, shares, False, lying), base, own, POLICY)
        false_vote += made.alert
        false_median += by_medians(made)
        copying = {f"d{i}": own[f"d{i}"] for i in range(liars)}
        made = judge(1, 2, window(rng, shares, True, copying), base, own, POLICY)
        missed_vote += not made.alert
        missed_median += not by_medians(made)
    return (false_vote / seeds, missed_vote / seeds, false_median / seeds, missed_median / seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet: label skew per device")
    options = parser.parse_args()
    print(f"drift rule, {DEVICES} devices per window, alpha {options.alpha}, {options.seeds} seeds")
    print(
        "| liars | false alert (vote) | missed (vote) | false alert (medians) | missed (medians) |"
    )
    print("|---|---|---|---|---|")
    for liars in (0, 2, 4, 6, 7, 8, 9):
        fv, mv, fm, mm = run(liars, options.seeds, options.alpha)
        print(f"| {liars}/{DEVICES} | {fv:.1%} | {mv:.1%} | {fm:.1%} | {mm:.1%} |")


if __name__ == "__main__":
    main()
