"""The one error of the aggregation layer (aggregation, update sources,
strategies), kept apart so those modules can share it without importing
each other. The web layer maps it to a JSON error in one place."""

from __future__ import annotations

from fedge.errors import FedgeError


class AggregationError(FedgeError):
    """Updates that cannot be aggregated: mismatched names or shapes,
    non-finite values, no updates at all, or unreadable stored updates."""
