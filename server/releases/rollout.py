"""Which devices get the candidate release: a keyed hash of the device id.

A device's bucket for a candidate is a number in [0, 100) with two
decimals, from the HMAC-SHA256, keyed with the server's secret
(:mod:`.slice_key`), of ``"<candidate bundle id>:<device id>"``; the
device gets the candidate iff its bucket is below the rollout percent. So
the slice is the same on every request, every server of one store and
after a restart, raising the percent only adds devices, and each
candidate draws its own slice (not the same devices every time). Without
the key nobody computes the slice offline (a plain hash let an attacker
enrol devices until enough of his landed in it). Pure functions: the
caller passes the key.
"""

from __future__ import annotations

import hashlib
import hmac

from fedge.wire.releases import Release, ReleaseRecord

BUCKETS = 10_000  # 0.01 % steps


def bucket(key: bytes, candidate_bundle_id: str, device_id: str) -> float:
    message = f"{candidate_bundle_id}:{device_id}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return int(digest[:8], 16) % BUCKETS / 100


def in_canary(key: bytes, candidate_bundle_id: str, device_id: str, percent: float) -> bool:
    return bucket(key, candidate_bundle_id, device_id) < percent


def release_for(
    key: bytes, device_id: str, live: ReleaseRecord | None, candidate: ReleaseRecord | None
) -> Release | None:
    """The release meant for ``device_id``: the candidate if the device is
    in its slice (or nothing is live), else the live one; None without either."""
    if candidate is not None and (
        live is None or in_canary(key, _bundle(candidate), device_id, candidate.percent)
    ):
        return _release(candidate, "canary")
    return _release(live, "live") if live is not None else None


def _bundle(record: ReleaseRecord) -> str:
    if record.bundle_id is None:  # only a release being built has none
        raise ValueError(f"release {record.version} ({record.state}) has no bundle")
    return record.bundle_id


def _release(record: ReleaseRecord, channel: str) -> Release:
    bundle_id = _bundle(record)
    return Release(record.version, bundle_id, record.name, channel, f"/v1/bundles/{bundle_id}/")
