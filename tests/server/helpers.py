"""Builders for server tests: a tiny model with hand-checkable numbers."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedge.manifest import TensorSpec
from fedge.server.app import InitialModel
from fedge.update_codec import Update, UpdateMeta, encode_update

SPECS = [TensorSpec("dense/kernel", (2, 2), "float32"), TensorSpec("dense/bias", (2,), "float32")]
SHAPES = {"dense/kernel": (2, 2), "dense/bias": (2,)}


def tiny_model() -> InitialModel:
    """Two weights, all zeros: a new checkpoint equals the aggregated delta."""
    return InitialModel(
        name="tiny",
        specs=list(SPECS),
        weights={name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()},
    )


def constant_update(
    round_id: int,
    base: str,
    value: float,
    num_examples: int = 1,
    overrides: dict[str, Any] | None = None,
) -> bytes:
    """Every delta element equals ``value`` (``overrides`` replaces tensors)."""
    deltas: dict[str, Any] = {n: np.full(shape, value, np.float32) for n, shape in SHAPES.items()}
    deltas.update(overrides or {})
    meta = UpdateMeta(
        round_id=round_id, base_checkpoint=base, num_examples=num_examples, metrics={"loss": 1.0}
    )
    return encode_update(Update(meta=meta, deltas=deltas))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


OCTET = "application/octet-stream"
