"""Storage: the :class:`~fedge.server.storage.store.Store` interface (units
of work with typed rows: rounds, selections, updates, checkpoints, server
state, events, devices, releases and their change log, canary evaluations
and decisions; backend-neutral errors, :class:`~.store.StoreError`), its
SQLite implementation (:mod:`.sqlite`: connections in :mod:`.sqlite.database`,
the schema and its numbered steps in :mod:`.sqlite.schema` and
:mod:`.sqlite.migrations`, one class per table) and its PostgreSQL one
(:mod:`.postgres`: the same row classes and steps on a connection pool);
:func:`~.opening.open_store` picks one from the ``database`` setting; what
the row classes ask of a connection (:mod:`.sql`); the records they exchange
(:mod:`.rounds`, :mod:`.devices`, :mod:`.canary`); the blob stores the
rows point into (:mod:`.blobs`: updates, checkpoints, strategy state and
bundles, one store per kind); durable file writes, group commit, the data
directory and stored bundles.
"""
