"""Privacy accounting, checked against the exact Gaussian mechanism.

Without sampling (``sample_rate=1``), ``T`` rounds of a Gaussian mechanism
with noise multiplier ``z`` are exactly one Gaussian mechanism with
``z / sqrt(T)``, whose (epsilon, delta) curve has a closed form (Balle and
Wang 2018, Theorem 8). The test computes it here, independently of
dp_accounting: RDP must be an upper bound close to it, PLD nearly equal.
"""

from __future__ import annotations

import math

import pytest

from fedge.errors import ConfigError
from fedge.server.aggregation.privacy import PrivacyLedger, epsilon

# dp_accounting's PLD accountant calls scipy.stats, which calls a NumPy 1.25
# deprecated function (scipy is not in pyproject's third-party warning list).
scipy_deprecation = pytest.mark.filterwarnings(
    "ignore:np.find_common_type is deprecated:DeprecationWarning"
)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def exact_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Smallest epsilon with delta(epsilon) <= delta for a sensitivity-1
    Gaussian mechanism of std sigma, by bisection on the closed form
    delta(eps) = Phi(1/(2s) - eps*s) - exp(eps) * Phi(-1/(2s) - eps*s)."""

    def delta_of(eps: float) -> float:
        return _phi(1 / (2 * sigma) - eps * sigma) - math.exp(eps) * _phi(
            -1 / (2 * sigma) - eps * sigma
        )

    low, high = 0.0, 100.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if delta_of(middle) > delta else (low, middle)
    return high


def test_epsilon_falls_with_more_noise_and_grows_with_more_rounds() -> None:
    by_noise = [epsilon(z, 0.01, 100, 1e-5) for z in (0.8, 1.0, 2.0)]
    by_rounds = [epsilon(1.0, 0.01, t, 1e-5) for t in (10, 100, 1000)]

    assert by_noise[0] > by_noise[1] > by_noise[2] > 0
    assert 0 < by_rounds[0] < by_rounds[1] < by_rounds[2]


@scipy_deprecation
@pytest.mark.parametrize(("noise", "rounds"), [(1.0, 1), (2.0, 4), (5.0, 100)])
def test_unsampled_rounds_match_the_exact_gaussian_mechanism(noise: float, rounds: int) -> None:
    exact = exact_gaussian_epsilon(noise / math.sqrt(rounds), 1e-5)  # 4.377 for (1.0, 1)

    rdp = epsilon(noise, 1.0, rounds, 1e-5)
    pld = epsilon(noise, 1.0, rounds, 1e-5, accountant="pld")

    assert exact <= rdp <= 1.15 * exact
    assert pld == pytest.approx(exact, rel=1e-3)


@scipy_deprecation
def test_sampled_rounds_rdp_bounds_pld_within_a_loose_factor() -> None:
    rdp = epsilon(1.0, 0.01, 1000, 1e-5)  # about 2.10
    pld = epsilon(1.0, 0.01, 1000, 1e-5, accountant="pld")  # about 1.83

    assert pld <= rdp <= 1.5 * pld
    assert 1.0 < pld < 3.0


def test_ledger_reports_epsilon_after_each_round_and_resumes() -> None:
    ledger = PrivacyLedger(noise_multiplier=1.0, sample_rate=0.05, delta=1e-5)

    spent = [ledger.record_round() for _ in range(3)]
    resumed = PrivacyLedger(noise_multiplier=1.0, sample_rate=0.05, delta=1e-5, rounds=3)

    assert spent == pytest.approx([epsilon(1.0, 0.05, t, 1e-5) for t in (1, 2, 3)])
    assert spent[0] < spent[1] < spent[2]
    assert ledger.rounds == 3
    assert resumed.epsilon == pytest.approx(spent[-1])


def test_no_rounds_spend_nothing_and_no_noise_spends_everything() -> None:
    assert epsilon(1.0, 0.1, 0, 1e-5) == 0.0
    assert PrivacyLedger(1.0, 0.1, 1e-5).epsilon == 0.0
    assert epsilon(0.0, 0.1, 5, 1e-5) == math.inf
    assert PrivacyLedger(0.0, 0.1, 1e-5).record_round() == math.inf


@pytest.mark.parametrize(
    ("noise", "rate", "rounds", "delta", "message"),
    [
        (-1.0, 0.1, 1, 1e-5, "noise_multiplier"),
        (1.0, 0.0, 1, 1e-5, "sample_rate"),
        (1.0, 1.5, 1, 1e-5, "sample_rate"),
        (1.0, 0.1, -1, 1e-5, "rounds"),
        (1.0, 0.1, 1, 1.0, "delta"),
    ],
)
def test_bad_parameters_are_config_errors(
    noise: float, rate: float, rounds: int, delta: float, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        epsilon(noise, rate, rounds, delta)
