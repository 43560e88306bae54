"""``fedge serve`` as a child process on a free loopback port, always stopped.

Test and benchmark scaffolding, not part of the installed package: the
end-to-end tests, the wheel test and ``bench.server_ingest_bench`` need the
real server process (its own interpreter, its own memory, killable with
SIGKILL), not an app object.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FEDGE = Path(sys.executable).parent / "fedge"
READY = "fedge serving on "


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]

    def rss_bytes(self) -> int:
        """The server's resident memory now (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def kill_hard(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def start(
    data_dir: Path,
    args: Sequence[str],
    log: Path,
    timeout: float = 120,
    admin_token: str = "admin-secret",
    prefix: Sequence[str] = (),
    fedge: Path = FEDGE,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LiveServer:
    """Start the server; return once it prints its URL (its stderr goes to ``log``).

    ``prefix`` runs it through another command (``nsenter ...``, say);
    ``fedge`` is the console script to run (another environment's, say),
    in ``cwd``, with ``environ`` (default: this process's) as its base."""
    base = os.environ if environ is None else environ
    env = {**base, "FEDGE_ADMIN_TOKEN": admin_token, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            [*prefix, str(fedge), "serve", "--data-dir", str(data_dir), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buffer = b""
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log}")
            if selector.select(timeout=0.5):
                chunk = os.read(process.stdout.fileno(), 4096)
                buffer += chunk
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith(READY):
                        return LiveServer(url=line[len(READY) :].strip(), process=process)
        raise RuntimeError(f"server not ready after {timeout} s; see {log}")
    except BaseException:
        stop(process)
        raise
    finally:
        selector.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def running(
    data_dir: Path,
    args: Sequence[str],
    log: Path,
    prefix: Sequence[str] = (),
    fedge: Path = FEDGE,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[LiveServer]:
    server = start(data_dir, args, log, prefix=prefix, fedge=fedge, cwd=cwd, environ=environ)
    try:
        yield server
    finally:
        stop(server.process)


@contextmanager
def serving_model(
    tmp_path: Path, bundle: Path, settings: Mapping[str, str] | None = None
) -> Iterator[LiveServer]:
    """``fedge serve --model bundle`` with its data and log under
    ``tmp_path`` and ``settings`` (``FEDGE_*`` variables) over this
    process's environment."""
    environ = {**os.environ, **(settings or {})}
    args = ["--model", str(bundle)]
    with running(tmp_path / "data", args, tmp_path / "server.log", environ=environ) as live:
        yield live
