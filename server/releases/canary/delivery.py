"""The release meant for a device, with parity on its runtime (issue 23).

:func:`fedge.server.releases.rollout.release_for` picks the candidate or the
live release by the keyed canary slice. A device that names its runtime
(``GET /v1/releases/current?runtime=tfjs-webgl``) is kept off a release
whose parity failed on that runtime (:mod:`.parity`): in the slice of such
a candidate it gets the live release; when such a release was promoted (it
passed on the other runtimes) it gets the newest earlier release that did
not fail there. A device that names no runtime, or a false one, only
chooses what it is sent itself: the runtime is never a say in the decision.
"""

from __future__ import annotations

from typing import Any

from fedge.server.releases import slice_key
from fedge.server.releases.canary import parity
from fedge.server.releases.canary.decision import Policy
from fedge.server.releases.rollout import release_for
from fedge.server.storage.store import Tx
from fedge.wire.releases import Release, ReleaseRecord

EARLIER_RELEASES = 20  # how far back a held-off runtime looks for one that passed


def failed_runtimes(tx: Tx, record: ReleaseRecord, policy: Policy) -> set[str]:
    counted = tx.canary.counted(record.version, record.created_at, policy.require_history)
    return parity.failed((r.evaluation for r in counted), policy.parity)


def parity_of(tx: Tx, record: ReleaseRecord, policy: Policy) -> dict[str, Any]:
    """``{runtime: {devices, failing, max_error, agreement, ok}}`` for a release
    (the canary ``policy``: which reports count, and the parity rule)."""
    counted = tx.canary.counted(record.version, record.created_at, policy.require_history)
    found = parity.by_runtime((r.evaluation for r in counted), policy.parity)
    return {runtime: shown.to_json() for runtime, shown in found.items()}


def meant_for(tx: Tx, device_id: str, runtime: str | None, policy: Policy) -> Release | None:
    live, candidate = tx.releases.delivering()
    key = slice_key.of(tx.state)
    meant = release_for(key, device_id, live, candidate)
    if runtime is None or meant is None:
        return meant
    if candidate is not None and meant.version == candidate.version:
        if live is not None and runtime in failed_runtimes(tx, candidate, policy):
            return release_for(key, device_id, live, None)
        return meant
    if live is None or runtime not in failed_runtimes(tx, live, policy):
        return meant
    for earlier in tx.releases.recent(EARLIER_RELEASES + 2):
        usable = earlier.state == "retired" and earlier.bundle_id is not None
        if (
            usable
            and earlier.version < live.version
            and runtime not in failed_runtimes(tx, earlier, policy)
        ):
            return release_for(key, device_id, earlier, None)
    return meant
