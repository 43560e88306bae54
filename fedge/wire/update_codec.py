"""The wire format of weights: model updates and global checkpoints.

Both are safetensors: an 8-byte little-endian header length, a JSON header
(tensor names, dtypes, shapes, offsets and a string-to-string
``__metadata__``), then raw little-endian tensor bytes. It is
self-describing, cannot execute code (never pickle), and is simple enough
to write in the browser. Tensors are named by the canonical weight names of
the bundle manifest (``conv1/kernel``...).

* an **update** holds one delta per weight (new minus base) and metadata
  ``kind=update``, ``round_id``, ``base_checkpoint``, ``num_examples`` and
  ``metrics`` (a JSON object of floats);
* a **checkpoint** holds the global weights and ``kind=checkpoint``,
  ``round_id``; its id is the sha256 of its bytes.

This is the one decoder of both: :func:`decode_update` /
:func:`decode_checkpoint` for bytes in memory, :func:`read_update_layout`
for an update file read slice by slice (robust aggregation). Both check
the header the same way (:func:`checked_header`): a bounded length, strict
JSON, exact tensor entries of known dtypes, offsets that tile the data, and
with a :class:`~fedge.wire.weight_spec.ModelSpec` the model's names, shapes and
dtypes, before any tensor data is read.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import safetensors
import safetensors.numpy

from fedge.wire.update_header import (
    DTYPE_CODES,
    FORMAT,
    MAX_HEADER_BYTES,
    NUMPY_DTYPES,
    CodecError,
    check_header_against,
    checked_header,
    header_length,
    header_limit,
    header_object,
    max_header_bytes,
)
from fedge.wire.update_metadata import UpdateMeta, checkpoint_round_id, update_meta
from fedge.wire.weight_spec import ModelSpec
from fedge.wire.weight_spec import Weights as _Weights

# Weights by canonical name (defined beside the spec; the codec's name for them).
Weights = _Weights

# What callers import from here, although the header checks and the metadata
# live in modules of their own.
__all__ = [
    "FORMAT",
    "MAX_HEADER_BYTES",
    "Checkpoint",
    "CodecError",
    "TensorLayout",
    "Update",
    "UpdateLayout",
    "UpdateMeta",
    "Weights",
    "check_header_against",
    "content_id",
    "decode_checkpoint",
    "decode_update",
    "encode_checkpoint",
    "encode_update",
    "global_norm",
    "max_header_bytes",
    "read_update_layout",
]


@dataclass(frozen=True)
class Update:
    meta: UpdateMeta
    deltas: Weights


@dataclass(frozen=True)
class Checkpoint:
    round_id: int
    weights: Weights


def encode_update(update: Update) -> bytes:
    meta = update.meta
    return _encode(
        update.deltas,
        {
            "kind": "update",
            "round_id": str(meta.round_id),
            "base_checkpoint": meta.base_checkpoint,
            "num_examples": str(meta.num_examples),
            "metrics": json.dumps(meta.metrics, sort_keys=True),
        },
    )


def decode_update(data: bytes, expected: ModelSpec | None = None) -> Update:
    """An update from its bytes, strictly checked.

    With ``expected`` (the model's weight spec) the header is bounded by
    the size the spec implies, and the tensor names, dtypes and shapes are
    compared with the spec from the header alone, before any tensor data
    is read. Anything off raises :class:`CodecError` with a stable ``code``.
    """
    tensors, metadata = _decode(data, "update", expected)
    return Update(meta=update_meta(metadata), deltas=tensors)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return _encode(checkpoint.weights, {"kind": "checkpoint", "round_id": str(checkpoint.round_id)})


def decode_checkpoint(data: bytes, expected: ModelSpec | None = None) -> Checkpoint:
    tensors, metadata = _decode(data, "checkpoint", expected)
    return Checkpoint(round_id=checkpoint_round_id(metadata), weights=tensors)


def content_id(data: bytes) -> str:
    """A checkpoint's id: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TensorLayout:
    """Where one tensor's bytes are in an update file."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    offset: int  # from the start of the file
    size: int  # elements


@dataclass(frozen=True)
class UpdateLayout:
    """An update file's metadata and tensor layout, read from its header alone."""

    meta: UpdateMeta
    tensors: tuple[TensorLayout, ...]  # in canonical order (the spec's, or the file's)


def read_update_layout(
    file: IO[bytes], file_size: int, expected: ModelSpec | None = None
) -> UpdateLayout:
    """The layout of an update file, checked exactly as :func:`decode_update`
    checks bytes, reading only the header (so a round's updates can be read
    block by block). ``file`` is positioned at its start."""
    spec = expected
    length = header_length(file.read(8), file_size, header_limit(spec))
    header = header_object(file.read(length))
    body = 8 + length
    entries, metadata = checked_header(header, "update", spec, file_size - body)
    tensors = tuple(
        TensorLayout(
            name,
            NUMPY_DTYPES[info["dtype"]],
            tuple(info["shape"]),
            body + info["data_offsets"][0],
            math.prod(info["shape"]),
        )
        for name, info in entries.items()
    )
    return UpdateLayout(update_meta(metadata), tensors)


def _encode(tensors: Mapping[str, npt.NDArray[Any]], metadata: dict[str, str]) -> bytes:
    """Deterministic safetensors: tensors in the given order, sorted JSON keys.

    The same weights always give the same bytes, so a checkpoint's sha256
    identifies its content.
    """
    header: dict[str, Any] = {"__metadata__": {"format": FORMAT, **metadata}}
    chunks: list[bytes] = []
    offset = 0
    for name, value in tensors.items():
        array = np.asarray(value)
        code = DTYPE_CODES.get(array.dtype.name)
        if code is None:
            raise CodecError(f"{name}: dtype {array.dtype} cannot be encoded")
        raw = np.ascontiguousarray(array, dtype=NUMPY_DTYPES[code]).tobytes()
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)


def _decode(data: bytes, kind: str, spec: ModelSpec | None) -> tuple[Weights, dict[str, str]]:
    length = header_length(bytes(data[:8]), len(data), header_limit(spec))
    header = header_object(bytes(data[8 : 8 + length]))
    entries, metadata = checked_header(header, kind, spec, len(data) - 8 - length)
    try:
        loaded = safetensors.numpy.load(bytes(data))
    except (safetensors.SafetensorError, ValueError, OverflowError) as exc:
        raise CodecError(f"not valid safetensors: {exc}") from exc
    # Each array views a private, writable buffer of its own: no second copy.
    tensors: Weights = {name: loaded[name] for name in entries}
    return tensors, metadata


def global_norm(tensors: Mapping[str, npt.NDArray[Any]]) -> float:
    """The L2 norm over all tensors together (float64 accumulation)."""
    total = 0.0
    for value in tensors.values():
        flat = np.asarray(value, dtype=np.float64).ravel()
        total += float(flat @ flat)
    return math.sqrt(total)
