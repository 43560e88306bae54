"""How many long-running requests one client may hold at once, and all clients
together: event streams, waiting long-polls, predictions.

A client is a device (its token), the admin (the dashboard), or, when it
sends no credentials, its address. Each holds at most ``per_client`` slots;
all together hold at most ``limit``, of which ``reserved`` are kept for
authenticated clients (devices and the admin): anonymous clients, however
many addresses they come from, share ``limit - reserved``. A refusal says
whose fault it is: the client's own share (a 429, retry later) or the
server's (a 503, full).

This counts requests running now, not their rate (token buckets do that):
a slot is taken when a request starts its long part and released when it
ends, so a client that holds many open is refused at once instead of
queueing in front of everyone else.
"""

from __future__ import annotations

import enum
import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Client:
    """Who holds a slot: ``key`` names one client (``device:ID``, ``admin``,
    ``address:IP``)."""

    key: str
    authenticated: bool

    @classmethod
    def device(cls, device_id: str) -> Client:
        return cls(f"device:{device_id}", True)

    @classmethod
    def admin(cls) -> Client:
        return cls("admin", True)

    @classmethod
    def address(cls, address: str | None) -> Client:
        return cls(f"address:{address or 'unknown'}", False)


class Refusal(enum.Enum):
    CLIENT_FULL = "client"  # this client holds its share: 429
    SERVER_FULL = "server"  # every slot it may use is taken: 503


class Held:
    """One taken slot; :meth:`release` gives it back (once, however often called)."""

    def __init__(self, slots: ClientSlots, client: Client) -> None:
        self._slots, self._client = slots, client
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._slots._give_back(self._client)


class ClientSlots:
    """At most ``limit`` slots, ``per_client`` per client, ``reserved`` of them
    for authenticated clients only."""

    def __init__(self, limit: int, per_client: int, reserved: int = 0) -> None:
        if not (limit >= 0 and per_client >= 1 and 0 <= reserved <= limit):
            raise ValueError("need limit >= 0, per_client >= 1, 0 <= reserved <= limit")
        self.limit, self.per_client, self.reserved = limit, per_client, reserved
        self._lock = threading.Lock()
        self._by_client: Counter[str] = Counter()
        self._in_use = 0
        self._anonymous = 0

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    def acquire(self, client: Client) -> Held | Refusal:
        """A slot for ``client``, or why not."""
        with self._lock:
            if self._by_client[client.key] >= self.per_client:
                return Refusal.CLIENT_FULL
            if self._in_use >= self.limit:
                return Refusal.SERVER_FULL
            if not client.authenticated and self._anonymous >= self.limit - self.reserved:
                return Refusal.SERVER_FULL
            self._by_client[client.key] += 1
            self._in_use += 1
            self._anonymous += 0 if client.authenticated else 1
        return Held(self, client)

    def _give_back(self, client: Client) -> None:
        with self._lock:
            self._by_client[client.key] -= 1
            if self._by_client[client.key] <= 0:
                del self._by_client[client.key]  # the counter does not grow with clients seen
            self._in_use -= 1
            self._anonymous -= 0 if client.authenticated else 1
