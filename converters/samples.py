"""Inputs for parity checks and int8 calibration.

In order of preference: a file the user gives (``.npy`` for a one-input
model, ``.npz`` with one array per input name or ``arr_0``, ``arr_1``...),
the reference task's held-out test set (with its labels) for the reference
model, or seeded random inputs of the model's input shapes. Another model
that takes 8x8x1 inputs is not the digits task: it gets random inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.errors import ConversionError
from fedge.converters.model_io import input_specs
from fedge.reference_weights import REFERENCE_MODEL_NAME, is_reference_model
from fedge.weight_spec import ModelSpec


@dataclass(frozen=True)
class SampleSet:
    """One array per model input, all with the same number of rows."""

    arrays: tuple[npt.NDArray[Any], ...]
    source: str
    labels: npt.NDArray[np.int64] | None = None

    @property
    def count(self) -> int:
        return int(self.arrays[0].shape[0])


def load_samples(
    model: Any, path: Path | None = None, max_samples: int = 256, seed: int = 0
) -> SampleSet:
    specs = input_specs(model)
    if path is not None:
        arrays = read_arrays(path, [s[0] for s in specs])
        source = str(path)
    elif is_reference_task(model):
        from fedge.data import load_task

        test = load_task(seed=seed).test
        arrays, source = [test.x], "digits test split"
        check_arrays(arrays, specs, source)
        return SampleSet((test.x[:max_samples],), source, labels=test.y[:max_samples])
    else:
        rng = np.random.default_rng(seed)
        arrays = [_random_input(rng, shape, dtype, max_samples) for _, shape, dtype in specs]
        source = "random inputs"
    check_arrays(arrays, specs, source)
    return SampleSet(arrays=tuple(a[:max_samples] for a in arrays), source=source)


def is_reference_task(model: Any) -> bool:
    """Whether a Keras model is fedge's reference model, whose task (and
    test data, and labels) is the digits: by its name and weight spec."""
    name = str(model.name)
    return name == REFERENCE_MODEL_NAME and is_reference_model(name, ModelSpec.from_keras(model))


def read_arrays(path: Path, names: list[str]) -> list[npt.NDArray[Any]]:
    """Arrays for the named inputs from ``.npy`` (one input) or ``.npz``."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"could not read samples from {path}: {exc}") from exc
    if isinstance(loaded, np.ndarray):
        return [loaded]
    with loaded:
        if all(n in loaded.files for n in names):
            return [loaded[n] for n in names]
        positional = [f"arr_{i}" for i in range(len(names))]
        if all(n in loaded.files for n in positional):
            return [loaded[n] for n in positional]
        raise ConversionError(
            f"{path} holds {loaded.files}; expected arrays named {names} or {positional}"
        )


def _random_input(
    rng: np.random.Generator, shape: tuple[int | None, ...], dtype: str, count: int
) -> npt.NDArray[Any]:
    concrete = (count, *[8 if d is None else d for d in shape[1:]])
    if dtype.startswith("int"):
        return rng.integers(0, 10, size=concrete).astype(dtype)
    return rng.uniform(0.0, 1.0, size=concrete).astype(dtype)


def check_arrays(
    arrays: list[npt.NDArray[Any]], specs: list[tuple[str, tuple[int | None, ...], str]], src: str
) -> None:
    if len(arrays) != len(specs):
        raise ConversionError(f"{src}: {len(arrays)} arrays for {len(specs)} model inputs")
    for array, (name, shape, _) in zip(arrays, specs, strict=True):
        fits = array.ndim == len(shape) and all(
            e is None or e == g for e, g in zip(shape[1:], array.shape[1:], strict=True)
        )
        if not fits:
            raise ConversionError(
                f"{src}: input {name!r} has shape {array.shape}, the model takes {shape}"
            )
    if len({a.shape[0] for a in arrays}) != 1:
        raise ConversionError(f"{src}: inputs have different numbers of rows")
