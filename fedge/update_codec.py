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
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.errors import FedgeError

FORMAT = "fedge/1"
Weights = dict[str, npt.NDArray[Any]]
_MAX_HEADER_BYTES = 16 * 1024 * 1024


class CodecError(FedgeError):
    """Bytes that are not a well-formed fedge update or checkpoint."""


@dataclass(frozen=True)
class UpdateMeta:
    round_id: int
    base_checkpoint: str
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


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


def decode_update(data: bytes) -> Update:
    tensors, metadata = _decode(data, "update")
    try:
        metrics_raw = json.loads(metadata.get("metrics", "{}"))
        metrics = {str(k): float(v) for k, v in metrics_raw.items()}
        meta = UpdateMeta(
            round_id=int(metadata["round_id"]),
            base_checkpoint=str(metadata["base_checkpoint"]),
            num_examples=int(metadata["num_examples"]),
            metrics=metrics,
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CodecError(f"bad update metadata: {type(exc).__name__}: {exc}") from exc
    return Update(meta=meta, deltas=tensors)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return _encode(checkpoint.weights, {"kind": "checkpoint", "round_id": str(checkpoint.round_id)})


def decode_checkpoint(data: bytes) -> Checkpoint:
    tensors, metadata = _decode(data, "checkpoint")
    try:
        round_id = int(metadata["round_id"])
    except (KeyError, ValueError) as exc:
        raise CodecError(f"bad checkpoint metadata: {exc}") from exc
    return Checkpoint(round_id=round_id, weights=tensors)


def content_id(data: bytes) -> str:
    """A checkpoint's id: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def ordered(weights: Mapping[str, npt.NDArray[Any]], names: Sequence[str]) -> Weights:
    """The same weights in the canonical order."""
    return {name: weights[name] for name in names}


_DTYPES: dict[str, str] = {
    "float16": "F16",
    "float32": "F32",
    "float64": "F64",
    "int8": "I8",
    "int32": "I32",
    "int64": "I64",
    "uint8": "U8",
    "bool": "BOOL",
}
_NUMPY_DTYPES = {code: np.dtype(name).newbyteorder("<") for name, code in _DTYPES.items()}


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
        code = _DTYPES.get(array.dtype.name)
        if code is None:
            raise CodecError(f"{name}: dtype {array.dtype} cannot be encoded")
        raw = np.ascontiguousarray(array, dtype=_NUMPY_DTYPES[code]).tobytes()
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


def _decode(data: bytes, kind: str) -> tuple[Weights, dict[str, str]]:
    header = read_header(data)
    metadata = header.pop("__metadata__", {}) or {}
    if metadata.get("format") != FORMAT or metadata.get("kind") != kind:
        raise CodecError(
            f"expected a {FORMAT} {kind}, got format={metadata.get('format')!r} "
            f"kind={metadata.get('kind')!r}"
        )
    body = memoryview(data)[8 + struct.unpack("<Q", data[:8])[0] :]
    tensors: Weights = {}
    end_of_last = 0
    for name, info in sorted(header.items(), key=lambda item: _offsets(item)[0]):
        start, stop = _offsets((name, info))
        dtype = _NUMPY_DTYPES.get(info.get("dtype", ""))
        shape = info.get("shape")
        if dtype is None or not isinstance(shape, list):
            raise CodecError(f"{name}: bad dtype or shape in header")
        count = math.prod(int(d) for d in shape)
        if start != end_of_last or stop - start != count * dtype.itemsize or stop > len(body):
            raise CodecError(f"{name}: data offsets [{start}, {stop}] do not fit the body")
        tensors[name] = np.frombuffer(body[start:stop], dtype=dtype).reshape(shape).copy()
        end_of_last = stop
    if end_of_last != len(body):
        raise CodecError(f"{len(body) - end_of_last} trailing bytes after the last tensor")
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _offsets(item: tuple[str, Any]) -> tuple[int, int]:
    name, info = item
    try:
        start, stop = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"{name}: bad data_offsets in header") from exc
    return start, stop


def read_header(data: bytes) -> dict[str, Any]:
    """The JSON header, checked before any tensor is read."""
    if len(data) < 8:
        raise CodecError("too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if length > _MAX_HEADER_BYTES or 8 + length > len(data):
        raise CodecError(f"header length {length} does not fit a {len(data)}-byte body")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise CodecError("header is not a JSON object")
    return header


def global_norm(tensors: Mapping[str, npt.NDArray[Any]]) -> float:
    """The L2 norm over all tensors together (float64 accumulation)."""
    total = 0.0
    for value in tensors.values():
        flat = np.asarray(value, dtype=np.float64).ravel()
        total += float(flat @ flat)
    return math.sqrt(total)
