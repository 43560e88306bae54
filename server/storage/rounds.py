"""The records of rounds, updates and checkpoints, and checkpoint blobs.

The records are what :class:`~fedge.server.storage.store.Store` reads and
writes; the SQL is in :mod:`fedge.server.storage.sqlite`. Checkpoints are
blobs of the checkpoints store (:mod:`fedge.server.storage.blobs`),
content-addressed (``<sha256>.safetensors``) and durable before their row
is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from fedge.server.storage.blobs import BlobStore
from fedge.wire.strict_json import finite_or_null
from fedge.wire.update_codec import Checkpoint, content_id, encode_checkpoint


class CheckpointRecorder(Protocol):
    """What :func:`store_checkpoint` needs of the store's checkpoint rows
    (:class:`~fedge.server.storage.store.CheckpointRows` has it): the rows
    module stays below the interface that returns its records."""

    def add(self, checkpoint_id: str, round_id: int, file_name: str, size: int) -> None: ...


@dataclass(frozen=True)
class RoundRecord:
    id: int
    state: str
    base_checkpoint: str
    config: dict[str, Any]
    opened_at: float
    deadline_at: float
    closed_at: float | None
    result_checkpoint: str | None
    metrics: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "round_id": self.id,
            "state": self.state,
            "base_checkpoint": self.base_checkpoint,
            "config": self.config,
            "opened_at": self.opened_at,
            "deadline_at": self.deadline_at,
            "closed_at": self.closed_at,
            "result_checkpoint": self.result_checkpoint,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class UpdateRecord:
    """An accepted upload: its receipt, and where its bytes are: ``path``,
    under the updates directory (empty once retention deleted it), is its
    own file when ``segment`` is empty (data directories before segments),
    else its name (``r<round>/<device>-<digest>``, what a retry is found
    by) and the bytes are the record at ``segment_offset`` of ``segment``
    (:mod:`fedge.server.storage.segments`)."""

    round_id: int
    device_id: str
    digest: str
    num_examples: int
    norm: float
    clipped: bool
    path: str
    bytes: int
    metrics: dict[str, Any]
    received_at: float
    segment: str = ""
    segment_offset: int = 0

    def receipt(self) -> dict[str, Any]:
        """What the device is told once its update is stored (and on a retry)."""
        return {
            "round_id": self.round_id,
            "device_id": self.device_id,
            "digest": self.digest,
            "num_examples": self.num_examples,
            "norm": self.norm,
            "clipped": self.clipped,
            "received_at": self.received_at,
        }


class StateChanged(Exception):
    """A compare-and-set on a round's state found another state: someone
    else (another process on the same database) changed it first."""


def store_checkpoint(
    checkpoints: CheckpointRecorder, blobs: BlobStore, checkpoint: Checkpoint
) -> str:
    """Put the checkpoint's blob (once: it is named by its content) and record it."""
    data = encode_checkpoint(checkpoint)
    checkpoint_id = content_id(data)
    name = checkpoint_file(checkpoint_id)
    if not blobs.exists(name):
        blobs.put(name, data)
    checkpoints.add(checkpoint_id, checkpoint.round_id, name, len(data))
    return checkpoint_id


def checkpoint_file(checkpoint_id: str) -> str:
    """The name of a checkpoint's blob (and of its strategy state's)."""
    return f"{checkpoint_id}.safetensors"


def json_text(value: Any) -> str:
    """Strict JSON for the database and the API: a non-finite float (an
    epsilon of inf, say) becomes null rather than the non-JSON ``Infinity``."""
    return json.dumps(finite_or_null(value), allow_nan=False)
