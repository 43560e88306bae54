"""The abuse tests' server: ``fedge serve`` with its defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.live_server import LiveServer, running


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[LiveServer]:
    """``fedge serve`` with its defaults."""
    with running(tmp_path / "data", [], tmp_path / "server.log") as server:
        yield server
