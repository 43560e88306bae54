"""What the views need, attached to the app (not module globals).

Views reach it with :func:`context` inside a request; the app factory
(:mod:`fedge.server.http.app`) builds it and attaches it under
:data:`EXTENSION`. Kept apart from the factory so that the blueprints, which
the factory registers, do not import it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask

from fedge.server.config import ServerConfig
from fedge.server.devices.expiry import DeviceExpiry
from fedge.server.devices.issuer import DeviceIssuer
from fedge.server.events.feed import EventFeed
from fedge.server.http.request_limits import RequestLimits
from fedge.server.predict.serving import ServingModels
from fedge.server.releases.build.builder import ReleaseBuilder
from fedge.server.releases.registry import Releases
from fedge.server.rounds.coordinator import Coordinator
from fedge.server.rounds.rejection_tally import RejectionTally
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.bundles import StoredBundle
from fedge.server.storage.data_dir import DataDirLock
from fedge.server.storage.store import Store

EXTENSION = "fedge"


@dataclass
class ServerContext:
    """What the views need, attached to the app (not module globals)."""

    config: ServerConfig
    store: Store  # every row: rounds, devices, events, releases, canary reports
    blobs: BlobStores  # the bytes rows point at: updates, checkpoints, strategy state, bundles
    coordinator: Coordinator
    admin_token: str
    limits: RequestLimits
    lock: DataDirLock
    releases: Releases  # the releases devices are given, and their bundles
    builds: ReleaseBuilder  # releases cut from checkpoints, by a worker process
    bundle: StoredBundle | None = None  # the bundle the model came from, if any
    # The TFLite model predict runs, loaded (with TensorFlow) on first use.
    serving: ServingModels = field(default_factory=ServingModels)
    # Wakes event streams when events commit; ends them when the server stops.
    events: EventFeed = field(default_factory=EventFeed)
    # Refused uploads by reason for recent rounds (in memory: a 4xx stores nothing).
    rejections: RejectionTally = field(default_factory=RejectionTally)
    # Checks enrolments' identity tokens (device_issuer); None: not needed.
    issuer: DeviceIssuer | None = None
    # Forgets devices not seen for device_ttl_s (a thread); None: never.
    expiry: DeviceExpiry | None = None

    def close(self) -> None:
        """End event streams, stop the round driver and any release build,
        stop listening to the database, release the lock."""
        self.events.close()
        if self.expiry is not None:
            self.expiry.stop()
        self.coordinator.stop()
        self.builds.stop()
        self.store.close()
        self.lock.release()


def context() -> ServerContext:
    from flask import current_app

    return context_of(current_app)


def context_of(app: Flask) -> ServerContext:
    ctx: ServerContext = app.extensions[EXTENSION]
    return ctx
