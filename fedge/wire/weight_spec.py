"""The model's weights, in the one canonical order every part of fedge uses.

A :class:`ModelSpec` is the ordered list of a model's weights: canonical
names (``layer/variable``, as Keras names the variable, without ``:0``),
shapes and dtypes, and the key each weight has in the TFLite training
artifact's ``get_weights`` / ``set_weights`` signatures (``w000``,
``w001``, ... by position). It comes from one of two places:

* a bundle's manifest (``Manifest.weights``, JSON ``[{"name", "shape",
  "dtype"}, ...]``), which the server, the devices and the browser read;
* a Keras model, through :meth:`ModelSpec.from_keras`, the only function
  that turns Keras variables into canonical names.

The converters write it, the update codec checks uploads against it, the
server bounds requests and norms by it, and the simulator's runtimes use it
to map weights in and out of TFLite and Keras.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fedge.errors import FedgeError

Weights = dict[str, npt.NDArray[Any]]

# Keras's BatchNormalization statistics: not trainable, yet training moves
# them (each device's towards its own data). By variable name, since a
# manifest names weights but does not say which are trainable.
STATISTICS = ("moving_mean", "moving_variance")

# Shortcuts for ``--local-state``: ``bn`` is BatchNorm's statistics (FedBN
# keeps them on the device; gamma and beta are trained and shared).
LOCAL_STATE_SHORTCUTS: Mapping[str, tuple[str, ...]] = {
    "bn": tuple(f"*/{name}" for name in STATISTICS),
}


class WeightSpecError(FedgeError):
    """A weight spec that is malformed, or weights that do not match one."""


class WeightLike(Protocol):
    """Anything that names a weight's name, shape and dtype (a
    :class:`WeightSpec`, or a record of older code), for :meth:`ModelSpec.of`."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> tuple[int | None, ...]: ...

    @property
    def dtype(self) -> str: ...


def variable_name(variable: Any) -> str:
    """A TensorFlow variable's canonical weight name: ``layer/variable``."""
    return str(variable.name).removesuffix(":0")


def train_key(index: int) -> str:
    """The key of the ``index``-th weight in the TFLite training signatures."""
    return f"w{index:03d}"


@dataclass(frozen=True)
class WeightSpec:
    """One weight: canonical name, concrete shape and NumPy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise WeightSpecError(f"a weight name must be a non-empty string, got {self.name!r}")
        if not all(type(d) is int and d >= 0 for d in self.shape):
            raise WeightSpecError(f"{self.name}: shape {self.shape} is not a list of sizes")
        try:
            canonical = np.dtype(self.dtype).name
        except TypeError as exc:
            raise WeightSpecError(f"{self.name}: unknown dtype {self.dtype!r}") from exc
        if canonical != self.dtype:
            raise WeightSpecError(f"{self.name}: dtype {self.dtype!r} is not {canonical!r}")

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def is_float(self) -> bool:
        return np.dtype(self.dtype).kind == "f"

    @property
    def layer(self) -> str:
        """The ``layer`` of ``layer/variable`` (the name itself without a ``/``)."""
        return self.name.rpartition("/")[0] or self.name

    @property
    def variable(self) -> str:
        """The ``variable`` of ``layer/variable``."""
        return self.name.rpartition("/")[2]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, raw: Any) -> WeightSpec:
        if not isinstance(raw, Mapping) or set(raw) != {"name", "shape", "dtype"}:
            raise WeightSpecError(f"a weight is an object of name, shape and dtype, got {raw!r}")
        shape = raw["shape"]
        if not isinstance(shape, list):
            raise WeightSpecError(f"{raw['name']!r}: shape must be a list, got {shape!r}")
        return cls(name=raw["name"], shape=tuple(shape), dtype=raw["dtype"])


@dataclass(frozen=True)
class ModelSpec:
    """A model's weights in canonical order (iterable, sized)."""

    weights: tuple[WeightSpec, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for spec in self.weights:
            if spec.name in seen:
                raise WeightSpecError(f"weight {spec.name!r} appears twice")
            seen.add(spec.name)

    def __iter__(self) -> Iterator[WeightSpec]:
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.weights)

    @property
    def train_keys(self) -> tuple[str, ...]:
        """The TFLite training signatures' keys, in the same order as :attr:`names`."""
        return tuple(train_key(i) for i in range(len(self.weights)))

    @property
    def size(self) -> int:
        """Number of parameters (all weights' elements)."""
        return sum(spec.size for spec in self.weights)

    @property
    def nbytes(self) -> int:
        return sum(spec.nbytes for spec in self.weights)

    def to_json(self) -> list[dict[str, Any]]:
        return [spec.to_json() for spec in self.weights]

    @property
    def constant_names(self) -> frozenset[str]:
        """Weights that training never changes and averaging would corrupt:
        every non-float weight, and every weight of a layer that holds one
        (an adapted ``Normalization`` layer's ``mean`` and ``variance`` beside
        its int64 ``count``)."""
        layers = {spec.layer for spec in self.weights if not spec.is_float}
        return frozenset(
            spec.name for spec in self.weights if not spec.is_float or spec.layer in layers
        )

    @property
    def statistic_names(self) -> frozenset[str]:
        """Float state that training moves without a gradient (BatchNorm's
        moving mean and variance, see :data:`STATISTICS`)."""
        constant = self.constant_names
        return frozenset(
            spec.name
            for spec in self.weights
            if spec.variable in STATISTICS and spec.name not in constant
        )

    def matching(self, patterns: Sequence[str]) -> frozenset[str]:
        """The weights whose names match any of ``patterns`` (shell-style,
        ``*/moving_mean``), with the shortcuts of :data:`LOCAL_STATE_SHORTCUTS`
        expanded. A pattern that matches nothing is an error: a typo would
        otherwise silently share what was meant to stay local."""
        found: set[str] = set()
        for pattern in patterns:
            expanded = LOCAL_STATE_SHORTCUTS.get(pattern, (pattern,))
            hits = {n for n in self.names for p in expanded if fnmatch.fnmatchcase(n, p)}
            if not hits:
                raise WeightSpecError(f"--local-state {pattern!r} matches no weight of the model")
            found |= hits
        return frozenset(found)

    @classmethod
    def from_json(cls, raw: Any) -> ModelSpec:
        """From the manifest's ``weights`` list (or the same list stored elsewhere)."""
        if not isinstance(raw, list):
            raise WeightSpecError(f"weights must be a list, got {type(raw).__name__}")
        return cls(tuple(WeightSpec.from_json(item) for item in raw))

    @classmethod
    def from_keras(cls, model: Any) -> ModelSpec:
        """A Keras model's weights (``model.weights``: trainable and not, in
        Keras order), named ``layer/variable``."""
        return cls(
            tuple(
                WeightSpec(
                    name=variable_name(w),
                    shape=tuple(int(d) for d in w.shape),
                    # A tf.DType knows its NumPy dtype; a Keras 3 dtype is a string.
                    dtype=np.dtype(getattr(w.dtype, "as_numpy_dtype", w.dtype)).name,
                )
                for w in model.weights
            )
        )

    @classmethod
    def of_weights(cls, weights: Mapping[str, npt.NDArray[Any]]) -> ModelSpec:
        """The spec of some arrays, in their order (names, shapes, dtypes as they are)."""
        return cls(
            tuple(
                WeightSpec(
                    name, tuple(int(d) for d in np.shape(value)), np.asarray(value).dtype.name
                )
                for name, value in weights.items()
            )
        )

    def ordered(self, weights: Mapping[str, npt.NDArray[Any]]) -> Weights:
        """``weights`` in canonical order; exactly the spec's names and shapes."""
        names = self.names
        known = set(names)
        missing = [name for name in names if name not in weights]
        extra = [name for name in weights if name not in known]
        if missing or extra:
            raise WeightSpecError(f"weights differ: missing {missing[:5]}, unexpected {extra[:5]}")
        for spec in self.weights:
            shape = tuple(np.shape(weights[spec.name]))
            if shape != spec.shape:
                raise WeightSpecError(f"{spec.name}: shape {shape}, the model has {spec.shape}")
        return {name: weights[name] for name in self.names}

    def differences(self, other: ModelSpec, here: str, there: str) -> list[str]:
        """How ``other`` differs from this spec, one phrase per difference
        (empty when they are the same): weights only on one side, shapes,
        dtypes, order. ``here``/``there`` name the two sides."""
        mine = {spec.name: spec for spec in self.weights}
        theirs = {spec.name: spec for spec in other.weights}
        found = [f"{name} only {here}" for name in mine if name not in theirs]
        found += [f"{name} only {there}" for name in theirs if name not in mine]
        for name, spec in mine.items():
            other_spec = theirs.get(name)
            if other_spec is not None and other_spec.shape != spec.shape:
                found.append(f"{name}: shape {spec.shape} {here}, {other_spec.shape} {there}")
            elif other_spec is not None and other_spec.dtype != spec.dtype:
                found.append(f"{name}: dtype {spec.dtype} {here}, {other_spec.dtype} {there}")
        if not found and self.names != other.names:
            found.append(f"the same weights in another order {there}")
        return found

    def values(self, weights: Mapping[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        """The arrays in canonical order (what Keras's ``set_weights`` takes)."""
        return list(self.ordered(weights).values())

    def named(self, values: Sequence[npt.NDArray[Any]]) -> Weights:
        """Arrays in canonical order (what Keras's ``get_weights`` gives) by name."""
        if len(values) != len(self.weights):
            raise WeightSpecError(f"{len(values)} arrays for {len(self.weights)} weights")
        return self.ordered(dict(zip(self.names, values, strict=True)))

    def to_train_inputs(self, weights: Mapping[str, npt.NDArray[Any]]) -> Weights:
        """The ``set_weights`` signature's arguments: each weight under its
        key, as a contiguous array of the spec's dtype."""
        ordered = self.ordered(weights)
        return {
            train_key(i): np.ascontiguousarray(ordered[spec.name], dtype=spec.dtype)
            for i, spec in enumerate(self.weights)
        }

    def from_train_outputs(self, outputs: Mapping[str, npt.NDArray[Any]]) -> Weights:
        """The ``get_weights`` signature's outputs by canonical name."""
        missing = [key for key in self.train_keys if key not in outputs]
        if missing:
            raise WeightSpecError(f"the training artifact does not return {missing[:5]}")
        return {
            spec.name: _as_shaped(np.array(outputs[train_key(i)]), spec)
            for i, spec in enumerate(self.weights)
        }


def _as_shaped(value: npt.NDArray[Any], spec: WeightSpec) -> npt.NDArray[Any]:
    """A training signature's output in its weight's shape: TFLite returns
    a scalar (a Normalization layer's ``count``) as shape ``(1,)``."""
    if value.shape != spec.shape and value.size == spec.size:
        return value.reshape(spec.shape)
    return value
