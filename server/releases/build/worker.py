"""``python -m fedge.server.releases.build.worker``: one release build, in its own process.

The server (:mod:`fedge.server.releases.build.builder`) starts it, writes one
:class:`~fedge.server.releases.build.wire.BuildJob` line on its stdin and
reads :class:`~fedge.server.releases.build.wire.BuildProgress` lines from its
stdout; the exit status says whether the bundle was written (0) or not.
The worker never opens the database and writes only under the job's
``out`` directory's parent, a directory the server made for this build.

It dies with the server: on Linux the kernel sends it SIGKILL when the
thread that started it ends (``PR_SET_PDEATHSIG``), and on any system it
exits when its stdin closes (the server's end of the pipe goes when the
server does, even by SIGKILL). Whatever it leaves is removed at the
server's next start, and never adopted: the server adopts a bundle only
from the directory it made for a build it runs.

Anything else written on stdout (a library printing) goes to stderr, so
the progress stream holds only progress lines.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, NoReturn

from fedge.errors import FedgeError
from fedge.server.releases.build.wire import DONE, ERROR, STARTED, BuildJob, BuildProgress

_PR_SET_PDEATHSIG = 1
_PARENT_GONE = 3  # the exit status when the server has gone


def main() -> NoReturn:
    job = BuildJob.from_line(sys.stdin.readline())
    _die_with_parent(job.parent_pid)
    progress = _progress_stream()

    def say(stage: str, message: str) -> None:
        progress.write(BuildProgress(stage, message, time.time()).to_line())
        progress.flush()

    status = _build(job, say)
    sys.stderr.flush()
    # Now, with the progress stream still open: once it closes the server
    # closes stdin, and the parent watch would exit with _PARENT_GONE
    # (nor should TensorFlow's teardown delay the answer).
    os._exit(status)


def _build(job: BuildJob, say: Callable[[str, str], None]) -> int:
    say(STARTED, f"worker {os.getpid()} started")
    try:
        from fedge.server.releases.build.convert import build_release

        build_release(job, say)
    except Exception as exc:  # every failure is the build's answer, reported as such
        say(ERROR, str(exc) if isinstance(exc, FedgeError) else f"{type(exc).__name__}: {exc}")
        return 1
    say(DONE, "the bundle is written")
    return 0


def _die_with_parent(parent_pid: int) -> None:
    """Exit when the server goes: by the kernel's signal where there is one,
    and when stdin (a pipe from the server) reaches its end."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # gone already, before the signal was asked for
        os._exit(_PARENT_GONE)
    threading.Thread(target=_exit_at_end_of_stdin, name="parent-watch", daemon=True).start()


def _exit_at_end_of_stdin() -> None:
    # The file descriptor itself: a buffered reader's lock, held by this
    # daemon thread, would stop the interpreter from finishing at exit.
    while os.read(sys.stdin.fileno(), 4096):
        pass
    os._exit(_PARENT_GONE)


def _progress_stream() -> IO[str]:
    """The real stdout, kept for progress lines; fd 1 becomes stderr."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return stream


if __name__ == "__main__":
    main()
