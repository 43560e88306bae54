"""How much privacy central DP has spent: (epsilon, delta) after some rounds.

Each round of :class:`~fedge.server.aggregation.central_dp.CentralDP` is a Gaussian
mechanism on a sum of clipped updates with ``noise_multiplier`` = noise
std / clip norm (sensitivity one device, add-or-remove-one neighbours),
applied to a sample of the device population. When each device takes part
in a round independently with probability ``sample_rate`` (Poisson
sampling), privacy amplification by sampling applies, and the rounds
compose. ``dp_accounting`` (Google's accountant library, installed with
TFF) does the arithmetic, with the RDP accountant by default or the
tighter (slower) privacy-loss-distribution one.

The guarantee is device-level: it covers everything one device
contributes, whatever its number of examples. It holds only if the server
really samples devices as assumed; with a fixed-size sample of ``k`` out of
``N`` devices, ``sample_rate = k / N`` is the usual approximation.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import dp_accounting  # type: ignore[import-untyped]

from fedge.errors import ConfigError

Accountant = Literal["rdp", "pld"]


def dp_event(noise_multiplier: float, sample_rate: float, rounds: int) -> Any:
    """``rounds`` compositions of a Poisson-sampled Gaussian mechanism."""
    _check(noise_multiplier, sample_rate, rounds)
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    sampled = (
        gaussian
        if sample_rate == 1.0
        else dp_accounting.PoissonSampledDpEvent(sample_rate, gaussian)
    )
    return dp_accounting.SelfComposedDpEvent(sampled, rounds)


def epsilon(
    noise_multiplier: float,
    sample_rate: float,
    rounds: int,
    delta: float,
    accountant: Accountant = "rdp",
) -> float:
    """Epsilon spent after ``rounds`` rounds, at the given ``delta``.

    Zero rounds spend nothing; no noise spends everything (``inf``).
    """
    _check(noise_multiplier, sample_rate, rounds)
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    ledger = _new_accountant(accountant)
    ledger.compose(dp_event(noise_multiplier, sample_rate, rounds))
    return float(ledger.get_epsilon(delta))


class PrivacyLedger:
    """Epsilon spent so far, updated after every round.

    The state is just the number of rounds, so after a restart the server
    rebuilds the ledger with ``rounds=`` the rounds already closed.
    """

    def __init__(
        self,
        noise_multiplier: float,
        sample_rate: float,
        delta: float,
        rounds: int = 0,
        accountant: Accountant = "rdp",
    ) -> None:
        _check(noise_multiplier, sample_rate, rounds)
        if not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        self.noise_multiplier = noise_multiplier
        self.sample_rate = sample_rate
        self.delta = delta
        self._accountant_kind: Accountant = accountant
        self._accountant = _new_accountant(accountant)
        self._rounds = 0
        if rounds:
            self._compose(rounds)

    @property
    def rounds(self) -> int:
        return self._rounds

    @property
    def epsilon(self) -> float:
        """Epsilon spent by the rounds recorded so far."""
        if self._rounds == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        return float(self._accountant.get_epsilon(self.delta))

    def record_round(self) -> float:
        """Count one more noised round; return the epsilon spent so far."""
        self._compose(1)
        return self.epsilon

    def _compose(self, rounds: int) -> None:
        if self.noise_multiplier > 0:
            self._accountant.compose(dp_event(self.noise_multiplier, self.sample_rate, rounds))
        self._rounds += rounds


def _new_accountant(kind: Accountant) -> Any:
    if kind == "rdp":
        return dp_accounting.rdp.RdpAccountant()
    if kind == "pld":
        return dp_accounting.pld.PLDAccountant()
    raise ConfigError(f"unknown accountant {kind!r}; choose 'rdp' or 'pld'")


def _check(noise_multiplier: float, sample_rate: float, rounds: int) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ConfigError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if rounds < 0:
        raise ConfigError(f"rounds must be >= 0, got {rounds}")
