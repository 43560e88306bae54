"""A real ``fedge serve`` for the abuse tests, configured by a TOML file.

Test scaffolding: the attacks of issue 22 run over real sockets against the
server process, as an attacker would run them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.helpers.live_server import LiveServer, running

ADMIN_TOKEN = "admin-secret"  # tests.helpers.live_server.start's default


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def serve(tmp_path: Path, *, args: Sequence[str] = (), **settings: Any) -> Iterator[LiveServer]:
    """``fedge serve`` with ``settings`` written to a TOML file."""
    config = tmp_path / "server.toml"
    config.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))
    args = ["--config", str(config), *args]
    with running(tmp_path / "data", args, tmp_path / "server.log") as live:
        yield live


def enrol(url: str) -> str:
    reply = requests.post(f"{url}/v1/devices", json={"platform": "test"}, timeout=30)
    assert reply.status_code == 201, reply.text
    token: str = reply.json()["token"]
    return token


def assert_json_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"] == code, response.text[:300]
