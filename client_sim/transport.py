"""How a simulated device talks to the server: one interface, two ways.

:class:`HttpTransport` uses real HTTP (requests, a connection pool per
device); :class:`InProcessTransport` calls the Flask app directly, for
tests and fast simulations. The device code is the same for both.
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


def _headers(
    token: str | None, data: bytes | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if data is not None:
        headers["Content-Type"] = "application/octet-stream"
    headers.update(extra or {})  # If-None-Match, say
    return headers


class HttpTransport:
    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        import requests

        self._base = base_url.rstrip("/")
        self._timeout = timeout_s
        self._session = requests.Session()

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
                headers=_headers(token, data, headers),
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise TransportError(f"{method} {path}: {exc}") from exc
        return Reply(
            response.status_code, response.content, response.headers.get("Content-Type", "")
        )

    def close(self) -> None:
        self._session.close()


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
            path, method=method, json=json_body, data=data, headers=_headers(token, data, headers)
        )
        return Reply(response.status_code, response.get_data(), response.content_type or "")

    def close(self) -> None:
        return None
