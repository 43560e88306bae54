"""``fedge serve --workers N``: N server processes on one PostgreSQL
database and one data directory, on consecutive ports.

The command's own process becomes a small supervisor: it starts each
worker as ``fedge serve`` again with the same arguments (the environment
variable :data:`WORKER_INDEX` tells a child which one it is, and so its
port: ``--port`` + index), restarts a worker that exits on its own after
:data:`RESTART_S`, and on SIGTERM or SIGINT (Ctrl-C) sends SIGTERM to every
worker and waits for them (SIGKILL after :data:`STOP_S`). A worker is an
ordinary ``fedge serve --database`` process: N of them started by hand, on
other ports or hosts behind any load balancer, work the same way.

Consecutive ports rather than one port shared with ``SO_REUSEPORT``:
waitress opens its own listening socket and has no option to set it, and
distinct ports let a load balancer health-check each worker
(``/healthz``) and let an operator reach one.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("fedge.server")

WORKER_INDEX = "FEDGE_SERVE_WORKER_INDEX"  # set for a worker started by the supervisor
RESTART_S = 1.0
STOP_S = 30.0


def worker_index() -> int | None:
    """This process's index among the supervisor's workers, or None (not started by one)."""
    value = os.environ.get(WORKER_INDEX)
    return int(value) if value is not None and value.isdigit() else None


def supervise(argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` copies of the command ``argv`` (the supervisor's own,
    ``fedge serve ...``) until SIGTERM or SIGINT; returns the exit status."""
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    children: list[subprocess.Popen[bytes] | None] = [None] * workers
    try:
        while not stop.is_set():
            for index, child in enumerate(children):
                if child is not None and child.poll() is None:
                    continue
                if child is not None:
                    log.error("worker %d exited with %s; restarting it", index, child.returncode)
                    if stop.wait(RESTART_S):
                        break
                children[index] = _start(argv, index)
            stop.wait(0.2)
    finally:
        _stop_all([c for c in children if c is not None])
    return 0


def _start(argv: Sequence[str], index: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, WORKER_INDEX: str(index)}
    # Its own process group: a Ctrl-C reaches the supervisor, which stops the workers in order.
    return subprocess.Popen(list(argv), env=env, start_new_session=True)


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def own_command() -> list[str]:
    """The command line this process was started with (to start workers alike)."""
    return [sys.executable, sys.argv[0], *sys.argv[1:]]
