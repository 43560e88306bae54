"""The server's secret that keys the canary slice (:mod:`.rollout`).

Made once, 32 random bytes, at the first start of a data directory, and
kept in the store (``server_state``), so the slice is the same after a
restart and on every server that shares the store. It is never served:
without it nobody can tell offline which device ids land in a
candidate's slice, so enrolling devices until some are in it costs an
attacker the slice's own odds (see docs/security.md).
"""

from __future__ import annotations

import secrets

from fedge.server.errors import ServerError
from fedge.server.storage.store import ServerState, Store

STATE_KEY = "canary_slice_key"
KEY_BYTES = 32


class MissingSliceKey(ServerError):
    status, code = 500, "missing_slice_key"


def ensure(store: Store) -> None:
    """Create the key unless the store has one (the first start)."""
    with store.transaction() as tx:
        if tx.state.get(STATE_KEY) is None:
            tx.state.set(STATE_KEY, secrets.token_hex(KEY_BYTES))


def of(state: ServerState) -> bytes:
    """The key, read in the caller's unit of work."""
    stored = state.get(STATE_KEY)
    if stored is None:  # ensure() runs before the server takes requests
        raise MissingSliceKey("the canary slice key is missing from the store")
    return bytes.fromhex(stored)
