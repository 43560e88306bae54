"""Storage: the :class:`~fedge.server.storage.store.Store` interface and its
SQLite implementation (:mod:`.db`), the rows of rounds, releases, canaries and
devices, durable file writes, group commit, the data directory and stored
bundles.
"""
