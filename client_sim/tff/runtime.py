"""TensorFlow Federated's C++ runtime, started and stopped by us.

Importing ``tensorflow_federated`` installs a default execution context
that, on the first computation, starts a ``worker_binary`` process with the
caller's stdout and stderr and never stops it: it outlives the Python
process and keeps the pipe open, so whatever waits for that output (a test
runner, CI) hangs. fedge never uses that context. Every TFF computation in
fedge runs inside :func:`tff_execution_context`, which

* starts the worker itself, with stdout/stderr sent to a log file (or
  discarded), never the caller's streams;
* asks the kernel to kill the worker if the starting thread's process dies,
  even by SIGKILL (``PR_SET_PDEATHSIG``);
* stops it (SIGINT, then SIGKILL) when the block ends, also on error.

Start it from a long-lived thread (the main thread in fedge): the kernel
sends the death signal when the thread that started the worker ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fedge.errors import FedgeError

_PR_SET_PDEATHSIG = 1
_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


class TffRuntimeError(FedgeError):
    """The TFF worker could not be found, started or reached."""


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    port: int
    binary: Path


def worker_binary_path() -> Path:
    """Where the TFF wheel keeps its C++ worker."""
    import tensorflow_federated

    path = Path(tensorflow_federated.__file__).parent / "data" / "worker_binary"
    if not path.is_file():
        raise TffRuntimeError(f"TFF's worker binary is missing: expected it at {path}")
    return path


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgid(0, 0)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Worker:
    def __init__(self, max_concurrent_calls: int, log_path: Path | None) -> None:
        self._max_concurrent_calls = max_concurrent_calls
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.info: WorkerInfo | None = None

    def start(self) -> WorkerInfo:
        binary = worker_binary_path()
        port = _free_loopback_port()
        sink: IO[bytes] | int
        if self._log_path is not None:
            self._log = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
            sink = self._log
        else:
            sink = subprocess.DEVNULL
        self._process = subprocess.Popen(
            [
                str(binary),
                f"--port={port}",
                f"--max_concurrent_computation_calls={self._max_concurrent_calls}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT if self._log is not None else subprocess.DEVNULL,
            close_fds=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl and setpgid
        )
        self.info = WorkerInfo(pid=self._process.pid, port=port, binary=binary)
        return self.info

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()


@contextlib.contextmanager
def tff_execution_context(
    max_concurrent_calls: int = -1, log_path: Path | None = None
) -> Iterator[WorkerInfo]:
    """Run TFF computations in this block on a worker that we own.

    Yields the worker's pid and port. On leaving the block, normally or by
    an exception, the worker is stopped and waited for.
    """
    import grpc
    from tensorflow_federated.python.core.backends.native import compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import (
        tensorflow_computation,
    )
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
    from tensorflow_federated.python.core.impl.execution_contexts import sync_execution_context
    from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
    from tensorflow_federated.python.core.impl.executors import (
        remote_executor,
        remote_executor_grpc_stub,
    )
    from tensorflow_federated.python.core.impl.types import placements

    worker = _Worker(max_concurrent_calls, log_path)
    channel: Any = None
    try:
        info = worker.start()
        channel = grpc.insecure_channel(
            f"127.0.0.1:{info.port}",
            [
                ("grpc.max_message_length", _GRPC_MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
            ],
        )
        stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
        _wait_until_ready(stub, worker)

        def stack_fn(cardinalities: dict[Any, int]) -> Any:
            cardinalities.setdefault(placements.CLIENTS, 0)
            executor = remote_executor.RemoteExecutor(stub)
            executor.set_cardinalities(cardinalities)
            return executor

        context = sync_execution_context.SyncExecutionContext(
            executor_fn=python_executor_stacks.ResourceManagingExecutorFactory(stack_fn),
            compiler_fn=compiler.desugar_and_transform_to_native,
            transform_args=tensorflow_computation.transform_args,
            transform_result=tensorflow_computation.transform_result,
        )
        with context_stack_impl.context_stack.install(context):
            yield info
    finally:
        if channel is not None:
            channel.close()
        worker.stop()


def _wait_until_ready(stub: Any, worker: _Worker) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while not stub.is_ready:
        code = worker.returncode()
        if code is not None:
            raise TffRuntimeError(f"TFF's worker exited with status {code} before it was ready")
        if time.monotonic() > deadline:
            raise TffRuntimeError(f"TFF's worker was not ready after {_READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
