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
the header the same way (:func:`_checked_header`): a bounded length, strict
JSON, exact tensor entries of known dtypes, offsets that tile the data, and
with a :class:`~fedge.wire.weight_spec.ModelSpec` the model's names, shapes and
dtypes, before any tensor data is read.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import safetensors
import safetensors.numpy

from fedge.errors import FedgeError
from fedge.wire.strict_json import StrictJSONError, loads_strict
from fedge.wire.weight_spec import ModelSpec
from fedge.wire.weight_spec import Weights as _Weights

# Weights by canonical name (defined beside the spec; the codec's name for them).
Weights = _Weights

FORMAT = "fedge/1"
# The bound on a header when the model's spec is not known.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# Room for the metadata (ids, counts, a few metrics) on top of the tensor entries.
_METADATA_BUDGET = 8 * 1024
_MAX_METRICS = 64
_ROUND_ID = re.compile(r"[0-9]{1,18}")
_COUNT = re.compile(r"0|[1-9][0-9]{0,9}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CodecError(FedgeError):
    """Bytes that are not a well-formed fedge update or checkpoint.

    ``code`` says which way: ``malformed_update`` (not the format),
    ``header_too_large`` (over the spec's bound) or ``wrong_weights``
    (names, dtypes or shapes differ from the model's).
    """

    def __init__(self, message: str, code: str = "malformed_update") -> None:
        super().__init__(message)
        self.code = code


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


def decode_update(data: bytes, expected: ModelSpec | None = None) -> Update:
    """An update from its bytes, strictly checked.

    With ``expected`` (the model's weight spec) the header is bounded by
    the size the spec implies, and the tensor names, dtypes and shapes are
    compared with the spec from the header alone, before any tensor data
    is read. Anything off raises :class:`CodecError` with a stable ``code``.
    """
    tensors, metadata = _decode(data, "update", expected)
    return Update(meta=_update_meta(metadata), deltas=tensors)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return _encode(checkpoint.weights, {"kind": "checkpoint", "round_id": str(checkpoint.round_id)})


def decode_checkpoint(data: bytes, expected: ModelSpec | None = None) -> Checkpoint:
    tensors, metadata = _decode(data, "checkpoint", expected)
    _require_keys(metadata, {"format", "kind", "round_id"})
    return Checkpoint(round_id=_ascii_int(metadata, "round_id", _ROUND_ID), weights=tensors)


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
    length = _header_length(file.read(8), file_size, _header_limit(spec))
    header = _header_object(file.read(length))
    body = 8 + length
    entries, metadata = _checked_header(header, "update", spec, file_size - body)
    tensors = tuple(
        TensorLayout(
            name,
            _NUMPY_DTYPES[info["dtype"]],
            tuple(info["shape"]),
            body + info["data_offsets"][0],
            math.prod(info["shape"]),
        )
        for name, info in entries.items()
    )
    return UpdateLayout(_update_meta(metadata), tensors)


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


def max_header_bytes(expected: ModelSpec) -> int:
    """The largest header an update or checkpoint of this spec may have:
    what the spec itself takes (with the widest offsets) plus the metadata
    budget. A digits-model header is about 1 KB; unbounded, a header of
    millions of empty tensors costs the server memory and CPU to parse."""
    spec = expected
    widest = 10 ** len(str(spec.nbytes))
    entries = {
        weight.name: {"dtype": "F64", "shape": list(weight.shape), "data_offsets": [widest, widest]}
        for weight in spec
    }
    return len(json.dumps(entries, separators=(",", ":"))) + _METADATA_BUDGET


def _header_limit(spec: ModelSpec | None) -> int:
    return MAX_HEADER_BYTES if spec is None else max_header_bytes(spec)


def _decode(data: bytes, kind: str, spec: ModelSpec | None) -> tuple[Weights, dict[str, str]]:
    length = _header_length(bytes(data[:8]), len(data), _header_limit(spec))
    header = _header_object(bytes(data[8 : 8 + length]))
    entries, metadata = _checked_header(header, kind, spec, len(data) - 8 - length)
    try:
        loaded = safetensors.numpy.load(bytes(data))
    except (safetensors.SafetensorError, ValueError, OverflowError) as exc:
        raise CodecError(f"not valid safetensors: {exc}") from exc
    # Each array views a private, writable buffer of its own: no second copy.
    tensors: Weights = {name: loaded[name] for name in entries}
    return tensors, metadata


def _checked_header(
    header: dict[str, Any], kind: str, spec: ModelSpec | None, body_bytes: int
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The tensor entries (in canonical order: the spec's, else by offset)
    and the metadata of a parsed header, or :class:`CodecError`."""
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CodecError("__metadata__ must be an object of strings")
    if metadata.get("format") != FORMAT or metadata.get("kind") != kind:
        raise CodecError(
            f"expected a {FORMAT} {kind}, got format={metadata.get('format')!r} "
            f"kind={metadata.get('kind')!r}"
        )
    for name, info in header.items():
        _check_entry(name, info)
    if spec is not None:
        check_header_against(header, spec)
    _check_offsets(header, body_bytes)
    order = (
        list(spec.names)
        if spec is not None
        else sorted(header, key=lambda name: header[name]["data_offsets"])
    )
    return {name: header[name] for name in order}, dict(metadata)


def _check_offsets(header: Mapping[str, Any], body_bytes: int) -> None:
    """Each tensor's bytes fit its dtype and shape, and together the tensors
    tile the data exactly (no gap, no overlap, nothing past the end): the
    safetensors rule, checked before any data is read."""
    position = 0
    for name in sorted(header, key=lambda n: header[n]["data_offsets"]):
        info = header[name]
        start, stop = info["data_offsets"]
        size = math.prod(info["shape"]) * _NUMPY_DTYPES[info["dtype"]].itemsize
        if start != position or stop - start != size:
            raise CodecError(f"{name}: data offsets [{start}, {stop}) do not tile the data")
        position = stop
    if position != body_bytes:
        raise CodecError(f"data offsets cover {position} bytes of a {body_bytes}-byte body")


def _update_meta(metadata: Mapping[str, str]) -> UpdateMeta:
    _require_keys(metadata, {"format", "kind", "round_id", "base_checkpoint", "num_examples"})
    _allow_keys(
        metadata, {"format", "kind", "round_id", "base_checkpoint", "num_examples", "metrics"}
    )
    return UpdateMeta(
        round_id=_ascii_int(metadata, "round_id", _ROUND_ID),
        base_checkpoint=_match(metadata, "base_checkpoint", _SHA256),
        num_examples=_ascii_int(metadata, "num_examples", _COUNT),
        metrics=_metrics(metadata.get("metrics", "{}")),
    )


def _check_entry(name: str, info: Any) -> None:
    """One tensor entry: exactly dtype (a known code), shape and data_offsets
    (lists of non-negative JSON integers)."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise CodecError(f"{name}: a tensor entry has exactly dtype, shape and data_offsets")
    if not isinstance(info["dtype"], str) or info["dtype"] not in _NUMPY_DTYPES:
        raise CodecError(f"{name}: unsupported dtype {info['dtype']!r}")
    for key in ("shape", "data_offsets"):
        values = info[key]
        if not isinstance(values, list) or not all(_is_count(v) for v in values):
            raise CodecError(f"{name}: {key} must be a list of non-negative integers")
    if len(info["data_offsets"]) != 2:
        raise CodecError(f"{name}: data_offsets must be [start, stop]")


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**53


def check_header_against(header: Mapping[str, Any], expected: ModelSpec) -> None:
    """Names, dtypes and shapes from a (checked) header against the spec."""
    wanted = {spec.name: spec for spec in expected}
    missing = [name for name in wanted if name not in header]
    extra = [name for name in header if name not in wanted]
    if missing or extra:
        raise CodecError(
            f"weight names differ from the model's: missing {missing[:5]}, unexpected {extra[:5]}",
            code="wrong_weights",
        )
    for name, spec in wanted.items():
        info = header[name]
        if tuple(info["shape"]) != tuple(spec.shape):
            raise CodecError(
                f"{name}: shape {tuple(info['shape'])}, the model has {tuple(spec.shape)}",
                code="wrong_weights",
            )
        if info["dtype"] != _DTYPES.get(spec.dtype):
            dtype = _NUMPY_DTYPES[info["dtype"]].name
            raise CodecError(
                f"{name}: dtype {dtype}, the model has {spec.dtype}", code="wrong_weights"
            )


def read_header(data: bytes, max_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """The JSON header, checked before any tensor is read: at most
    ``max_bytes``, one JSON object, no duplicate keys, no NaN literals."""
    length = _header_length(bytes(data[:8]), len(data), max_bytes)
    return _header_object(bytes(data[8 : 8 + length]))


def _header_length(prefix: bytes, total_bytes: int, max_bytes: int) -> int:
    """The header length from the first 8 bytes, within the bound and the data."""
    if len(prefix) < 8 or total_bytes < 8:
        raise CodecError("too short for a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if 8 + length > total_bytes:
        raise CodecError(f"header length {length} does not fit a {total_bytes}-byte body")
    if length > max_bytes:
        raise CodecError(
            f"header of {length} bytes is over the {max_bytes}-byte bound", code="header_too_large"
        )
    return int(length)


def _header_object(raw: bytes) -> dict[str, Any]:
    header = _strict_json(raw, "header")
    if not isinstance(header, dict):
        raise CodecError("header is not a JSON object")
    return header


def _strict_json(raw: bytes | str, what: str) -> Any:
    try:
        return loads_strict(raw)
    except StrictJSONError as exc:
        raise CodecError(f"{what}: {exc}") from exc


def _require_keys(metadata: Mapping[str, str], keys: set[str]) -> None:
    missing = sorted(keys - set(metadata))
    if missing:
        raise CodecError(f"metadata lacks {', '.join(missing)}")


def _allow_keys(metadata: Mapping[str, str], keys: set[str]) -> None:
    extra = sorted(set(metadata) - keys)
    if extra:
        raise CodecError(f"unknown metadata keys {extra[:5]}")


def _match(metadata: Mapping[str, str], key: str, pattern: re.Pattern[str]) -> str:
    value = metadata[key]
    if not pattern.fullmatch(value):
        raise CodecError(f"metadata {key} {value[:40]!r} is not {pattern.pattern}")
    return value


def _ascii_int(metadata: Mapping[str, str], key: str, pattern: re.Pattern[str]) -> int:
    """Plain ASCII digits only: ``int()`` would also take " 5 " or other scripts' digits."""
    return int(_match(metadata, key, pattern))


def _metrics(raw: str) -> dict[str, float]:
    parsed = _strict_json(raw, "metrics")
    if not isinstance(parsed, dict) or len(parsed) > _MAX_METRICS:
        raise CodecError(f"metrics must be a JSON object of at most {_MAX_METRICS} numbers")
    metrics: dict[str, float] = {}
    for key, value in parsed.items():
        if len(key) > 64 or type(value) not in (int, float):
            raise CodecError(f"metric {key[:64]!r} must be a number under a short name")
        try:
            number = float(value)
        except OverflowError as exc:
            raise CodecError(f"metric {key!r} is out of range") from exc
        if not math.isfinite(number):
            raise CodecError(f"metric {key!r} is not finite")
        metrics[key] = number
    return metrics


def global_norm(tensors: Mapping[str, npt.NDArray[Any]]) -> float:
    """The L2 norm over all tensors together (float64 accumulation)."""
    total = 0.0
    for value in tensors.values():
        flat = np.asarray(value, dtype=np.float64).ravel()
        total += float(flat @ flat)
    return math.sqrt(total)
