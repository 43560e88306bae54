"""The wire format of ``POST /v1/models/{name}/predict``, both ways.

A request is ``{"inputs": {"<input name>": [row, ...]}}`` (or, for a
one-input model, ``{"inputs": [row, ...]}``): a batch per input, first axis
the batch. :func:`parse_predict_request` turns it into one array per model
input, in the manifest's order, or refuses it with a stable code that names
the input and the shape it takes:

| code | status | what |
|---|---|---|
| ``bad_json`` | 400 | not a ``{"inputs": ...}`` object |
| ``unknown_input`` / ``missing_input`` | 400 | a name the model lacks / an input not given |
| ``batch_too_large`` | 413 | more rows than ``max_predict_batch`` |
| ``bad_shape`` | 422 | not a rectangular batch of the input's shape (``None`` dims free) |
| ``bad_dtype`` | 422 | strings, booleans, nulls, or fractions for an integer input |
| ``not_finite`` / ``out_of_range`` | 422 | ``1e999``; a value beyond the input's dtype |

The checks walk the nested lists level by level before NumPy sees them:
``np.asarray`` alone would take ``true`` as 1 and make a string array of a
batch with one string in it. A response is :class:`PredictResult`, strict
JSON: a non-finite output is ``null``, read back as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.bundle.manifest import TensorSpec
from fedge.server.errors import BadRequest, PayloadTooLarge, Unprocessable
from fedge.wire.strict_json import finite_or_null

Array = npt.NDArray[Any]
_JSON_KINDS = {str: "strings", bool: "booleans", type(None): "nulls", dict: "objects"}


@dataclass(frozen=True)
class PredictResult:
    """The outputs by name and the bundle that made them."""

    outputs: dict[str, Array]
    bundle_id: str
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "outputs": {
                name: finite_or_null(array.tolist()) for name, array in self.outputs.items()
            },
            "bundle_id": self.bundle_id,
        }
        if self.version is not None:
            raw["version"] = self.version
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PredictResult:
        outputs = {
            str(name): np.array(values, dtype=np.float64)  # null (non-finite) -> NaN
            for name, values in raw["outputs"].items()
        }
        version = raw.get("version")
        return cls(outputs, str(raw["bundle_id"]), None if version is None else str(version))


def predict_body(inputs: Mapping[str, npt.ArrayLike]) -> dict[str, Any]:
    """A request for ``inputs`` (one batch per input name), as a client sends it."""
    return {"inputs": {name: np.asarray(batch).tolist() for name, batch in inputs.items()}}


def shape_text(spec: TensorSpec) -> str:
    """``(batch, 8, 8, 1)``: the first axis is always the batch, ``any`` a free dim."""
    dims = ["any" if d is None else str(d) for d in spec.shape[1:]]
    return f"({', '.join(['batch', *dims])})"


def describe(spec: TensorSpec) -> str:
    return f"{spec.name!r} {shape_text(spec)} {spec.dtype}"


def parse_predict_request(
    body: Mapping[str, Any], specs: Sequence[TensorSpec], max_batch: int
) -> list[Array]:
    """One checked array per input of ``specs``, cast to its dtype."""
    named = _named_inputs(body, specs)
    arrays = [_array(named[spec.name], spec, max_batch) for spec in specs]
    rows = {spec.name: len(array) for spec, array in zip(specs, arrays, strict=True)}
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{name!r} has {n}" for name, n in rows.items())
        raise Unprocessable(
            f"every input needs the same number of rows (the batch): {counts}", code="bad_shape"
        )
    return arrays


def _named_inputs(body: Mapping[str, Any], specs: Sequence[TensorSpec]) -> dict[str, Any]:
    expected = "; ".join(describe(spec) for spec in specs)
    unknown = sorted(set(body) - {"inputs"})
    if unknown:
        raise BadRequest(
            f"unknown fields {', '.join(repr(k[:64]) for k in unknown)}: "
            'send {"inputs": {"<input name>": [row, ...]}}',
            code="bad_json",
        )
    raw = body.get("inputs")
    if isinstance(raw, list):
        if len(specs) != 1:
            raise BadRequest(
                f"the model has {len(specs)} inputs ({expected}): send them by name, "
                '{"inputs": {"<input name>": [row, ...]}}',
                code="bad_json",
            )
        return {specs[0].name: raw}
    if not isinstance(raw, dict):
        raise BadRequest(
            'send {"inputs": {"<input name>": [row, ...]}}, a batch (a list of rows) per '
            f"input; the model takes {expected}",
            code="bad_json",
        )
    names = {spec.name for spec in specs}
    for name in raw:
        if name not in names:
            raise BadRequest(
                f"the model has no input {name[:64]!r}; it takes {expected}", code="unknown_input"
            )
    for spec in specs:
        if spec.name not in raw:
            raise BadRequest(f"input {describe(spec)} is missing", code="missing_input")
    return raw


def _array(value: Any, spec: TensorSpec, max_batch: int) -> Array:
    if not isinstance(value, list):
        raise _shape_error(spec, "a list of rows (the batch)", type(value).__name__)
    if not value:
        raise Unprocessable(
            f"input {describe(spec)} has no rows; send at least one", code="bad_shape"
        )
    if len(value) > max_batch:
        raise PayloadTooLarge(
            f"input {spec.name!r} has {len(value)} rows; this server takes at most "
            f"{max_batch} per request (max_predict_batch): split the batch",
            code="batch_too_large",
        )
    dims, leaves = _flatten(value, spec)
    return _cast(leaves, spec).reshape(dims)


def _flatten(value: list[Any], spec: TensorSpec) -> tuple[list[int], list[Any]]:
    """The dims of a rectangular nested list and its leaves, row-major."""
    dims, level = [len(value)], value
    for axis, expected in enumerate(spec.shape[1:], start=1):
        lengths = {len(item) if type(item) is list else -1 for item in level}
        if -1 in lengths:
            raise _shape_error(spec, f"lists at depth {axis + 1}", "a number or other value")
        if len(lengths) > 1:
            raise _shape_error(spec, "rows of equal length", f"lengths {sorted(lengths)[:8]}")
        (length,) = lengths
        if length == 0 or (expected is not None and length != expected):
            want = "a non-empty list" if expected is None else f"{expected} entries"
            raise _shape_error(spec, f"{want} on axis {axis}", f"{length}")
        dims.append(length)
        level = [leaf for item in level for leaf in item]
    kinds = {type(leaf) for leaf in level}
    if list in kinds:
        raise _shape_error(spec, f"numbers at depth {len(dims)}", "lists (too many dimensions)")
    odd = kinds - {int, float}
    if odd:
        found = ", ".join(sorted(_JSON_KINDS.get(kind, kind.__name__) for kind in odd))
        raise Unprocessable(
            f"input {describe(spec)} takes numbers only; it holds {found}", code="bad_dtype"
        )
    return dims, level


def _cast(leaves: list[Any], spec: TensorSpec) -> Array:
    try:
        target = np.dtype(spec.dtype)
    except TypeError:
        target = np.dtype(object)
    if target.kind not in "iuf":
        raise Unprocessable(f"input {describe(spec)} does not take JSON numbers", code="bad_dtype")
    if any(type(x) is float and not math.isfinite(x) for x in leaves):
        raise Unprocessable(
            f"input {spec.name!r} holds values that are not finite (1e999 is infinity); "
            "the model's outputs for them would be meaningless",
            code="not_finite",
        )
    if target.kind in "iu":
        return _integers(leaves, spec, target)
    try:
        wide = np.array(leaves, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        wide = np.array([math.inf])
    with np.errstate(over="ignore"):
        array = wide.astype(target)
    if not np.isfinite(array).all():
        raise Unprocessable(
            f"input {spec.name!r} takes {spec.dtype}, whose largest magnitude is "
            f"{np.finfo(target).max:.4g}; it holds larger values",
            code="out_of_range",
        )
    return array


def _integers(leaves: list[Any], spec: TensorSpec, target: np.dtype[Any]) -> Array:
    if any(type(x) is float and not x.is_integer() for x in leaves):
        raise Unprocessable(
            f"input {describe(spec)} takes whole numbers (token ids, indices); it holds fractions",
            code="bad_dtype",
        )
    values = [int(x) for x in leaves]
    info = np.iinfo(target)
    low, high = min(values), max(values)
    if low < info.min or high > info.max:
        raise Unprocessable(
            f"input {spec.name!r} takes {spec.dtype} ({info.min}..{info.max}); it holds "
            f"values from {low} to {high}",
            code="out_of_range",
        )
    return np.array(values, dtype=target)


def _shape_error(spec: TensorSpec, expected: str, found: str) -> Unprocessable:
    return Unprocessable(
        f"input {spec.name!r} takes a batch of shape {shape_text(spec)} ({spec.dtype}): "
        f"expected {expected}, found {found}",
        code="bad_shape",
    )
