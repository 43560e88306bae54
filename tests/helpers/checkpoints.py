"""A checkpoint fetched from a live server the way a device fetches it, its
content address checked. Test scaffolding, not part of the installed package."""

from __future__ import annotations

import hashlib

import requests

from fedge.wire.update_codec import decode_checkpoint
from fedge.wire.weight_spec import ModelSpec, Weights


def fetch_checkpoint(url: str, token: str, checkpoint_id: str, spec: ModelSpec) -> Weights:
    reply = requests.get(
        f"{url}/v1/checkpoints/{checkpoint_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert hashlib.sha256(reply.content).hexdigest() == checkpoint_id
    return decode_checkpoint(reply.content, spec).weights
