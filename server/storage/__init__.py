"""Storage: the :class:`~fedge.server.storage.store.Store` interface (units
of work with typed rows: rounds, selections, updates, checkpoints, server
state, events, devices) and its SQLite implementation (:mod:`.sqlite`, over
the connections of :mod:`.db`); the records they exchange (:mod:`.rounds`,
:mod:`.devices`); the release and canary rows (:mod:`.releases`,
:mod:`.canary`, still plain functions over a connection); durable file
writes, group commit, the data directory and stored bundles.
"""
