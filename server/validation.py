"""Checks on an uploaded update, all before anything is stored.

Order: a header within the bound the model's spec implies, then the
canonical weight names/shapes/dtypes read from the header alone (before
any tensor data is touched), strict metadata, well-formed tensor data (the
``safetensors`` package decodes it), the round and base checkpoint it
claims, finite values, a positive example count, then the norm bound (clip
or reject). Each failure has a stable ``code`` that the metrics count
rejects by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedge.manifest import TensorSpec
from fedge.server.aggregation import clip_by_global_norm
from fedge.server.errors import BadRequest, Conflict, PayloadTooLarge, Unprocessable
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
    digest: str,
    round_id: int,
    base_checkpoint: str,
    specs: Sequence[TensorSpec],
    max_norm: float | None,
    norm_policy: str,
) -> ValidatedUpdate:
    try:
        update = decode_update(raw, specs)
    except CodecError as exc:
        if exc.code == "wrong_weights":
            raise Unprocessable(str(exc), code="wrong_weights") from exc
        if exc.code == "header_too_large":
            raise PayloadTooLarge(f"not a fedge update: {exc}", code=exc.code) from exc
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
    _check_finite(update)
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


def _check_finite(update: Update) -> None:
    for name, value in update.deltas.items():
        if not np.isfinite(value).all():
            raise Unprocessable(f"{name} holds NaN or infinite values", code="non_finite")
