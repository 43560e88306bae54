"""The SQLite implementation of :class:`~fedge.server.storage.store.Store`:
:class:`~.store.SQLiteStore`, and one small class per table bound to a
connection (:mod:`.rounds`, :mod:`.devices`)."""
