"""Which weights a round trains, which it only averages, and which it keeps.

A model is not only trainable weights. An adapted ``Normalization`` layer
holds constants (its int64 ``count``, its mean and variance) that no device
changes; BatchNorm holds statistics that training moves without a gradient.
Neither belongs in an update's norm, its clip or central DP's noise (noise
on a variance makes it negative, and the activations NaN), and constants
must never be averaged (an int64 count is not a float delta). So each
weight has one role:

* **trained** (the rest): clipped, noised, averaged, stepped by the server
  optimizer;
* **statistics**: the plain mean of the devices' values (base plus the mean
  delta, no optimizer, no clip, no noise);
* **kept**: the server keeps the base checkpoint's value, whatever devices
  send: constants always; statistics under central DP (averaging values
  that are not clipped would void the privacy bound) and weights named by
  ``local_state`` (they stay on each device: FedBN, Li et al. 2021).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fedge.wire.weight_spec import ModelSpec

V = TypeVar("V")


@dataclass(frozen=True)
class WeightRoles:
    """The names of the statistics and of the kept weights (every other
    weight is trained). The default: every weight is trained."""

    statistics: frozenset[str] = frozenset()
    kept: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, spec: ModelSpec, local_state: Sequence[str] = (), private: bool = False
    ) -> WeightRoles:
        """The roles of ``spec``'s weights; ``local_state``: patterns of
        weights that stay on the devices; ``private``: central DP is on."""
        statistics = spec.statistic_names
        kept = spec.constant_names | spec.matching(local_state)
        if private:
            kept |= statistics
        return cls(statistics=statistics - kept, kept=kept)

    @property
    def untrained(self) -> frozenset[str]:
        """Names outside an update's norm, clip and noise."""
        return self.statistics | self.kept

    def averaged(self, weights: Mapping[str, V]) -> dict[str, V]:
        """``weights`` without the kept ones: what goes into a round's mean."""
        return {name: value for name, value in weights.items() if name not in self.kept}

    def trained(self, weights: Mapping[str, V]) -> dict[str, V]:
        """``weights`` without statistics and kept ones."""
        untrained = self.untrained
        return {name: value for name, value in weights.items() if name not in untrained}


# Every weight trained: the roles of a model without state.
ALL_TRAINED = WeightRoles()
