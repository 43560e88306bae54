"""Releases shared by the simulated devices of one process: one download each.

A thousand simulated devices on one machine need not download and store a
release a thousand times. :meth:`ReleaseCache.bundle` downloads a bundle
once (:func:`fedge.client_sim.device.releases.fetch_release`: every file checked
against the manifest, the manifest against the bundle id) into
``root/<bundle id>``, under a lock per bundle so devices asking at once
wait for the one download. Each device still makes its own check of the id
it was given: the manifest's sha256 must be that id (the files are
immutable under it, and were checked when they came).

:meth:`ReleaseCache.runtime` lends a runtime of a release: a
:class:`~fedge.client_sim.device.trainers.TfliteTrainer` on the bundle's own
``train.tflite`` (which holds the release's weights), for its ``infer``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedge.bundle.hashing import sha256_bytes
from fedge.bundle.manifest import MANIFEST_FILE, Manifest
from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.client_sim.device.releases import Release, fetch_release
from fedge.client_sim.device.trainers import TfliteTrainer, Trainer, TrainerPool
from fedge.converters.targets.training_optimizer import TrainingOptimizer
from fedge.errors import FedgeError

_OK = 200
KEPT_RUNTIMES = 3  # bundles whose runtimes stay loaded (the live one, a candidate, one more)


class NoRuntime(FedgeError):
    """A release this simulator cannot run (no ``train.tflite`` in its bundle)."""


class ReleaseCache:
    def __init__(self, root: Path, runtimes_per_bundle: int) -> None:
        self.root = root
        self._size = max(1, runtimes_per_bundle)
        self._lock = threading.Lock()
        self._bundle_locks: dict[str, threading.Lock] = {}
        self._paths: dict[str, Path] = {}
        self._runtimes: OrderedDict[str, TrainerPool] = OrderedDict()
        self.downloads = 0  # bundles downloaded (not taken from the cache)

    def bundle(self, client: FedgeClient, release: Release) -> Path:
        """The release's bundle directory, downloaded by ``client`` if no
        device of this process has it yet; checked against ``release.bundle_id``."""
        with self._lock_of(release.bundle_id):
            path = self._paths.get(release.bundle_id)
            if path is None:
                path = fetch_release(client, release, self.root)
                self._paths[release.bundle_id] = path
                self.downloads += 1
        check_given(path, release.bundle_id)
        return path

    @contextmanager
    def runtime(self, bundle_id: str) -> Iterator[Trainer]:
        """A runtime of a bundle :meth:`bundle` has, for one device at a time."""
        with self._lock:
            pool = self._runtimes.get(bundle_id)
            if pool is not None:
                self._runtimes.move_to_end(bundle_id)
        if pool is None:
            pool = self._load(bundle_id)
        with pool.borrow() as trainer:
            yield trainer

    def _load(self, bundle_id: str) -> TrainerPool:
        with self._lock_of(bundle_id):
            with self._lock:
                pool = self._runtimes.get(bundle_id)
                path = self._paths[bundle_id]
            if pool is not None:
                return pool
            manifest = Manifest.from_json(json.loads((path / MANIFEST_FILE).read_bytes()))
            training = (manifest.artifacts.get("tflite") or {}).get("training")
            if not training:
                raise NoRuntime(f"release bundle {bundle_id[:12]} has no TFLite training artifact")
            train = path / training["path"]
            optimizer = TrainingOptimizer.from_record(training)
            pool = TrainerPool(
                lambda: TfliteTrainer(train, manifest.weights, optimizer), self._size
            )
            with self._lock:
                self._runtimes[bundle_id] = pool
                while len(self._runtimes) > KEPT_RUNTIMES:
                    self._runtimes.popitem(last=False)  # lent runtimes stay usable
            return pool

    def _lock_of(self, bundle_id: str) -> threading.Lock:
        with self._lock:
            return self._bundle_locks.setdefault(bundle_id, threading.Lock())


def check_given(path: Path, bundle_id: str) -> None:
    """A device's own check: the bundle at ``path`` is the one it was given."""
    if sha256_bytes((path / MANIFEST_FILE).read_bytes()) != bundle_id:
        raise ProtocolError(
            _OK, "bundle_mismatch", f"{path} is not bundle {bundle_id[:12]} (manifest hash)"
        )
