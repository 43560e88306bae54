"""The errors of the aggregation layer, kept apart so that its modules can
share them without importing each other. Neither is an HTTP error: the
layer knows nothing of requests, and its callers decide what each means.

* :class:`UpdateRefused`: a stage of the update pipeline will not take an
  update. The rounds layer (:mod:`fedge.server.rounds.validation`) answers
  it with the HTTP error of its ``kind``, keeping its ``code``.
* :class:`AggregationError`: a round's updates cannot be combined. When a
  round closes, the round lifecycle (:mod:`fedge.server.rounds.lifecycle`)
  catches it and ends that round ``failed``, keeping the current
  checkpoint. An upload cannot raise it, because it is validated first; if
  one ever did, that would be a bug, answered as a 500."""

from __future__ import annotations

from typing import Literal

from fedge.errors import FedgeError

# Why an update is refused, in the aggregation layer's words:
#   misdirected  it names another round than the one it was sent to
#   stale        it was trained from another checkpoint than the round's base
#   invalid      its numbers cannot be accepted (non-finite, too large, a bad count)
RefusalKind = Literal["misdirected", "stale", "invalid"]


class UpdateRefused(FedgeError):
    """An update that a pipeline stage refuses, with a stable ``code`` that
    the server reports and counts rejects by (``wrong_round``,
    ``stale_base``, ``non_finite``, ``norm_too_large``, ...)."""

    def __init__(self, kind: RefusalKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind
        self.code = code
        self.message = message


class AggregationError(FedgeError):
    """Updates that cannot be aggregated: mismatched names or shapes,
    non-finite values, no updates at all, or unreadable stored updates."""
