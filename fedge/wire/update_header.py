"""The header of a fedge safetensors file, checked before any tensor is read.

An update or checkpoint starts with an 8-byte little-endian length and a
JSON header: one entry per tensor (dtype, shape, data offsets) and a
string-to-string ``__metadata__``. Everything a hostile upload can get wrong
about that layout is refused here, from the header alone: a length over the
bound (the spec's, else :data:`MAX_HEADER_BYTES`), JSON that is not strict,
entries that are not exactly dtype/shape/offsets of a known dtype, offsets
that do not tile the data, and, with a :class:`~fedge.wire.weight_spec.ModelSpec`,
names, shapes and dtypes that are not the model's.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedge.errors import FedgeError
from fedge.wire.strict_json import StrictJSONError, loads_strict
from fedge.wire.weight_spec import ModelSpec

FORMAT = "fedge/1"
# The bound on a header when the model's spec is not known.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# Room for the metadata (ids, counts, a few metrics) on top of the tensor entries.
_METADATA_BUDGET = 8 * 1024


class CodecError(FedgeError):
    """Bytes that are not a well-formed fedge update or checkpoint.

    ``code`` says which way: ``malformed_update`` (not the format),
    ``header_too_large`` (over the spec's bound) or ``wrong_weights``
    (names, dtypes or shapes differ from the model's).
    """

    def __init__(self, message: str, code: str = "malformed_update") -> None:
        super().__init__(message)
        self.code = code


# NumPy dtype name -> safetensors dtype code, for every dtype the codec carries.
DTYPE_CODES: dict[str, str] = {
    "float16": "F16",
    "float32": "F32",
    "float64": "F64",
    "int8": "I8",
    "int32": "I32",
    "int64": "I64",
    "uint8": "U8",
    "bool": "BOOL",
}
NUMPY_DTYPES = {code: np.dtype(name).newbyteorder("<") for name, code in DTYPE_CODES.items()}


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


def header_limit(spec: ModelSpec | None) -> int:
    return MAX_HEADER_BYTES if spec is None else max_header_bytes(spec)


def _check_entry(name: str, info: Any) -> None:
    """One tensor entry: exactly dtype (a known code), shape and data_offsets
    (lists of non-negative JSON integers)."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise CodecError(f"{name}: a tensor entry has exactly dtype, shape and data_offsets")
    if not isinstance(info["dtype"], str) or info["dtype"] not in NUMPY_DTYPES:
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
        if info["dtype"] != DTYPE_CODES.get(spec.dtype):
            dtype = NUMPY_DTYPES[info["dtype"]].name
            raise CodecError(
                f"{name}: dtype {dtype}, the model has {spec.dtype}", code="wrong_weights"
            )


def header_length(prefix: bytes, total_bytes: int, max_bytes: int) -> int:
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


def header_object(raw: bytes) -> dict[str, Any]:
    header = strict_json(raw, "header")
    if not isinstance(header, dict):
        raise CodecError("header is not a JSON object")
    return header


def strict_json(raw: bytes | str, what: str) -> Any:
    try:
        return loads_strict(raw)
    except StrictJSONError as exc:
        raise CodecError(f"{what}: {exc}") from exc


def checked_header(
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
        size = math.prod(info["shape"]) * NUMPY_DTYPES[info["dtype"]].itemsize
        if start != position or stop - start != size:
            raise CodecError(f"{name}: data offsets [{start}, {stop}) do not tile the data")
        position = stop
    if position != body_bytes:
        raise CodecError(f"data offsets cover {position} bytes of a {body_bytes}-byte body")
