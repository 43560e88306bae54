"""When a runtime's parity fails (issue 23): the ``canary_parity_*``
settings, kept beside :mod:`.config` (which validates them at start) so that
the configuration imports nothing of the release domain that applies them
(:mod:`fedge.server.releases.canary.parity`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedge.server.errors import ConfigurationError


@dataclass(frozen=True)
class ParityRule:
    """When a report fails (``max_error``, ``min_agreement``) and how many
    failing devices a runtime needs (``min_devices``, and a majority):
    ``canary_parity_max_error``, ``canary_parity_min_agreement`` and
    ``canary_parity_min_devices``."""

    max_error: float = 0.05
    min_agreement: float = 0.95
    min_devices: int = 2

    def validate(self) -> None:
        if not 0 <= self.max_error < float("inf"):
            raise ConfigurationError("canary_parity_max_error must be >= 0 and finite")
        if not 0 <= self.min_agreement <= 1:
            raise ConfigurationError("canary_parity_min_agreement must be in [0, 1]")
        if self.min_devices < 1:
            raise ConfigurationError(
                "canary_parity_min_devices must be >= 1 (2 or more: one liar blocks nobody)"
            )
