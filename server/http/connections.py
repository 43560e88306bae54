"""What one connection may cost the server: time, a share of the connections,
and the bytes it sends after it was refused.

Waitress gives an inactivity timeout (``channel_timeout``) and a global
connection limit; this channel adds what an attacker's client needs:

* **Deadlines.** A request's headers must arrive within
  ``header_timeout_s`` of its first byte and the whole request (body too)
  within ``request_timeout_s``: a client that trickles a byte now and then
  is never inactive, so only a deadline ends it. Checked by the server's
  maintenance, every ``CHECK_EVERY_S``; the connection is closed.
* **A share per address.** An address holds at most ``per_address``
  connections; one more is closed as soon as it is accepted.
* **Errors a client can read.** Waitress refuses a body over the bound
  (413), headers over theirs (431) or a malformed request (400) as soon as
  it knows, and closes; a client that sends its whole body before it reads
  (``requests``, ``urllib``) then sees ECONNRESET or EPIPE, not the answer.
  This channel instead discards what the client still sends (up to
  ``drain_bytes``, for at most ``drain_s``), sends the answer, half-closes
  (FIN), and reads on until the client closes: the client finishes sending
  and reads the JSON error. Refusals by the app (401, 403, 429, its own 413)
  come after waitress has read the whole body, so they need nothing of this.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from waitress.channel import HTTPChannel

# How often the server looks for connections past a deadline.
CHECK_EVERY_S = 1.0
_ADDRESSES = "fedge_connections_by_address"  # the server attribute holding the counts


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    request_timeout_s: float
    per_address: int  # 0: no cap
    drain_bytes: int
    drain_s: float


class GuardedChannel(HTTPChannel):  # type: ignore[misc]
    """A waitress channel with deadlines, a per-address share and a drain."""

    limits: ClassVar[ConnectionLimits]
    will_close: bool = False  # waitress's flag (untyped there): close at the next turn

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        self._address = str(addr[0]) if isinstance(addr, tuple) and addr else "local"
        self._counted = False
        self._request_started: float | None = None
        self._discard_until: float | None = None  # set once the answer is a refusal
        self._discarded = 0
        self._lingering = False
        self._given_up = False
        super().__init__(server, sock, addr, adj, map)
        counts = addresses(server)
        counts[self._address] += 1
        self._counted = True
        if 0 < self.limits.per_address < counts[self._address]:
            super().handle_close()

    # --- reading ------------------------------------------------------------

    def readable(self) -> bool:
        if self._lingering:
            return True
        if self._discard_until is not None and not self.will_close:
            return True  # keep reading what the client sends after the refusal
        return bool(super().readable())

    def writable(self) -> bool:
        if self._lingering:
            return bool(self.will_close)
        return bool(super().writable())

    def received(self, data: bytes) -> bool:
        if self._discard_until is not None:
            self._discard(len(data))
            return True
        now = time.monotonic()
        if self.request is None:
            self._request_started = now  # these bytes start a request
        result = bool(super().received(data))
        if self.request is None:
            self._request_started = None  # complete; nothing of the next one yet
        if any(request.error is not None for request in self.requests):
            # Waitress answers this one with an error and closes: whatever
            # the client still sends is discarded, never parsed as a request.
            self._discard_until = now + self.limits.drain_s
        return result

    def handle_read(self) -> None:
        if not self._lingering:
            super().handle_read()
            return
        data = self.recv(self.adj.recv_bytes)  # at EOF or an error recv closes the channel
        if data:
            self._discard(len(data))

    def _discard(self, count: int) -> None:
        self._discarded += count
        if self._discarded > self.limits.drain_bytes:
            self.give_up()  # past the bound: close even if the client sees a reset

    # --- closing ------------------------------------------------------------

    def handle_close(self) -> None:
        if (
            self._discard_until is not None
            and not (self._lingering or self._given_up or self.requests)
            and self.will_close
            and self.connected
            and not self.total_outbufs_len
            and self._discarded <= self.limits.drain_bytes
        ):
            # The error answer is sent: half-close and read until the client closes.
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.will_close = False
                self._lingering = True
                return
        self._lingering = False
        super().handle_close()

    def del_channel(self, map: Any = None) -> None:
        if self._counted:
            self._counted = False
            counts = addresses(self.server)
            counts[self._address] -= 1
            if counts[self._address] <= 0:
                del counts[self._address]
        super().del_channel(map)

    def give_up(self) -> None:
        """Close at the next turn of the loop, without a drain."""
        self._given_up = True
        self.will_close = True

    def overdue(self, now: float) -> bool:
        """Past a deadline: the refusal's drain, or the request's headers or body."""
        if self._discard_until is not None:
            return now > self._discard_until
        started, request = self._request_started, self.request
        if started is None or request is None:
            return False
        limit = (
            self.limits.request_timeout_s
            if request.headers_finished
            else self.limits.header_timeout_s
        )
        return now - started > limit


def addresses(server: Any) -> Counter[str]:
    """Open connections by client address (kept on the server object)."""
    counts: Counter[str] | None = getattr(server, _ADDRESSES, None)
    if counts is None:
        counts = Counter()
        setattr(server, _ADDRESSES, counts)
    return counts


def guard(server: Any) -> None:
    """Add the deadline check to the server's maintenance (idle connections)."""
    idle_check = server.maintenance

    def maintenance(now: float) -> None:
        idle_check(now)
        monotonic = time.monotonic()
        for channel in list(server.active_channels.values()):
            if isinstance(channel, GuardedChannel) and channel.overdue(monotonic):
                channel.give_up()

    server.maintenance = maintenance


def guarded(channel_class: type, limits: ConnectionLimits) -> type:
    """``channel_class`` (a :class:`GuardedChannel`) with these limits."""
    return type(channel_class.__name__, (channel_class,), {"limits": limits})
