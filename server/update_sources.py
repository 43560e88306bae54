"""Where robust aggregation reads the updates of a round from.

A coordinate-wise median needs every update's value of a coordinate at
once, so the updates of a round must be kept (the server keeps them as the
safetensors files devices uploaded). :class:`UpdateSource` lets the
aggregation read any slice of any update's tensor, so it can work one
block of coordinates at a time: :class:`SafetensorsFileUpdates` reads just
that slice from disk; :class:`InMemoryUpdates` serves tests and
simulations from arrays already in memory. The same aggregation code runs
over both.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fedge.server.errors_aggregation import AggregationError
from fedge.update_codec import FORMAT, CodecError, read_header

Spec = dict[str, tuple[int, ...]]
Float32Array = npt.NDArray[np.float32]

_FLOAT_CODES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
_MAX_HEADER_BYTES = 16 * 1024 * 1024


class UpdateSource(Protocol):
    """The stored updates of one round, readable slice by slice."""

    def names(self) -> Sequence[str]:
        """Weight names in canonical order."""
        ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def __len__(self) -> int:
        """Number of updates."""
        ...

    def weights(self) -> Sequence[float]:
        """``num_examples`` of each update, in index order."""
        ...

    def read(self, index: int, name: str, start: int, stop: int) -> Float32Array:
        """Elements ``[start, stop)`` of update ``index``'s flattened ``name``."""
        ...


def spec_of(weights: Mapping[str, npt.NDArray[Any]]) -> Spec:
    """Names and shapes of some weights, in their order."""
    return {name: tuple(int(d) for d in np.shape(value)) for name, value in weights.items()}


def check_spec(expected: Spec, weights: Mapping[str, npt.NDArray[Any]], what: str) -> None:
    """Raise unless ``weights`` has exactly the expected names and shapes
    and holds floats."""
    missing = [name for name in expected if name not in weights]
    extra = [name for name in weights if name not in expected]
    if missing or extra:
        raise AggregationError(f"{what}: missing weights {missing}, unexpected weights {extra}")
    for name, shape in expected.items():
        value = np.asarray(weights[name])
        if value.shape != shape:
            raise AggregationError(f"{what}: {name} has shape {value.shape}, expected {shape}")
        if not np.issubdtype(value.dtype, np.floating):
            raise AggregationError(f"{what}: {name} has dtype {value.dtype}, expected floats")


def _check_range(size: int, name: str, start: int, stop: int) -> None:
    if not 0 <= start <= stop <= size:
        raise AggregationError(f"{name}: slice [{start}, {stop}) is outside [0, {size})")


class InMemoryUpdates:
    """Updates already in memory (tests, simulations, small rounds).

    Float32 contiguous arrays are referenced, not copied: do not modify
    them while the source is in use.
    """

    def __init__(
        self,
        updates: Sequence[Mapping[str, npt.NDArray[Any]]],
        weights: Sequence[float] | None = None,
    ) -> None:
        if weights is not None and len(weights) != len(updates):
            raise AggregationError(f"{len(weights)} weights for {len(updates)} updates")
        self._spec: Spec = spec_of(updates[0]) if updates else {}
        self._flats: list[dict[str, Float32Array]] = []
        for index, update in enumerate(updates):
            check_spec(self._spec, update, f"update {index}")
            self._flats.append(
                {
                    name: np.ascontiguousarray(update[name], dtype=np.float32).reshape(-1)
                    for name in self._spec
                }
            )
        self._weights = [1.0] * len(updates) if weights is None else [float(w) for w in weights]

    def names(self) -> Sequence[str]:
        return list(self._spec)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._spec[name]

    def __len__(self) -> int:
        return len(self._flats)

    def weights(self) -> Sequence[float]:
        return list(self._weights)

    def read(self, index: int, name: str, start: int, stop: int) -> Float32Array:
        flat = self._flats[index][name]
        _check_range(flat.size, name, start, stop)
        return flat[start:stop]


class _TensorInfo:
    __slots__ = ("dtype", "offset", "size")

    def __init__(self, dtype: np.dtype[Any], offset: int, size: int) -> None:
        self.dtype = dtype
        self.offset = offset
        self.size = size


class SafetensorsFileUpdates:
    """Updates stored as files written by :func:`fedge.update_codec.encode_update`.

    Only the headers are read up front (and checked: same names and shapes
    in every file, offsets inside the file); ``read`` then seeks to the
    requested slice, so memory stays bounded by what is asked for. Files
    are opened per read rather than held open, so a round of thousands of
    updates does not run out of file descriptors.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self._paths = [Path(p) for p in paths]
        self._spec: Spec = {}
        self._tensors: list[dict[str, _TensorInfo]] = []
        self._weights: list[float] = []
        for index, path in enumerate(self._paths):
            spec, tensors, num_examples = _read_layout(path)
            if index == 0:
                self._spec = spec
            elif spec != self._spec:
                raise AggregationError(
                    f"{path}: names or shapes differ from {self._paths[0]}: "
                    f"{_describe(spec)} vs {_describe(self._spec)}"
                )
            self._tensors.append(tensors)
            self._weights.append(float(num_examples))

    def names(self) -> Sequence[str]:
        return list(self._spec)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._spec[name]

    def __len__(self) -> int:
        return len(self._paths)

    def weights(self) -> Sequence[float]:
        return list(self._weights)

    def read(self, index: int, name: str, start: int, stop: int) -> Float32Array:
        info = self._tensors[index][name]
        _check_range(info.size, name, start, stop)
        out = np.empty(stop - start, dtype=info.dtype)
        wanted = out.nbytes
        with open(self._paths[index], "rb", buffering=0) as file:
            file.seek(info.offset + start * info.dtype.itemsize)
            got = file.readinto(out.data.cast("B")) if wanted else 0
        if got != wanted:
            raise AggregationError(f"{self._paths[index]}: {name} is truncated")
        return out.astype(np.float32, copy=False)


def _read_layout(path: Path) -> tuple[Spec, dict[str, _TensorInfo], int]:
    """Names, shapes, dtypes and absolute offsets of an update file."""
    try:
        with open(path, "rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise AggregationError(f"{path}: too short for a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER_BYTES:
                raise AggregationError(f"{path}: header of {length} bytes is too large")
            header = read_header(prefix + file.read(length))
        file_size = path.stat().st_size
    except OSError as exc:
        raise AggregationError(f"{path}: cannot read: {exc}") from exc
    except CodecError as exc:
        raise AggregationError(f"{path}: {exc}") from exc
    metadata = header.pop("__metadata__", None) or {}
    if metadata.get("format") != FORMAT or metadata.get("kind") != "update":
        raise AggregationError(f"{path}: not a {FORMAT} update")
    try:
        num_examples = int(metadata["num_examples"])
    except (KeyError, ValueError) as exc:
        raise AggregationError(f"{path}: bad num_examples in metadata") from exc
    body = 8 + length
    entries: list[tuple[int, str, tuple[int, ...], _TensorInfo]] = []
    for name, info in header.items():
        try:
            dtype = _FLOAT_CODES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            start, stop = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AggregationError(f"{path}: {name}: not a float tensor entry") from exc
        size = math.prod(shape)
        if stop - start != size * dtype.itemsize or start < 0 or body + stop > file_size:
            raise AggregationError(f"{path}: {name}: data offsets do not fit the file")
        entries.append((start, name, shape, _TensorInfo(dtype, body + start, size)))
    entries.sort(key=lambda entry: entry[0])
    spec = {name: shape for _, name, shape, _ in entries}
    tensors = {name: info for _, name, _, info in entries}
    return spec, tensors, num_examples


def _describe(spec: Spec) -> str:
    return json.dumps({name: list(shape) for name, shape in spec.items()})
