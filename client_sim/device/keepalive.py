"""A fleet's devices' HTTP on a few keep-alive connections, without requests.

A thread fleet's devices take turns on a bounded worker pool and share its
connections (:func:`fedge.client_sim.device.transport.shared_session`).
On the embedded server's loopback, requests' own work per request
(settings merged, hooks, adapters, urllib3's pool) cost about three times
what :mod:`http.client` does, measured in the fleet's process, which the
server and the devices' runtimes share: at 100 devices a round, three
requests each, that was a tenth of a round's CPU. :class:`KeepAlivePool`
sends the same requests (method, path, the device's bearer token, JSON or
bytes) over plain HTTP/1.1 keep-alive connections; each device still
makes every one of its requests, and each is a real request on a socket.

Only for a plain ``http://`` server that no proxy stands in front of
(:func:`direct_http`); anything else (TLS and its CA settings, a proxy)
stays on requests.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fedge.client_sim.device.transport import (
    HttpTransport,
    Reply,
    Transport,
    TransportError,
    request_headers,
    retry_after,
    shared_session,
)


def direct_http(base_url: str) -> bool:
    """Whether ``base_url`` is plain HTTP that no proxy of the environment takes."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxied = "http" in urllib.request.getproxies()
    return not proxied or bool(urllib.request.proxy_bypass(parts.hostname))


def fleet_connections(connections: int, base_url: str) -> Any:
    """The keep-alive connections a fleet's devices share (``close()`` them
    when done): a :class:`KeepAlivePool` for a plain ``http://`` server
    reached directly, else requests' pool
    (:func:`~fedge.client_sim.device.transport.shared_session`)."""
    if direct_http(base_url):
        return KeepAlivePool(base_url, connections)
    return shared_session(connections, base_url)


def device_transport(connections: Any, base_url: str) -> Transport:
    """One device's transport on ``connections`` (:func:`fleet_connections`)."""
    if isinstance(connections, KeepAlivePool):
        return connections.transport()
    return HttpTransport(base_url, session=connections)


class KeepAlivePool:
    """Up to ``connections`` idle keep-alive connections to ``base_url``
    (plain HTTP), used by any number of threads, one request per
    connection at a time. A request that gets no answer is a
    :class:`TransportError` (its caller retries, as with requests)."""

    def __init__(self, base_url: str, connections: int, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"KeepAlivePool speaks plain http://, not {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout_s
        self._most = max(1, connections)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def transport(self) -> PooledTransport:
        """A device's transport on this pool (closing it leaves the pool open)."""
        return PooledTransport(self)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = request_headers(token, data, headers)
        body = data
        if json_body is not None and data is None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        connection: http.client.HTTPConnection | None = None
        try:
            connection = self._take()
            connection.request(method, self._prefix + path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(
                response.status,
                response.read(),
                response.getheader("Content-Type", "") or "",
                retry_after(response.getheader("Retry-After")),
            )
        except (OSError, http.client.HTTPException) as exc:
            if connection is not None:
                connection.close()
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return reply

    def _take(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._closed:
                raise TransportError("the fleet's connections are closed")
            while self._idle:
                connection = self._idle.pop()
                if _usable(connection):
                    return connection
                connection.close()
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        connection.connect()
        # The request goes out as it is written, not held for the last ACK.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._most:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class PooledTransport:
    """One device's :class:`~fedge.client_sim.device.transport.Transport`
    on a fleet's :class:`KeepAlivePool` (its owner closes the pool)."""

    def __init__(self, pool: KeepAlivePool) -> None:
        self._pool = pool

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return self._pool.request(
            method, path, token=token, json_body=json_body, data=data, headers=headers
        )

    def close(self) -> None:
        return None


def _usable(connection: http.client.HTTPConnection) -> bool:
    """An idle connection the server has not closed: nothing to read on it
    (a closed one reads as end of file), so a request on it gets an answer."""
    sock = connection.sock
    if sock is None:
        return False
    if not hasattr(select, "poll"):  # not POSIX: select (no limit on fds there)
        readable, _, _ = select.select([sock], [], [], 0)
        return not readable
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)
