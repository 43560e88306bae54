"""Several server processes on one database, one of them the aggregator.

Any worker accepts uploads (validates, stores the file, commits the row,
answers the receipt); only the process holding the aggregator's lease
(:mod:`fedge.server.storage.lease`) runs the round driver and holds the
open round's running sum. :class:`~.role.AggregatorRole` moves a process
between the two; :func:`~.catch_up.catch_up` is how the aggregator folds
in what other workers committed.
"""

from fedge.server.rounds.workers.catch_up import catch_up
from fedge.server.rounds.workers.role import AggregatorRole, default_worker_id

__all__ = ["AggregatorRole", "catch_up", "default_worker_id"]
