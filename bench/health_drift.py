"""The live-model drift rule under lying minorities: how often the alert is wrong.

Simulated windows of 20 devices, each with 10 to 40 labelled digits drawn
at random: a stable population (accuracy 0.9, predictions spread over the
10 classes as in the baseline) and a drifted one (accuracy 0.4, half the
predictions on one class). Some devices lie: in the stable window they
claim the worst (everything one class, accuracy 0) to raise a false
alert; in the drifted one they copy the baseline to silence the alert.
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
UNIFORM = np.full(10, 0.1)
SKEWED = np.array([0.05, 0.5, 0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.05, 0.05])
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
    """The old rule: the medians' drop or distance past the bounds."""
    return made.devices >= POLICY.min_devices and (
        (made.drop is not None and made.drop > POLICY.margin)
        or (made.distance is not None and made.distance > POLICY.max_distance)
    )


def run(liars: int, seeds: int) -> tuple[float, float, float, float]:
    false_vote = missed_vote = false_median = missed_median = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        base = judge(1, 0, [device(rng, UNIFORM, 0.9) for _ in range(DEVICES)], None, POLICY)
        worst = HealthReport(
            "accuracy", 1e9, 0.0, 10_000_000, "tflite", (10_000_000,) + (0,) * 9, None
        )
        stable = [device(rng, UNIFORM, 0.9) for _ in range(DEVICES - liars)] + [worst] * liars
        made = judge(1, 1, stable, base, POLICY)
        false_vote += made.alert
        false_median += by_medians(made)
        mimic = tuple(round(s * 30) for s in base.distribution)
        copy = HealthReport("accuracy", 0.1, 1.0, 30, "tflite", mimic, None)
        drifted = [device(rng, SKEWED, 0.4) for _ in range(DEVICES - liars)] + [copy] * liars
        made = judge(1, 2, drifted, base, POLICY)
        missed_vote += not made.alert
        missed_median += not by_medians(made)
    return (
        false_vote / seeds,
        missed_vote / seeds,
        false_median / seeds,
        missed_median / seeds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=400)
    options = parser.parse_args()
    print(f"drift rule, {DEVICES} devices per window, {options.seeds} seeds")
    print(
        "| liars | false alert (vote) | missed (vote) | false alert (medians) | missed (medians) |"
    )
    print("|---|---|---|---|---|")
    for liars in (0, 2, 4, 6, 7, 8, 9):
        fv, mv, fm, mm = run(liars, options.seeds)
        print(f"| {liars}/{DEVICES} | {fv:.1%} | {mv:.1%} | {fm:.1%} | {mm:.1%} |")


if __name__ == "__main__":
    main()
