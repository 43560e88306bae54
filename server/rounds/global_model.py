"""The model the rounds train: the current checkpoint's id and weights, and
the server optimizer's state (momentum, Adam's moments) saved beside it.

Read back at start (:mod:`fedge.server.rounds.recovery`), replaced when a round
closes (:mod:`fedge.server.rounds.lifecycle`); every round opens on
:attr:`GlobalModel.checkpoint_id`. The id is also kept in the database
(``server_state``), where it changes in the transaction that closes the round.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedge.server.aggregation.strategies import ServerState
from fedge.server.errors import ConfigurationError
from fedge.server.rounds.strategy import load_strategy_state
from fedge.server.storage import rounds as rs
from fedge.server.storage.blobs import BlobStore, BlobStores
from fedge.server.storage.store import Tx
from fedge.wire.update_codec import Checkpoint, Weights, content_id, decode_checkpoint
from fedge.wire.weight_spec import ModelSpec

CURRENT_CHECKPOINT = "current_checkpoint"


@dataclass(frozen=True)
class GlobalModel:
    checkpoint_id: str
    weights: Weights
    state: ServerState


def read_checkpoint(blobs: BlobStore, checkpoint_id: str, specs: ModelSpec) -> Checkpoint:
    """The checkpoint, checked against its id (the sha256 of its bytes): a
    blob damaged on disk, or by an object store, is refused rather than trained from."""
    data = blobs.get(rs.checkpoint_file(checkpoint_id))
    if content_id(data) != checkpoint_id:
        raise ConfigurationError(
            f"the checkpoint {checkpoint_id} is damaged (its bytes' sha256 is "
            f"{content_id(data)}); restore {rs.checkpoint_file(checkpoint_id)} of the "
            "checkpoints blob store from a backup"
        )
    return decode_checkpoint(data, specs)


def load_global_model(
    tx: Tx, checkpoint_id: str, blobs: BlobStores, specs: ModelSpec
) -> GlobalModel:
    weights = read_checkpoint(blobs.checkpoints, checkpoint_id, specs).weights
    state = load_strategy_state(blobs.strategy, checkpoint_id, tx.rounds.count_closed())
    return GlobalModel(checkpoint_id, weights, state)
