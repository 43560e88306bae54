"""The canary's decision rule as pure functions: its error rates under
optional stopping, the share of lying devices it tolerates, and its limits.

Simulated devices report paired differences (candidate minus live) around
a known truth; the test looks after every report from the 5th, as the
server does. 400 canaries per case, so a 5 % error rate is measured to
about +-1 %; the bounds asserted leave room for that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError
from fedge.server.releases.canary.decision import COLLECTING, Policy, decide
from fedge.server.releases.canary.sequential import evidence, first_decision

MARGIN, BOUND, ALPHA, BETA = 0.05, 0.25, 0.05, 0.05
RUNS, REPORTS = 400, 400
POLICY = Policy(
    min_reports=5,
    margin=MARGIN,
    alpha=ALPHA,
    beta=BETA,
    bound=BOUND,
    max_reports=1000,
    max_s=3600.0,
    default="rollback",
    max_percent=50.0,
)


def outcomes(truth: float, liars: float, lie: float, seed: int) -> dict[str | None, float]:
    """The share of canaries promoted, rolled back, or undecided (None)."""
    rng = np.random.default_rng(seed)
    counts: dict[str | None, float] = {"promote": 0, "rollback": 0, None: 0}
    for _ in range(RUNS):
        honest = rng.normal(truth, 0.08, REPORTS)  # 5-50 examples: sd about 0.05-0.1
        differences = np.where(rng.random(REPORTS) < liars, lie, honest)
        decision, _ = first_decision(differences.tolist(), MARGIN, BOUND, ALPHA, BETA, floor=5)
        counts[decision] += 1 / RUNS
    return counts


def test_a_candidate_worse_by_the_margin_is_rarely_promoted() -> None:
    assert outcomes(-MARGIN, 0.0, 0.0, seed=1)["promote"] <= ALPHA


def test_an_equal_candidate_is_rarely_rolled_back() -> None:
    assert outcomes(0.0, 0.0, 0.0, seed=2)["rollback"] <= BETA


def test_clear_candidates_are_decided() -> None:
    assert outcomes(-2 * MARGIN, 0.0, 0.0, seed=3)["rollback"] >= 0.99
    assert outcomes(MARGIN, 0.0, 0.0, seed=4)["promote"] >= 0.99


def test_the_tolerated_share_of_liars_cannot_flip_a_clear_decision() -> None:
    share = POLICY.tolerated_liars  # margin / (2 * bound)
    assert share == pytest.approx(0.10)

    # Liars at the bound push for the wrong outcome: the mean moves by at
    # most 2 * bound * share = the margin, so a candidate twice the margin
    # worse still looks worse by the margin, one better by the margin no worse.
    pushed_up = outcomes(-2 * MARGIN, share, +BOUND, seed=5)
    pushed_down = outcomes(MARGIN, share, -BOUND, seed=6)

    assert pushed_up["promote"] <= ALPHA
    assert pushed_down["rollback"] <= BETA


def test_past_the_tolerated_share_liars_do_flip_it() -> None:
    """The tolerance is a real limit: four times as many liars win."""
    assert outcomes(-2 * MARGIN, 0.4, +BOUND, seed=7)["promote"] >= 0.5


def test_every_device_weighs_the_same_whatever_it_claims() -> None:
    # The rule sees differences only: no example count enters it.
    found = evidence([-0.2] * 9 + [0.25], MARGIN, BOUND, ALPHA, BETA)
    assert found.estimate == pytest.approx((-1.8 + 0.25) / 10)


def test_no_decision_below_the_floor_of_devices() -> None:
    strong = evidence([-0.25] * 4, MARGIN, BOUND, ALPHA, BETA)
    verdict = decide(strong, POLICY, age_s=0.0)
    assert verdict.outcome == COLLECTING
    assert "4 of at least 5 devices" in verdict.reason


def test_a_limit_ends_a_canary_with_the_default() -> None:
    weak = evidence([0.01, -0.01] * 5, MARGIN, BOUND, ALPHA, BETA)

    collecting = decide(weak, POLICY, age_s=10.0)
    by_time = decide(weak, POLICY, age_s=3600.0)
    by_reports = decide(weak, Policy(**{**POLICY.__dict__, "max_reports": 10}), age_s=0.0)
    promoting = decide(weak, Policy(**{**POLICY.__dict__, "default": "promote"}), age_s=4000.0)

    assert collecting.outcome == COLLECTING
    assert by_time.outcome == by_reports.outcome == "rollback"
    assert by_time.reason.startswith("limit: ") and "canary_max_s" in by_time.reason
    assert "canary_max_reports" in by_reports.reason
    assert promoting.outcome == "promote"


def test_the_interval_holds_the_estimate_and_narrows() -> None:
    rng = np.random.default_rng(8)
    differences = rng.normal(0.02, 0.05, 200).tolist()

    early = evidence(differences[:20], MARGIN, BOUND, ALPHA, BETA)
    late = evidence(differences, MARGIN, BOUND, ALPHA, BETA)

    for found in (early, late):
        assert found.lower is not None and found.upper is not None
        assert found.lower <= (found.estimate or 0) <= found.upper
    assert (late.upper or 0) - (late.lower or 0) < (early.upper or 0) - (early.lower or 0)
    assert (late.lower or 0) < 0.02 < (late.upper or 0)


@pytest.mark.parametrize(
    "settings",
    [
        {"canary_margin": 0.0},
        {"canary_margin": 0.3},  # not below the bound 0.25
        {"canary_alpha": 0.0},
        {"canary_beta": 1.0},
        {"canary_difference_bound": -1.0},
        {"canary_default": "coin toss"},
        {"canary_max_percent": 0.0},
        {"canary_max_s": float("inf")},
        {"canary_min_reports": 10, "canary_max_reports": 5},
        {"canary_require_history": "maybe"},
    ],
)
def test_bad_canary_settings_are_refused(settings: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="canary_"):
        load_config(overrides={"data_dir": tmp_path, **settings})


def test_the_canary_settings_come_from_the_environment(tmp_path: Path) -> None:
    environ = {"FEDGE_CANARY_ALPHA": "0.01", "FEDGE_CANARY_REQUIRE_HISTORY": "false"}

    config = load_config(environ=environ, overrides={"data_dir": tmp_path})

    assert (config.canary_alpha, config.canary_require_history) == (0.01, False)
    assert (config.canary_margin, config.canary_difference_bound) == (0.05, 0.25)
