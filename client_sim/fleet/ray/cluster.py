"""The Ray cluster a fleet's devices run on: an existing one, or a small local one.

Ray is an optional extra (``pip install 'fedge[ray]'``): nothing here
imports it at module level, and :func:`require_ray` turns its absence into
a :class:`~fedge.errors.ConfigError` that says how to install it.

:func:`ray_cluster` connects to ``address`` (an existing cluster: ``auto``,
``HOST:PORT`` or ``ray://HOST:PORT``) or, with none, starts a local Ray for
this process: no dashboard, its sessions and logs in a temporary folder
that is removed afterwards. A cluster this process connected to or
started is shut down on the way out (which, for a local one, stops its
``raylet``, ``gcs_server`` and workers); one that was already connected
when it was called belongs to the caller and is left as it is.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

from fedge.errors import ConfigError

INSTALL_HINT = "pip install 'fedge[ray]'"
# A local cluster's shared-memory object store: the fleet moves device data
# and weights through it, not datasets; Ray spills to disk past this.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


class RayMissingError(ConfigError):
    """``--backend ray`` without Ray installed."""


def require_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`RayMissingError` naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError(
            f"--backend ray needs Ray, an optional extra of fedge: {INSTALL_HINT}"
        ) from exc
    return ray


@dataclass(frozen=True)
class Cluster:
    """What the fleet needs to know of the cluster it runs on."""

    cpus: float
    local: bool  # started here, for this process alone


def local_cpus() -> int:
    """CPUs a local cluster offers: this machine's."""
    return os.cpu_count() or 1


@contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[Cluster]:
    """Connected to ``address``, or to a local Ray of ``num_cpus`` CPUs
    (default: :func:`local_cpus`) started for the duration."""
    ray = require_ray()
    if ray.is_initialized():  # the caller's connection: use it, leave it open
        yield Cluster(cpus=float(ray.cluster_resources().get("CPU", 1.0)), local=False)
        return
    # A local Ray's sessions and logs; its socket paths must stay short: in /tmp.
    temp_dir = None
    if address is None:
        temp_dir = tempfile.mkdtemp(prefix="fedge-ray-", dir="/tmp" if os.name == "posix" else None)
    try:
        if temp_dir is not None:
            ray.init(
                num_cpus=num_cpus or local_cpus(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                _temp_dir=temp_dir,
            )
        else:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise ConfigError(f"no Ray cluster at {address}: {exc}") from exc
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        yield Cluster(cpus=cpus, local=temp_dir is not None)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
