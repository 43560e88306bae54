"""The channels of commits other server processes on the same database
wait for (:meth:`~fedge.server.storage.store.Store.listen`; PostgreSQL's
LISTEN/NOTIFY, :mod:`.postgres.listener`)."""

EVENTS_CHANNEL = "fedge_events"  # an event was added
UPDATES_CHANNEL = "fedge_updates"  # an update was stored
