"""The SQLite implementation of :class:`~fedge.server.storage.store.Store`:
:class:`~.store.SQLiteStore` over one file (:mod:`.database`: schema,
migrations, one connection per thread), one small class per table bound to
a connection (:mod:`.rounds`, :mod:`.devices`, :mod:`.releases`,
:mod:`.canary`) and sqlite3's errors turned into the Store's (:mod:`.errors`)."""
