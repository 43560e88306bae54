"""The drift rule on its own: numbers in, a judged window out (no server).

Devices draw their labelled examples at random (several seeds): a stable
population never raises the alert, a drifted one always does, and a
lying minority (7 of 20 devices) can neither raise nor silence it,
because each device is one vote and the alert needs a majority. (Not
silencing it needs a drift the honest devices see on their own samples:
here accuracy 0.9 -> 0.4 and half the predictions on one class.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedge.server.releases.health.drift import Policy, judge
from fedge.wire.health import HealthReport, HealthWindow

Shares = np.ndarray[Any, np.dtype[np.float64]]
POLICY = Policy(window_s=60.0, min_devices=5, margin=0.05, max_distance=0.2, max_shift=1.0)
UNIFORM = np.full(10, 0.1)
# A new handwriting style: the model now calls most digits a 1 and is often wrong.
SKEWED = np.array([0.05, 0.5, 0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.05, 0.05])
DRIFTED_ACCURACY = 0.4
SEEDS = range(8)
LIARS = 7


def device(rng: np.random.Generator, shares: Shares, accuracy: float) -> HealthReport:
    examples = int(rng.integers(10, 40))
    histogram = rng.multinomial(examples, shares)
    correct = rng.binomial(examples, accuracy)
    return HealthReport(
        metric="accuracy",
        loss=float(1.0 - correct / examples),
        value=correct / examples,
        num_examples=examples,
        runtime="tflite",
        histogram=tuple(int(c) for c in histogram),
        quantiles=None,
    )


def population(
    rng: np.random.Generator, honest: int, shares: Shares, accuracy: float
) -> list[HealthReport]:
    return [device(rng, shares, accuracy) for _ in range(honest)]


def baseline_of(rng: np.random.Generator) -> HealthWindow:
    made = judge(1, 0, population(rng, 20, UNIFORM, 0.9), None, POLICY)
    assert made.baseline and not made.alert
    return made


@pytest.mark.parametrize("seed", SEEDS)
def test_a_stable_population_raises_nothing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = baseline_of(rng)

    windows = [judge(1, w, population(rng, 20, UNIFORM, 0.9), base, POLICY) for w in (1, 2, 3)]

    assert [w.alert for w in windows] == [False, False, False]
    assert all(w.distance is not None and w.distance < POLICY.max_distance for w in windows)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_drifted_population_raises_the_alert(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = baseline_of(rng)

    made = judge(1, 1, population(rng, 20, SKEWED, DRIFTED_ACCURACY), base, POLICY)

    assert made.alert
    assert made.drop is not None and made.drop > 0.3
    assert made.distance is not None and made.distance > POLICY.max_distance


@pytest.mark.parametrize("seed", SEEDS)
def test_a_lying_minority_cannot_raise_the_alert(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = baseline_of(rng)
    # 7 of 20 devices claim the worst: everything predicted as one class, accuracy 0.
    liars = [
        HealthReport("accuracy", 1e9, 0.0, 10_000_000, "tflite", (10_000_000,) + (0,) * 9, None)
    ] * LIARS

    made = judge(1, 1, population(rng, 20 - LIARS, UNIFORM, 0.9) + liars, base, POLICY)

    assert not made.alert


@pytest.mark.parametrize("seed", SEEDS)
def test_a_lying_minority_cannot_silence_the_alert(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = baseline_of(rng)
    # 7 of 20 devices copy the baseline's own numbers exactly.
    mimic = tuple(round(share * 30) for share in base.distribution)
    liars = [HealthReport("accuracy", 0.1, 1.0, 30, "tflite", mimic, None)] * LIARS

    made = judge(1, 1, population(rng, 20 - LIARS, SKEWED, DRIFTED_ACCURACY) + liars, base, POLICY)

    assert made.alert


def test_too_few_devices_judge_nothing() -> None:
    rng = np.random.default_rng(0)
    base = baseline_of(rng)

    made = judge(1, 1, population(rng, 4, SKEWED, 0.1), base, POLICY)
    first = judge(1, 0, population(rng, 4, UNIFORM, 0.9), None, POLICY)

    assert not made.alert and made.distance is not None and made.distance > 0.2
    assert not first.baseline


def test_a_regressor_is_judged_by_its_quantiles_in_interquartile_ranges() -> None:
    def regressor(quantiles: tuple[float, ...]) -> HealthReport:
        return HealthReport("mae", 0.5, 0.5, 20, "tflite", None, quantiles)

    base = judge(1, 0, [regressor((0.0, 1.0, 2.0, 3.0, 4.0))] * 5, None, POLICY)
    # The median moved by 3 (1.5 interquartile ranges of 2); the MAE is the same.
    moved = judge(1, 1, [regressor((0.0, 1.0, 5.0, 3.0 + 2, 6.0))] * 5, base, POLICY)
    near = judge(1, 2, [regressor((0.0, 1.0, 3.0, 3.0, 4.0))] * 5, base, POLICY)

    assert moved.distance == pytest.approx(1.5) and moved.alert
    assert near.distance == pytest.approx(0.5) and not near.alert
    assert moved.drop == 0.0
