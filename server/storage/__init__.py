"""Storage: the :class:`~fedge.server.storage.store.Store` interface (units
of work with typed rows: rounds, selections, updates, checkpoints, server
state, events, devices, releases and their change log, canary evaluations
and decisions; backend-neutral errors, :class:`~.store.StoreError`) and
its SQLite implementation (:mod:`.sqlite`: the schema and connections in
:mod:`.sqlite.database`, one class per table); the records they exchange
(:mod:`.rounds`, :mod:`.devices`, :mod:`.canary`); durable file writes,
group commit, the data directory and stored bundles.
"""
