"""A throw-away PostgreSQL cluster for the tests: ``initdb`` in a temporary
directory, ``pg_ctl start`` on a free loopback port, and a fresh database
for each test that asks for one (``CREATE DATABASE``: milliseconds).

The server binaries are Debian's (``/usr/lib/postgresql/<major>/bin``,
installed by ``scripts/setup_postgres.sh``). PostgreSQL refuses to run as
root, so as root the cluster belongs to the ``postgres`` user (the package
creates it) and its commands run through ``runuser``; otherwise they run as
the current user.

The cluster is stopped (``pg_ctl stop -m immediate``) on every exit path the
test process can see: the fixture's finalizer, ``atexit``, and SIGTERM,
SIGINT and SIGHUP (the handler stops it, then lets the signal do what it
did before). Only a SIGKILL of the test process leaves it running; its
directory is under the system's temporary directory, named ``fedge-pg-*``.

The cluster runs with ``fsync=off``: the tests check what the server
commits and when, not whether the test machine's disk keeps it.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

USER = "fedge"  # the cluster's superuser (initdb -U), trusted on loopback


def server_bin() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise RuntimeError(
            "the PostgreSQL tests need Debian's postgresql package: run scripts/setup_postgres.sh"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One running cluster; :meth:`stop` is safe to call any number of times."""

    def __init__(self, settings: Sequence[str] = ()) -> None:
        """``settings``: more ``name=value`` server settings (``-c``), e.g. a
        benchmark's ``shared_preload_libraries``."""
        self.bin = server_bin()
        self._settings = tuple(settings)
        self.root = Path(tempfile.mkdtemp(prefix="fedge-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        self._stopped = threading.Lock()
        self._running = False
        if self._as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync")
        _watch(self)
        self._running = True
        self._start_on_a_free_port()

    def _start_on_a_free_port(self, tries: int = 5) -> None:
        """Start on :attr:`port`; if something else bound it between the probe
        and the start (other xdist workers and test servers pick ports too),
        again on another free port."""
        log = self.root / "log"
        for attempt in range(tries):
            seen = log.stat().st_size if log.exists() else 0
            try:
                self.resume()
                return
            except RuntimeError:
                written = log.read_bytes()[seen:] if log.exists() else b""
                port_taken = b"could not bind" in written
                if not port_taken or attempt == tries - 1:
                    raise
                self.port = _free_port()

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement outside a transaction (CREATE DATABASE needs that)."""
        import psycopg2

        conn = psycopg2.connect(self.url(database))
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()

    def new_database(self, name: str) -> str:
        """An empty database of its own (a test's); returns its URL."""
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pause(self) -> None:
        """Stop the server (fast shutdown: connections are cut), keeping its data."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server (again), on the same port and data."""
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=400"
        )
        options += "".join(f" -c {setting}" for setting in self._settings)
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        with self._stopped:
            if not self._running:
                return
            self._running = False
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def started(settings: Sequence[str] = ()) -> Iterator[PostgresCluster]:
    """A cluster for the length of the block (a fixture's), stopped after it."""
    cluster = PostgresCluster(settings)
    try:
        yield cluster
    finally:
        cluster.stop()


_CLUSTERS: list[PostgresCluster] = []
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _stop_all() -> None:
    for cluster in _CLUSTERS:
        cluster.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_PREVIOUS: dict[int, Any] = {}


def _watch(cluster: PostgresCluster) -> None:
    """Stop ``cluster`` at exit and on a terminating signal (main thread only:
    Python installs handlers nowhere else)."""
    if not _CLUSTERS:
        atexit.register(_stop_all)
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                _PREVIOUS[signum] = signal.signal(signum, _on_signal)
    _CLUSTERS.append(cluster)
