"""Checks on an uploaded update, all before anything is stored.

Order: well-formed bytes, the round and base checkpoint it claims, the
canonical weight names/shapes/dtypes, finite values, a positive example
count, then the norm bound (clip or reject). Each failure has a stable
``code`` that the metrics count rejects by.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedge.manifest import TensorSpec
from fedge.server.aggregation import clip_by_global_norm
from fedge.server.errors import BadRequest, Conflict, Unprocessable
from fedge.update_codec import CodecError, Update, decode_update, encode_update, global_norm

MAX_NUM_EXAMPLES = 10_000_000


@dataclass(frozen=True)
class ValidatedUpdate:
    update: Update
    digest: str
    norm: float
    clipped: bool
    stored_bytes: bytes
    weight: float = 0.0


def validate_update(
    raw: bytes,
    round_id: int,
    base_checkpoint: str,
    specs: Sequence[TensorSpec],
    max_norm: float | None,
    norm_policy: str,
) -> ValidatedUpdate:
    digest = hashlib.sha256(raw).hexdigest()
    try:
        update = decode_update(raw)
    except CodecError as exc:
        raise BadRequest(f"not a fedge update: {exc}", code="malformed_update") from exc
    meta = update.meta
    if meta.round_id != round_id:
        raise BadRequest(
            f"the update is for round {meta.round_id}, uploaded to round {round_id}",
            code="wrong_round",
        )
    if meta.base_checkpoint != base_checkpoint:
        raise Conflict(
            f"the update was trained from checkpoint {meta.base_checkpoint[:12]}, the round's "
            f"base is {base_checkpoint[:12]}; download the current checkpoint",
            code="stale_base",
        )
    _check_weights(update, specs)
    if not 0 < meta.num_examples <= MAX_NUM_EXAMPLES:
        raise Unprocessable(
            f"num_examples must be in 1..{MAX_NUM_EXAMPLES}, got {meta.num_examples}",
            code="bad_num_examples",
        )
    norm = global_norm(update.deltas)
    if max_norm is None or norm <= max_norm:
        return ValidatedUpdate(update, digest, norm, False, raw)
    if norm_policy == "reject":
        raise Unprocessable(
            f"update norm {norm:.4g} exceeds the bound {max_norm:.4g}", code="norm_too_large"
        )
    clipped, _ = clip_by_global_norm(update.deltas, max_norm)
    clipped_update = Update(meta=meta, deltas=clipped)
    return ValidatedUpdate(clipped_update, digest, norm, True, encode_update(clipped_update))


def _check_weights(update: Update, specs: Sequence[TensorSpec]) -> None:
    expected = {s.name: s for s in specs}
    names = list(update.deltas)
    missing = [n for n in expected if n not in update.deltas]
    extra = [n for n in names if n not in expected]
    if missing or extra:
        raise Unprocessable(
            f"weight names differ from the model's: missing {missing[:5]}, unexpected {extra[:5]}",
            code="wrong_weights",
        )
    for name, value in update.deltas.items():
        spec = expected[name]
        if tuple(value.shape) != tuple(spec.shape):
            raise Unprocessable(
                f"{name}: shape {tuple(value.shape)}, the model has {tuple(spec.shape)}",
                code="wrong_weights",
            )
        if value.dtype.name != spec.dtype:
            raise Unprocessable(
                f"{name}: dtype {value.dtype.name}, the model has {spec.dtype}",
                code="wrong_weights",
            )
        if not np.isfinite(value).all():
            raise Unprocessable(f"{name} holds NaN or infinite values", code="non_finite")
