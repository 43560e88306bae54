"""Release builds: a round's checkpoint made into a release by a worker process.

:meth:`ReleaseBuilder.cut` records the new release as ``building`` and
returns at once (the view answers 202). A thread of the builder starts the
worker (``python -m fedge.server.releases.build.worker``), hands it the job, reads
its progress lines (``GET /v1/releases/<version>`` shows the latest) and,
once the worker has written the bundle, adopts it exactly as a push is
adopted (:meth:`fedge.server.releases.registry.Releases.adopt_build`): checked, put
into the bundle blob store, the release made the candidate. Any failure (the
worker's, a refused bundle, a timeout, the server stopping) makes the
release ``failed`` with the error; nothing else changes. One build at a
time; rounds go on meanwhile (the conversion is another process).

The converters (TFLite, TF.js, Core ML) write a bundle directory and read
files, so the worker is handed local copies of the checkpoint and the live
bundle (:meth:`~fedge.server.storage.blobs.BlobStore.local_path`) and writes
the new bundle locally; only the verified result goes into the blob store.

Crash safety: a build's files are only in the directory made for it under
``<data_dir>/release-builds/``, and the server adopts only from the
directory of the build this process runs. :func:`open_builder` at start
deletes everything under ``release-builds/`` and marks every release left
``building`` as ``failed`` ("interrupted by a restart"); the worker dies
with the server (see :mod:`fedge.server.releases.build.worker`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedge.server.config import ServerConfig
from fedge.server.errors import Conflict, NotFound, ServerError, Unavailable
from fedge.server.releases.actions import INITIAL_ACTOR
from fedge.server.releases.build import actions as build_actions
from fedge.server.releases.build.wire import ERROR, BuildJob, BuildProgress, BuildWireError
from fedge.server.releases.registry import Releases
from fedge.server.rounds.coordinator import Coordinator
from fedge.server.storage.blobs import BlobStore
from fedge.server.storage.data_dir import make_private_dir
from fedge.server.storage.store import Store
from fedge.wire.releases import ReleaseRecord

log = logging.getLogger("fedge.server")

BUILDS_DIR = "release-builds"
WORKER_MODULE = "fedge.server.releases.build.worker"
BUNDLE_DIR = "bundle"  # the worker writes the bundle here, in the build's directory
WORKER_LOG = "worker.log"  # its stderr
DEFAULT_ROLLOUT = 10.0


@dataclass(frozen=True)
class CutRequest:
    """What a cut asks for; ``checkpoint`` None: the current global checkpoint."""

    checkpoint: str | None = None
    notes: str = ""
    percent: float = DEFAULT_ROLLOUT
    by: str = "admin"
    why: str | None = None


class _Build:
    """One build in progress: its release, directory, worker and progress."""

    def __init__(self, version: int, by: str, workdir: Path) -> None:
        self.version, self.by, self.workdir = version, by, workdir
        self.progress = BuildProgress("queued", "starting the worker", time.time())
        self.thread: threading.Thread | None = None
        self.ended_by: str | None = None  # why the worker was stopped, if it was
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def attach(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._process = process
            if self.ended_by is not None:
                process.kill()

    def end(self, reason: str) -> None:
        """Stop the worker now (SIGKILL: it holds nothing the server keeps)."""
        with self._lock:
            self.ended_by = self.ended_by or reason
            if self._process is not None and self._process.poll() is None:
                self._process.kill()


class ReleaseBuilder:
    def __init__(
        self,
        data_dir: Path,
        store: Store,
        releases: Releases,
        checkpoints: BlobStore,
        current_checkpoint: Callable[[], str],
        timeout_s: float,
    ) -> None:
        self._data_dir, self._store, self._releases = data_dir, store, releases
        self._checkpoints, self._current = checkpoints, current_checkpoint
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._build: _Build | None = None
        self._stopping = False

    def cut(self, request: CutRequest) -> ReleaseRecord:
        """Record the release as ``building`` and start its worker; refuses
        (409 ``release_building``) while another build runs."""
        with self._lock:
            if self._stopping:
                raise Unavailable("the server is stopping", code="stopping")
            if self._build is not None:
                raise Conflict(
                    f"release {self._build.version} is being built; cut again once it has ended",
                    code="release_building",
                )
            return self._start(request)

    def progress(self, version: int) -> BuildProgress | None:
        """The latest progress of release ``version``, while this process builds it."""
        build = self._build
        return build.progress if build is not None and build.version == version else None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker (the release becomes ``failed``) and refuse new builds."""
        with self._lock:
            self._stopping = True
            build = self._build
        if build is not None:
            build.end("the server stopped during the build")
            if build.thread is not None:
                build.thread.join(timeout)

    def _start(self, request: CutRequest) -> ReleaseRecord:
        with self._store.reading() as tx:
            live = tx.releases.in_state("live")
        if live is None or live.bundle_id is None:
            raise Conflict(
                "there is no live release to take the model from: push a bundle first "
                "(fedge push), then releases can be cut from checkpoints",
                code="no_live_release",
            )
        checkpoint = request.checkpoint or self._current()
        with self._store.reading() as tx:
            found = tx.checkpoints.made_by(checkpoint)
        if found is None:
            raise NotFound(f"no checkpoint {checkpoint}", code="unknown_checkpoint")
        round_id, checkpoint_file = found
        root = self._data_dir / BUILDS_DIR
        make_private_dir(root)
        workdir = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            with self._store.transaction() as tx:
                record = build_actions.add_building(
                    tx,
                    name=self._releases.name,
                    source=f"round:{round_id}",
                    percent=request.percent,
                    notes=request.notes,
                    by=request.by,
                    why=request.why,
                    details={"checkpoint": checkpoint, "round_id": round_id, "live": live.version},
                )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        # The worker (another process) converts from local files: the blobs' local copies.
        job = BuildJob(
            live_bundle=str(self._releases.blobs.local_path(live.bundle_id)),
            checkpoint=str(self._checkpoints.local_path(checkpoint_file)),
            out=str(workdir / BUNDLE_DIR),
            version=str(record.version),
            parent_pid=os.getpid(),
        )
        build = _Build(record.version, request.by, workdir)
        # The thread starts the worker and lives as long as it: on Linux the
        # worker's parent-death signal follows the thread that started it.
        build.thread = threading.Thread(
            target=self._run, args=(build, job), name=f"fedge-release-{record.version}", daemon=True
        )
        self._build = build
        build.thread.start()
        log.info("release %d: building from checkpoint %s", record.version, checkpoint[:12])
        return record

    def _run(self, build: _Build, job: BuildJob) -> None:
        try:
            error = self._outcome(build, job)
            if error is not None:
                self._fail(build, error)
        finally:
            with self._lock:
                self._build = None
            self._store.close_thread_connection()

    def _outcome(self, build: _Build, job: BuildJob) -> str | None:
        """None once the release is adopted, else why it failed."""
        try:
            error = self._convert(build, job)
            if error is None:
                build.progress = BuildProgress("adopting", "checking the bundle", time.time())
                self._releases.adopt_build(Path(job.out), build.version)
                log.info("release %d: built", build.version)
            return error
        except ServerError as exc:  # the bundle refused, as a push would be
            return f"the built bundle was refused: {exc.message}"
        except Exception as exc:  # anything else fails the build, not the server
            log.exception("release %d: build failed", build.version)
            return f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(build.workdir, ignore_errors=True)

    def _convert(self, build: _Build, job: BuildJob) -> str | None:
        """Run the worker to its end; None if it wrote the bundle."""
        with open(build.workdir / WORKER_LOG, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=build.workdir,
                env={"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ},
            )
        build.attach(process)
        limit = f"it ran past release_build_timeout_s ({self._timeout_s:g} s)"
        timer = threading.Timer(self._timeout_s, build.end, [limit])
        timer.daemon = True
        timer.start()
        try:
            error = self._follow(build, process, job)
            code = process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if build.ended_by is not None:
            return f"the worker was stopped: {build.ended_by}"
        if code == 0:
            return None
        return error or f"the worker exited with status {code}: {_tail(build.workdir / WORKER_LOG)}"

    def _follow(self, build: _Build, process: subprocess.Popen[bytes], job: BuildJob) -> str | None:
        """Send the job, read progress to the end of the worker's output;
        returns the error the worker reported, if any. stdin stays open
        while the worker runs: its end tells the worker the server has gone."""
        assert process.stdin is not None and process.stdout is not None  # both PIPE
        try:
            process.stdin.write(job.to_line().encode())
            process.stdin.flush()
        except OSError:
            pass  # the worker is gone already; its status says why
        error = None
        with process.stdin, process.stdout:
            for raw in process.stdout:
                try:
                    progress = BuildProgress.from_line(raw.decode(errors="replace"))
                except BuildWireError:
                    log.warning("release %d: worker said %r", build.version, raw[:200])
                    continue
                build.progress = progress
                log.info("release %d: %s: %s", build.version, progress.stage, progress.message)
                if progress.stage == ERROR:
                    error = progress.message
        return error

    def _fail(self, build: _Build, error: str) -> None:
        log.warning("release %d: build failed: %s", build.version, error)
        try:
            with self._store.transaction() as tx:
                build_actions.fail_building(tx, build.version, error, build.by)
        except Exception:  # the next start marks it failed
            log.exception("release %d: could not record the failure", build.version)


def open_builder(
    config: ServerConfig, store: Store, releases: Releases, coordinator: Coordinator
) -> ReleaseBuilder:
    """The builder at start: what earlier builds left is deleted, and a
    release still ``building`` (its server died) becomes ``failed``."""
    shutil.rmtree(config.data_dir / BUILDS_DIR, ignore_errors=True)
    with store.transaction() as tx:
        interrupted = build_actions.fail_interrupted(tx, INITIAL_ACTOR)
    for version in interrupted:
        log.warning("release %d: its build was interrupted by a restart; it failed", version)
    return ReleaseBuilder(
        config.data_dir,
        store,
        releases,
        coordinator.blobs.checkpoints,
        lambda: coordinator.current_checkpoint,
        config.release_build_timeout_s,
    )


def _tail(path: Path, chars: int = 500) -> str:
    """The end of the worker's stderr (where a crash says why)."""
    try:
        text = path.read_bytes()[-4 * chars :].decode(errors="replace")
    except OSError:
        return "no output"
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[-chars:]
