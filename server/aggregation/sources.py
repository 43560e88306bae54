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
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fedge.server.aggregation.errors import AggregationError
from fedge.wire.file_span import FileSpan, span_of
from fedge.wire.update_codec import CodecError, TensorLayout, read_update_layout
from fedge.wire.weight_spec import ModelSpec, WeightSpecError

Float32Array = npt.NDArray[np.float32]


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


def spec_of(weights: Mapping[str, npt.NDArray[Any]]) -> ModelSpec:
    """Names, shapes and dtypes of some weights, in their order."""
    return ModelSpec.of_weights(weights)


def check_spec(expected: ModelSpec, weights: Mapping[str, npt.NDArray[Any]], what: str) -> None:
    """Raise unless ``weights`` has exactly the expected names and shapes
    and holds floats (of any width: a mean is taken in float64 anyway)."""
    try:
        expected.ordered(weights)
    except WeightSpecError as exc:
        raise AggregationError(f"{what}: {exc}") from exc
    for spec in expected:
        dtype = np.asarray(weights[spec.name]).dtype
        if not np.issubdtype(dtype, np.floating):
            raise AggregationError(f"{what}: {spec.name} has dtype {dtype}, expected floats")


def _check_range(size: int, name: str, start: int, stop: int) -> None:
    if not 0 <= start <= stop <= size:
        raise AggregationError(f"{name}: slice [{start}, {stop}) is outside [0, {size})")


def _shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    return {weight.name: weight.shape for weight in spec}


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
        spec = spec_of(updates[0]) if updates else ModelSpec(())
        self._shapes = _shapes(spec)
        self._flats: list[dict[str, Float32Array]] = []
        for index, update in enumerate(updates):
            check_spec(spec, update, f"update {index}")
            self._flats.append(
                {
                    name: np.ascontiguousarray(update[name], dtype=np.float32).reshape(-1)
                    for name in self._shapes
                }
            )
        self._weights = [1.0] * len(updates) if weights is None else [float(w) for w in weights]

    def names(self) -> Sequence[str]:
        return list(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def __len__(self) -> int:
        return len(self._flats)

    def weights(self) -> Sequence[float]:
        return list(self._weights)

    def read(self, index: int, name: str, start: int, stop: int) -> Float32Array:
        flat = self._flats[index][name]
        _check_range(flat.size, name, start, stop)
        return flat[start:stop]


class SafetensorsFileUpdates:
    """Updates stored as files written by :func:`fedge.wire.update_codec.encode_update`.

    Only the headers are read up front, by the codec's own decoder
    (:func:`fedge.wire.update_codec.read_update_layout`: the same header bound,
    strict JSON, dtype table, metadata rules and offset checks as an
    upload), and every file must have the same names and shapes (with
    ``spec``, the model's names, shapes and dtypes); ``read`` then seeks to
    the requested slice, so memory stays bounded by what is asked for.
    Files are opened per read rather than held open, so a round of
    thousands of updates does not run out of file descriptors. ``names``
    (default: every tensor) are the weights served: a model's kept state,
    an int64 count say, is in the files but never aggregated.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str] | FileSpan],
        spec: ModelSpec | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        self._paths = [span_of(p) for p in paths]
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._tensors: list[dict[str, TensorLayout]] = []
        self._weights: list[float] = []
        for index, path in enumerate(self._paths):
            tensors, num_examples = _read_layout(path, spec, names)
            shapes = {name: info.shape for name, info in tensors.items()}
            if index == 0:
                self._shapes = shapes
            elif list(shapes.items()) != list(self._shapes.items()):
                raise AggregationError(
                    f"{_where(path)}: names or shapes differ from {_where(self._paths[0])}: "
                    f"{_describe(shapes)} vs {_describe(self._shapes)}"
                )
            self._tensors.append(tensors)
            self._weights.append(float(num_examples))

    def names(self) -> Sequence[str]:
        return list(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def __len__(self) -> int:
        return len(self._paths)

    def weights(self) -> Sequence[float]:
        return list(self._weights)

    def read(self, index: int, name: str, start: int, stop: int) -> Float32Array:
        info = self._tensors[index][name]
        _check_range(info.size, name, start, stop)
        out = np.empty(stop - start, dtype=info.dtype)
        wanted = out.nbytes
        span = self._paths[index]
        with open(span.path, "rb", buffering=0) as file:
            file.seek(span.offset + info.offset + start * info.dtype.itemsize)
            got = file.readinto(out.data.cast("B")) if wanted else 0
        if got != wanted:
            raise AggregationError(f"{_where(span)}: {name} is truncated")
        return out.astype(np.float32, copy=False)


def _where(span: FileSpan) -> str:
    return str(span.path) if span.offset == 0 else f"{span.path} at {span.offset}"


def _read_layout(
    span: FileSpan, spec: ModelSpec | None, names: Sequence[str] | None
) -> tuple[dict[str, TensorLayout], int]:
    """A stored update's float tensors by name (canonical order; only
    ``names`` when given; offsets from the start of the update) and its
    ``num_examples``, from the codec's decoder."""
    path = _where(span)
    try:
        with open(span.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size - span.offset
            if span.length is not None:
                if span.length > size:
                    raise CodecError(f"{span.length} bytes stored, {size} left in the file")
                size = span.length
            file.seek(span.offset)
            layout = read_update_layout(file, size, spec)
    except OSError as exc:
        raise AggregationError(f"{path}: cannot read: {exc}") from exc
    except CodecError as exc:
        raise AggregationError(f"{path}: {exc}") from exc
    wanted = None if names is None else set(names)
    served = [info for info in layout.tensors if wanted is None or info.name in wanted]
    for info in served:
        if info.dtype.kind != "f":
            raise AggregationError(f"{path}: {info.name} holds {info.dtype}, not floats")
    return {info.name: info for info in served}, layout.meta.num_examples


def _describe(shapes: Mapping[str, tuple[int, ...]]) -> str:
    return json.dumps({name: list(shape) for name, shape in shapes.items()})
