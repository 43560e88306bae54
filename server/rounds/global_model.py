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
from fedge.server.rounds.strategy import load_strategy_state
from fedge.server.storage import rounds as rs
from fedge.server.storage.blobs import BlobStore, BlobStores
from fedge.server.storage.store import Tx
from fedge.wire.update_codec import Checkpoint, Weights, decode_checkpoint
from fedge.wire.weight_spec import ModelSpec

CURRENT_CHECKPOINT = "current_checkpoint"


@dataclass(frozen=True)
class GlobalModel:
    checkpoint_id: str
    weights: Weights
    state: ServerState


def read_checkpoint(blobs: BlobStore, checkpoint_id: str, specs: ModelSpec) -> Checkpoint:
    return decode_checkpoint(blobs.get(rs.checkpoint_file(checkpoint_id)), specs)


def load_global_model(
    tx: Tx, checkpoint_id: str, blobs: BlobStores, specs: ModelSpec
) -> GlobalModel:
    weights = read_checkpoint(blobs.checkpoints, checkpoint_id, specs).weights
    state = load_strategy_state(blobs.strategy, checkpoint_id, tx.rounds.count_closed())
    return GlobalModel(checkpoint_id, weights, state)
