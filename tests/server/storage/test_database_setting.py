"""``fedge serve --database`` (``FEDGE_DATABASE``) given what will not do:
the start stops with exit code 1 and one line that says why (no traceback,
no password), before the server answers anything."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers.live_server import FEDGE
from tests.helpers.postgres import PostgresCluster


def serve(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FEDGE), "serve", "--data-dir", str(tmp_path / "data"), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environ},
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "url",
    ["mysql://fedge@localhost/fedge", "sqlite:///tmp/x.db", "", "postgresql://host:notaport/x"],
)
def test_a_url_that_is_not_postgresql_is_refused(tmp_path: Path, url: str) -> None:
    line = one_line_error(serve(tmp_path, "--database", url))
    assert "database" in line


def test_the_variable_is_read_and_checked_like_the_option(tmp_path: Path) -> None:
    line = one_line_error(serve(tmp_path, FEDGE_DATABASE="mysql://x"))
    assert "database must be a postgresql:// URL" in line


def test_an_unreachable_database_stops_the_start_without_showing_the_password(
    tmp_path: Path,
) -> None:
    port = closed_port()
    url = f"postgresql://fedge:s3cret-pw@127.0.0.1:{port}/fedge"

    line = one_line_error(serve(tmp_path, "--database", url))

    assert f"cannot open the database postgresql://fedge@127.0.0.1:{port}/fedge" in line
    assert "s3cret-pw" not in line


def test_a_database_that_refuses_the_user_stops_the_start(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = f"postgresql://nobody@127.0.0.1:{postgres_cluster.port}/postgres"

    line = one_line_error(serve(tmp_path, "--database", url))

    assert 'role "nobody" does not exist' in line
