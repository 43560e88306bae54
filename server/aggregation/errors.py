"""The one error of the aggregation layer (aggregation, update sources,
strategies), kept apart so those modules can share it without importing
each other. It is not an HTTP error and no view maps it: when a round
closes, the round lifecycle (:mod:`fedge.server.rounds.lifecycle`) catches
it and ends that round ``failed``, keeping the current checkpoint. An
upload cannot raise it, because it is validated first; if one ever did,
that would be a bug, answered as a 500."""

from __future__ import annotations

from fedge.errors import FedgeError


class AggregationError(FedgeError):
    """Updates that cannot be aggregated: mismatched names or shapes,
    non-finite values, no updates at all, or unreadable stored updates."""
