"""The PostgreSQL implementation of :class:`~fedge.server.storage.store.Store`:
:class:`~.store.PostgresStore` over one database (:mod:`.database`: the
pool of connections, transactions, migrations), the SQLite store's row
classes on a connection that speaks their SQL to PostgreSQL
(:mod:`.dialect`, :mod:`.errors`: psycopg2's errors turned into the
Store's) and the one row method the dialects cannot share (:mod:`.rounds`).
"""
