"""A device asks which release it should run, and fetches it.

``GET /v1/releases/current`` names the release meant for this device (the
live one, or the candidate when the device is in its canary slice) by its
bundle id; the device polls it with the ETag it got last and hears 304
until that changes. The files come through
:func:`fedge.client_sim.device.bundle_download.download_bundle`, checked against
the bundle id, so the device trusts the id it was given and nothing else.
A device in the canary slice reports how the candidate did on its own data
with :func:`report_evaluation` (numbers only).
"""

from __future__ import annotations

from pathlib import Path

from fedge.client_sim.device.bundle_download import download_bundle
from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.wire.canary import CanaryWireError, Evaluation, EvaluationReceipt
from fedge.wire.releases import Release, ReleaseWireError

__all__ = ["Release", "current_release", "fetch_release", "report_evaluation"]

_NOT_MODIFIED = 304


def current_release(
    client: FedgeClient, etag: str | None, runtime: str | None = None
) -> Release | None:
    """The release meant for this device (on ``runtime``: the server keeps
    a release whose parity failed there off it); None when it is still the
    one whose ETag (:attr:`Release.etag`) is ``etag``. No release at all is
    a :class:`ProtocolError` 404 ``no_release``."""
    path = "/v1/releases/current" + (f"?runtime={runtime}" if runtime else "")
    reply = client.conditional_get(path, etag)
    if reply.status == _NOT_MODIFIED:
        return None
    try:
        return Release.from_json(reply.json())
    except (ValueError, ReleaseWireError) as exc:  # ValueError: not JSON at all
        raise ProtocolError(reply.status, "bad_release", str(exc)) from exc


def fetch_release(client: FedgeClient, release: Release, root: Path) -> Path:
    """Download ``release``'s bundle into ``root/<bundle id>`` (kept as it
    is when already there); returns that directory."""
    return download_bundle(client, release.bundle_id, root / release.bundle_id)


def report_evaluation(
    client: FedgeClient, version: int, evaluation: Evaluation
) -> EvaluationReceipt:
    """Send a canary evaluation of release ``version`` (numbers only); a
    refusal is a :class:`ProtocolError` with the server's code
    (``not_candidate`` once the candidate has been decided, say)."""
    reply = client.post_json(f"/v1/releases/{version}/evaluations", evaluation.to_json())
    try:
        return EvaluationReceipt.from_json(reply.json())
    except (ValueError, CanaryWireError) as exc:
        raise ProtocolError(reply.status, "bad_receipt", str(exc)) from exc
