"""fedge's TFF helper leaves no worker behind, however the process ends.

TFF's own default context starts a worker that survives its parent and
keeps the parent's stdout open, so reading that stdout to the end hangs.
These tests read a child's stdout to the end (with a time limit) and then
check the worker's pid is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fedge.client_sim.tff.runtime import tff_execution_context
from tests.conftest import REPO_ROOT, tff_worker_pids

CHILD = [sys.executable, "-m", "tests.helpers.tff_mean"]
CHILD_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid not in tff_worker_pids():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.long(21)
def test_no_worker_remains_after_a_computation_in_a_subprocess() -> None:
    child = subprocess.Popen(
        CHILD, cwd=REPO_ROOT, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        # If the worker inherited this pipe, reading to EOF would hang here.
        out, _ = child.communicate(timeout=180)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    lines = dict(line.split(" ", 1) for line in out.decode().splitlines())

    assert child.returncode == 0
    assert float(lines["mean"]) == pytest.approx(3.0)
    assert _wait_gone(int(lines["worker-pid"]))


@pytest.mark.long(17)
def test_worker_dies_with_a_killed_parent() -> None:
    child = subprocess.Popen(
        [*CHILD, "--hold"],
        cwd=REPO_ROOT,
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline().decode().split()
        assert first[0] == "worker-pid"
        pid = int(first[1])
        assert child.stdout.readline().decode().startswith("mean")
        assert pid in tff_worker_pids()

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

        assert _wait_gone(pid)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_worker_is_stopped_when_the_block_raises() -> None:
    import tensorflow_federated as tff

    @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
    def federated_sum(values: object) -> object:
        return tff.federated_sum(values)

    with (
        pytest.raises(RuntimeError, match="after the computation"),
        tff_execution_context() as worker,
    ):
        assert federated_sum([1.0, 2.0]) == pytest.approx(3.0)
        raise RuntimeError("after the computation")

    assert worker.pid not in tff_worker_pids()
