"""Asynchronous buffered aggregation (FedBuff): versions as rounds that close
at K updates. Public API: :class:`~.selection.AsyncSelector` (leases instead
of seats, why versions are rounds), :class:`~.leases.Leases` (who trains now,
the concurrency limit) and :class:`~.staleness.StalenessPolicy` (the bound
and the weights).
"""
