"""Admin and public calls on a live server's releases, for the release tests.

Test scaffolding, not part of the installed package.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.helpers.live_server import LiveServer
from tests.helpers.stores import Stores

ADMIN = {"Authorization": "Bearer admin-secret"}
TAR = "application/x-tar"


@dataclass
class ReleaseApi:
    server: LiveServer
    data_dir: Path
    stores: Stores = field(default_factory=lambda: Stores("sqlite"))

    @property
    def url(self) -> str:
        return self.server.url

    def push(self, tar: bytes, **params: Any) -> requests.Response:
        return requests.post(
            f"{self.url}/v1/releases",
            data=tar,
            params=params,
            headers={**ADMIN, "Content-Type": TAR},
            timeout=60,
        )

    def releases(self) -> dict[str, Any]:
        reply = requests.get(f"{self.url}/v1/releases", timeout=30)
        assert reply.status_code == 200, reply.text
        listing: dict[str, Any] = reply.json()
        return listing

    def changes(self) -> list[dict[str, Any]]:
        reply = requests.get(f"{self.url}/v1/admin/release-changes", headers=ADMIN, timeout=30)
        assert reply.status_code == 200, reply.text
        changes: list[dict[str, Any]] = reply.json()["changes"]
        return changes

    def slice_key(self) -> bytes:
        return stored_slice_key(self.data_dir, self.stores)

    def stored_events(self, kinds: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """The event log's rows of ``kinds``, read from the database, in order."""
        rows = self.stores.rows(self.data_dir, "SELECT kind, payload FROM events ORDER BY id")
        return [(kind, _json(payload)) for kind, payload in rows if kind in kinds]


def _json(payload: Any) -> dict[str, Any]:
    """A stored event payload: JSON text, or already decoded (a JSON column)."""
    decoded: dict[str, Any] = json.loads(payload) if isinstance(payload, str) else payload
    return decoded


def stored_slice_key(data_dir: Path, stores: Stores | None = None) -> bytes:
    """The server's canary slice key, read from its database (never served)."""
    ((key,),) = (stores or Stores("sqlite")).rows(
        data_dir, "SELECT value FROM server_state WHERE key = 'canary_slice_key'"
    )
    return bytes.fromhex(key)
