"""The SQLite implementation of :class:`~fedge.server.storage.store.Store`:
:class:`~.store.SQLiteStore` over one file (:mod:`.database`: one
connection per thread, the steps of releases before 3), the schema
(:mod:`.schema`) and its numbered steps (:mod:`.migrations`), one small
class per table bound to a connection (:mod:`.rounds`, :mod:`.devices`,
:mod:`.releases`, :mod:`.canary`, :mod:`.health`) and sqlite3's errors
turned into the Store's (:mod:`.errors`). The schema, the steps and the
row classes' SQL are written in what PostgreSQL speaks too: the
PostgreSQL store (:mod:`fedge.server.storage.postgres`) uses them as they are."""
