"""Shared fixtures, and a guard: a test run never leaves a TFF worker behind.

The session puts a marker in its environment, which every process it
starts inherits (TFF workers included). At the end, every live
``worker_binary`` carrying this session's marker is killed and the run is
marked failed, so a leak shows up as a red test run instead of a hung CI
job, and workers of other runs on the machine are left alone. Under
pytest-xdist each worker process is a session of its own, with a marker of
its own (not the one it inherits from the controller): a worker that
finishes first must not kill the TFF workers of a test still running in
another.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from fedge.blas_threads import single_blas_thread
from fedge.reference.data import TaskData, load_task
from tests.helpers.browser import chromium
from tests.helpers.postgres import PostgresCluster, started

REPO_ROOT = Path(__file__).resolve().parent.parent
# Not FEDGE_*: those name server settings, and an unknown one is refused.
MARKER = "PYTEST_FEDGE_SESSION"
os.environ[MARKER] = f"{os.getpid()}-{secrets.token_hex(4)}"


def tff_worker_pids(session_only: bool = True) -> set[int]:
    """Pids of live (not zombie) TFF worker_binary processes of this test session."""
    marker = f"{MARKER}={os.environ[MARKER]}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")[0]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if not cmdline.endswith(b"/worker_binary") or state == "Z":
            continue
        if session_only and marker not in environ:
            continue
        pids.add(int(entry.name))
    return pids


# Threads of one xdist worker: the workers are the parallelism (scripts/test.sh
# starts several on a machine of a few cores), so TensorFlow's and the BLAS's
# own pools stay at one thread each instead of each worker spinning up a pool
# the size of the machine. Set before any test imports TensorFlow; inherited
# by the processes the tests start.
WORKER_THREADS = {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


# An xdist worker starts with COLUMNS=80 in its environment whatever the run's
# is; the CLI's tables take their width from it (fedge/cli/console.py), so a
# worker gets the controller's value back (or none).
COLUMNS = "fedge_columns"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[COLUMNS] = os.environ.get("COLUMNS")


def pytest_configure(config: pytest.Config) -> None:
    worker_input = getattr(config, "workerinput", None)
    if worker_input is None:
        return
    for name, value in WORKER_THREADS.items():
        os.environ.setdefault(name, value)
    single_blas_thread()  # NumPy (and its BLAS) is loaded by now
    columns = worker_input.get(COLUMNS)
    if columns is None:
        os.environ.pop("COLUMNS", None)
    else:
        os.environ["COLUMNS"] = columns


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test modules in the order the parallel run should start them: those
    with tests marked ``long(seconds)`` first, the longest in all first; then
    the others, those with the most tests first (xdist's own order, which
    scripts/test.sh turns off with ``--no-loadscope-reorder`` for this one).
    Under ``--dist loadfile`` a module runs on one worker from start to end:
    a module of a few minutes' tests handed out last would keep one worker
    busy long after the others ran out of work. Within a module the order
    is kept."""
    seconds: dict[str, float] = {}
    tests: Counter[str] = Counter()
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        tests[module] += 1
        long = item.get_closest_marker("long")
        if long is not None:
            seconds[module] = seconds.get(module, 0.0) + float(long.args[0])
    rank = {
        module: place
        for place, module in enumerate(
            sorted(tests, key=lambda m: (-seconds.get(m, 0.0), -tests[m]))
        )
    }
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaked = tff_worker_pids()
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leaked:
        print(f"\nFAILED: the test run left TFF worker processes behind: {sorted(leaked)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def task() -> TaskData:
    return load_task(seed=0)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL for the whole run, started on first use."""
    with started() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """The run's one headless Chromium. Playwright's sync API keeps its event
    loop running in the process while a browser is open, so a second
    ``chromium()`` beside this one fails: every browser test takes this."""
    with chromium() as opened:
        yield opened


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The URL of an empty database of this test's own."""
    return postgres_cluster.new_database(f"t_{secrets.token_hex(6)}")
