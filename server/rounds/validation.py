"""Checks on an uploaded update, all before anything is stored.

Order: a header within the bound the model's spec implies, then the
canonical weight names/shapes/dtypes read from the header alone (before
any tensor data is touched), strict metadata, well-formed tensor data (the
codec, :mod:`fedge.wire.update_codec`), then the stages of
:mod:`fedge.server.aggregation.pipeline`: ``bounds`` (the round and base
checkpoint it claims, finite values, a positive example count; the norm,
measured once), the norm bound (clip or reject), and whatever stages the
round's strategy adds (central DP's clip, the weight). Each failure has a
stable ``code`` that the metrics count rejects by.

This is where the pipeline's refusals become HTTP errors: the aggregation
layer knows nothing of HTTP, so its :class:`UpdateRefused` says what kind
of refusal it is and :func:`_as_http_error` picks the status.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from fedge.server.aggregation.errors import RefusalKind, UpdateRefused
from fedge.server.aggregation.pipeline import (
    MAX_NUM_EXAMPLES,
    Bounds,
    Candidate,
    Stage,
    norm_stages,
    run_stages,
)
from fedge.server.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    ServerError,
    Unprocessable,
)
from fedge.wire.update_codec import CodecError, Update, decode_update, encode_update
from fedge.wire.weight_spec import ModelSpec

__all__ = ["MAX_NUM_EXAMPLES", "ValidatedUpdate", "continue_validation", "validate_update"]

# The HTTP error that answers each kind of refusal: another round's update
# is a bad request, one from an old base conflicts with the round's state.
_HTTP_ERROR: Mapping[RefusalKind, type[ServerError]] = {
    "misdirected": BadRequest,
    "stale": Conflict,
    "invalid": Unprocessable,
}


@contextmanager
def _as_http_error() -> Iterator[None]:
    """Re-raise a pipeline stage's refusal as the HTTP error of its kind,
    with the same code and message."""
    try:
        yield
    except UpdateRefused as refused:
        raise _HTTP_ERROR[refused.kind](refused.message, code=refused.code) from refused


@dataclass(frozen=True)
class ValidatedUpdate:
    """An accepted update as it is stored and averaged.

    ``norm`` is the L2 norm as received (measured once); ``update`` and
    ``stored_bytes`` hold the deltas scaled by ``scale`` (1 unless a stage
    clipped: ``clipped`` then, and ``clipped_by`` names the stages);
    ``weight`` is the accumulation weight once a weigh stage has run."""

    update: Update
    digest: str
    norm: float
    clipped: bool
    stored_bytes: bytes
    weight: float = 0.0
    scale: float = 1.0
    clipped_by: tuple[str, ...] = ()
    untrained: frozenset[str] = frozenset()

    @property
    def clipped_norm(self) -> float:
        """The norm of the stored deltas."""
        return self.norm * self.scale


def validate_update(
    raw: bytes,
    digest: str,
    round_id: int,
    base_checkpoint: str,
    specs: ModelSpec,
    max_norm: float | None,
    norm_policy: str,
    *,
    stages: Sequence[Stage] = (),
    untrained: frozenset[str] = frozenset(),
) -> ValidatedUpdate:
    """Decode ``raw`` against the model's spec and run the pipeline: bounds,
    the norm bound (``max_norm`` with ``norm_policy``), then ``stages``.
    ``untrained`` deltas (the model's state) are outside the norm and the
    clips."""
    try:
        update = decode_update(raw, specs)
    except CodecError as exc:
        if exc.code == "wrong_weights":
            raise Unprocessable(str(exc), code="wrong_weights") from exc
        if exc.code == "header_too_large":
            raise PayloadTooLarge(f"not a fedge update: {exc}", code=exc.code) from exc
        raise BadRequest(f"not a fedge update: {exc}", code="malformed_update") from exc
    with _as_http_error():
        candidate = Bounds(round_id, base_checkpoint, untrained=untrained).admit(update)
        candidate = run_stages(candidate, (*norm_stages(max_norm, norm_policy), *stages))
    return _finish(update, digest, raw, candidate)


def continue_validation(valid: ValidatedUpdate, stages: Sequence[Stage]) -> ValidatedUpdate:
    """Run more stages on an update that :func:`validate_update` accepted,
    with the norm it measured (for callers that add the strategy's stages
    in a second step)."""
    update = valid.update
    candidate = Candidate(
        deltas=update.deltas,
        num_examples=update.meta.num_examples,
        norm=valid.norm,
        scale=valid.scale,
        held_scale=valid.scale,
        weight=valid.weight,
        clipped_by=valid.clipped_by,
        untrained=valid.untrained,
    )
    with _as_http_error():
        candidate = run_stages(candidate, stages)
    return _finish(update, valid.digest, valid.stored_bytes, candidate)


def _finish(update: Update, digest: str, held: bytes, candidate: Candidate) -> ValidatedUpdate:
    """The candidate as stored: the deltas scaled (once) and re-encoded
    only when a stage clipped since ``held`` was encoded."""
    stored, stored_bytes = update, held
    if candidate.scale != candidate.held_scale:
        stored = Update(meta=update.meta, deltas=candidate.scaled_deltas())
        stored_bytes = encode_update(stored)
    return ValidatedUpdate(
        update=stored,
        digest=digest,
        norm=candidate.norm,
        clipped=candidate.clipped,
        stored_bytes=stored_bytes,
        weight=candidate.weight,
        scale=candidate.scale,
        clipped_by=candidate.clipped_by,
        untrained=candidate.untrained,
    )
