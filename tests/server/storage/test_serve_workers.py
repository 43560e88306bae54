"""``fedge serve --workers N``: N workers on consecutive ports sharing the
PostgreSQL database and the data directory, one of them the aggregator;
SIGTERM to the command stops every worker. Refused, before starting
anything, with SQLite or without a fixed port."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from tests.helpers.live_server import FEDGE, READY


def consecutive_free_ports(count: int) -> int:
    """A port P such that P .. P + count - 1 are free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no run of free ports")


def ready_lines(process: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    try:
        while len(lines) < count and time.monotonic() < deadline:
            assert process.poll() is None, f"exited with {process.returncode}"
            if selector.select(timeout=0.5):
                buffer += os.read(process.stdout.fileno(), 4096)
                lines = [
                    line[len(READY) :].strip()
                    for line in buffer.decode(errors="replace").splitlines()
                    if line.startswith(READY)
                ]
    finally:
        selector.close()
    return lines


def test_serve_workers_starts_n_workers_and_stops_them_all(
    postgres_url: str, tmp_path: Path
) -> None:
    port = consecutive_free_ports(2)
    env = {**os.environ, "FEDGE_ADMIN_TOKEN": "admin-secret", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [str(FEDGE), "serve", "--workers", "2", "--port", str(port)]
    command += ["--database", postgres_url, "--data-dir", str(tmp_path / "data")]
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env)
    try:
        urls = sorted(ready_lines(process, 2, timeout=120))
        assert urls == [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        deadline = time.monotonic() + 10
        while True:  # the second worker may not have tried the lease yet
            bodies = [requests.get(f"{u}/healthz", timeout=10).json() for u in urls]
            if all(b["aggregator"] for b in bodies) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len({b["worker_id"] for b in bodies}) == 2
        assert sorted(b["aggregator"]["this_worker"] for b in bodies) == [False, True]
        assert len({b["aggregator"]["worker_id"] for b in bodies}) == 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        for url in urls:  # every worker is gone
            try:
                requests.get(f"{url}/healthz", timeout=2)
                raise AssertionError(f"{url} still answers")
            except requests.ConnectionError:
                pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_serve_workers_is_refused_with_sqlite_and_without_a_port(
    postgres_url: str, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    cases = {
        "needs --database (PostgreSQL)": [*data, "--port", "9"],
        "needs a --port": [*data, "--port", "0", "--database", postgres_url],
    }
    for message, args in cases.items():
        done = subprocess.run(
            [str(FEDGE), "serve", "--workers", "2", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was made
