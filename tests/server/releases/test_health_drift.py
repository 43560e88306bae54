"""The drift rule on its own: numbers in, a judged window out (no server).

A non-IID population (each device's labels drawn from its own Dirichlet
shares, as the simulator partitions the digits) of 20 devices with 10 to
40 labelled examples a window, several seeds: a stable population never
raises the alert, a drifted one always does (accuracy 0.9 -> 0.4, half
the predictions on one class), and a lying minority (7 of 20) can neither
raise it (claiming the worst) nor silence it (repeating its own baseline
report), because each device is one vote, compared with its own baseline
report, and the alert needs a majority.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedge.server.releases.health.drift import Policy, judge
from fedge.wire.health import HealthReport, HealthWindow

Shares = np.ndarray[Any, np.dtype[np.float64]]
POLICY = Policy(window_s=60.0, min_devices=5, margin=0.05, max_distance=0.2, max_shift=1.0)
DEVICES = 20
LIARS = 7
SEEDS = range(8)
ONE_CLASS = np.eye(10)[1]
WORST = HealthReport("accuracy", 1e9, 0.0, 10_000_000, "tflite", (10_000_000,) + (0,) * 9, None)


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


class Fleet:
    """Devices with their own label shares, and their baseline window."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.shares = [self.rng.dirichlet(np.full(10, 0.5)) for _ in range(DEVICES)]
        self.own = {f"d{i}": device(self.rng, s, 0.9) for i, s in enumerate(self.shares)}
        self.baseline = judge(1, 0, self.own, None, {}, POLICY)
        assert self.baseline.baseline and not self.baseline.alert

    def window(self, drifted: bool, liars: dict[str, HealthReport] | None = None) -> HealthWindow:
        reports = {}
        for i, shares in enumerate(self.shares):
            if drifted:
                reports[f"d{i}"] = device(self.rng, 0.5 * shares + 0.5 * ONE_CLASS, 0.4)
            else:
                reports[f"d{i}"] = device(self.rng, shares, 0.9)
        reports.update(liars or {})
        return judge(1, 1, reports, self.baseline, self.own, POLICY)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_stable_non_iid_population_raises_nothing(seed: int) -> None:
    fleet = Fleet(seed)

    windows = [fleet.window(drifted=False) for _ in range(3)]

    assert [w.alert for w in windows] == [False, False, False]
    assert all(w.voters == DEVICES and w.votes <= 3 for w in windows)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_drifted_population_raises_the_alert(seed: int) -> None:
    fleet = Fleet(seed)

    made = fleet.window(drifted=True)

    assert made.alert and made.votes > DEVICES // 2
    assert made.drop is not None and made.drop > 0.3


@pytest.mark.parametrize("seed", SEEDS)
def test_a_lying_minority_cannot_raise_the_alert(seed: int) -> None:
    fleet = Fleet(seed)
    liars = {f"d{i}": WORST for i in range(LIARS)}

    made = fleet.window(drifted=False, liars=liars)

    assert not made.alert and made.votes >= LIARS


@pytest.mark.parametrize("seed", SEEDS)
def test_a_lying_minority_cannot_silence_the_alert(seed: int) -> None:
    fleet = Fleet(seed)
    liars = {f"d{i}": fleet.own[f"d{i}"] for i in range(LIARS)}

    made = fleet.window(drifted=True, liars=liars)

    assert made.alert


def test_devices_without_a_baseline_report_do_not_vote() -> None:
    fleet = Fleet(0)
    newcomers = {f"new{i}": WORST for i in range(30)}

    made = judge(1, 1, newcomers, fleet.baseline, fleet.own, POLICY)

    assert (made.devices, made.voters, made.votes, made.alert) == (30, 0, 0, False)


def test_too_few_voters_judge_nothing() -> None:
    fleet = Fleet(0)
    few = {f"d{i}": WORST for i in range(4)}

    made = judge(1, 1, few, fleet.baseline, fleet.own, POLICY)
    first = judge(1, 0, dict(list(fleet.own.items())[:4]), None, {}, POLICY)

    assert (made.voters, made.votes, made.alert) == (4, 4, False)
    assert not first.baseline


def test_a_regressor_is_judged_by_its_quantiles_in_interquartile_ranges() -> None:
    def regressor(quantiles: tuple[float, ...]) -> HealthReport:
        return HealthReport("mae", 0.5, 0.5, 20, "tflite", None, quantiles)

    own = {f"d{i}": regressor((0.0, 1.0, 2.0, 3.0, 4.0)) for i in range(5)}
    base = judge(1, 0, own, None, {}, POLICY)
    # The median moved by 3 (1.5 interquartile ranges of 2); the MAE is the same.
    moved = judge(1, 1, dict.fromkeys(own, regressor((0.0, 1.0, 5.0, 5.0, 6.0))), base, own, POLICY)
    near = judge(1, 2, dict.fromkeys(own, regressor((0.0, 1.0, 3.0, 3.0, 4.0))), base, own, POLICY)

    assert moved.distance == pytest.approx(1.5) and moved.alert and moved.votes == 5
    assert near.distance == pytest.approx(0.5) and not near.alert and near.votes == 0
    assert moved.drop == 0.0


def test_reports_of_another_kind_are_left_out_not_a_crash() -> None:
    # A release whose class count the server cannot read from its bundle:
    # a few devices send 3 classes, or quantiles, beside the 10-class majority.
    fleet = Fleet(0)
    odd = {
        "odd1": HealthReport("accuracy", 0.1, 0.9, 9, "tflite", (3, 3, 3), None),
        "odd2": HealthReport("mae", 0.1, 0.1, 9, "tflite", None, (0.0, 1.0, 2.0, 3.0, 4.0)),
        "d0": HealthReport("accuracy", 0.1, 0.9, 9, "tflite", (3, 3, 3), None),
    }

    made = judge(1, 1, {**fleet.own, **odd}, fleet.baseline, fleet.own, POLICY)

    assert (made.devices, made.voters, made.votes, made.alert) == (
        DEVICES - 1,
        DEVICES - 1,
        0,
        False,
    )
    assert len(made.distribution) == 10
