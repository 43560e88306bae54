"""How a simulated device talks to the server: one interface, two ways.

:class:`HttpTransport` uses real HTTP (requests, a connection pool per
device, or one shared by a fleet's devices; a thread fleet on plain HTTP
uses :mod:`fedge.client_sim.device.keepalive` instead); :class:`InProcessTransport`
calls the Flask app directly, for tests and fast simulations. The device code is the same for both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    # The server's Retry-After in seconds, when it sent a readable one.
    retry_after_s: float | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class TransportError(Exception):
    """The request did not get an answer (connection refused, reset, timeout)."""


class Transport(Protocol):
    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply: ...

    def close(self) -> None: ...


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` as whole seconds (what fedge's server sends); an
    HTTP date, a negative or an unreadable value is ignored (None)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def request_headers(
    token: str | None, data: bytes | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    """A device request's headers: its bearer token, the body's type, then ``extra``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if data is not None:
        headers["Content-Type"] = "application/octet-stream"
    headers.update(extra or {})  # If-None-Match, say
    return headers


class HttpTransport:
    """``session``: a keep-alive connection pool shared by many simulated
    devices (see :func:`shared_session`; closed by its owner, not here);
    default: one of the device's own."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, session: Any = None) -> None:
        import requests

        self._base = base_url.rstrip("/")
        self._timeout = timeout_s
        self._owns_session = session is None
        self._session = requests.Session() if session is None else session

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
        import requests

        try:
            response = self._session.request(
                method,
                self._base + path,
                json=json_body,
                data=data,
                headers=request_headers(token, data, headers),
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise TransportError(f"{method} {path}: {exc}") from exc
        return Reply(
            response.status_code,
            response.content,
            response.headers.get("Content-Type", ""),
            retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        if self._owns_session:
            self._session.close()


def shared_session(connections: int, base_url: str) -> Any:
    """A ``requests.Session`` whose pool keeps up to ``connections`` keep-alive
    connections per host: for many simulated devices that take turns on a
    bounded worker pool, so that the server holds that many connections,
    not one per device, and no request pays for a new one. Devices send
    their own token with each request; the server sets no cookies.

    The environment (proxies, CA bundle) is read once, for ``base_url``,
    not at every request: requests would otherwise look for a ``.netrc``
    and the proxy variables on each of a fleet's requests, and a ``.netrc``
    entry for the server's host would replace the device's bearer token."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    settings = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies, session.verify = settings["proxies"], settings["verify"]
    session.trust_env = False
    return session


class InProcessTransport:
    def __init__(self, app: Any) -> None:
        self._client = app.test_client()

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
        response = self._client.open(
            path,
            method=method,
            json=json_body,
            data=data,
            headers=request_headers(token, data, headers),
        )
        return Reply(
            response.status_code,
            response.get_data(),
            response.content_type or "",
            retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        return None
