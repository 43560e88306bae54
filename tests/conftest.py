"""Shared fixtures, and a guard: a test run never leaves a TFF worker behind.

At the end of the session every ``worker_binary`` process that appeared
during it is killed and the run is marked failed, so a leak shows up as a
red test run instead of a hung CI job.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from fedge.data import TaskData, load_task

REPO_ROOT = Path(__file__).resolve().parent.parent
_WORKERS_AT_START: set[int] = set()


def tff_worker_pids() -> set[int]:
    """Pids of live (not zombie) TFF worker_binary processes on this machine."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")[0]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmdline.endswith(b"/worker_binary") and state != "Z":
            pids.add(int(entry.name))
    return pids


def pytest_sessionstart(session: pytest.Session) -> None:
    _WORKERS_AT_START.update(tff_worker_pids())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaked = tff_worker_pids() - _WORKERS_AT_START
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leaked:
        print(f"\nFAILED: the test run left TFF worker processes behind: {sorted(leaked)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def task() -> TaskData:
    return load_task(seed=0)
