"""The secure aggregation protocol's errors."""

from __future__ import annotations

from fedge.errors import FedgeError


class SecAggError(FedgeError):
    """A message that breaks the protocol: bad fields, wrong sizes, wrong stage."""


class ProtocolRefused(SecAggError):
    """An honest device refuses a request that would reveal its neighbours'
    secrets (both shares of one device, a second unmask request, too few
    survivors)."""


class TooFewSurvivors(SecAggError):
    """Too many devices dropped: fewer than the threshold hold some device's
    shares, so the sum cannot be unmasked. The round fails; nothing leaks."""
