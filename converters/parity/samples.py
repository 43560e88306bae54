"""Inputs for parity checks and int8 calibration.

In order of preference: a file the user gives (``.npy`` for a one-input
model, ``.npz`` with one array per input name or ``arr_0``, ``arr_1``...,
``.csv`` with one flattened example per row for a one-input model), the
reference task's held-out test set (with its labels) for the reference
model, or seeded random inputs of the model's input shapes. Another model
that takes 8x8x1 inputs is not the digits task: it gets random inputs.

Random inputs can show that a runtime computes what Keras computes; they
cannot calibrate int8, whose scales come from the range of the data: a
model that expects 0..255 pixels, calibrated on [0, 1), clips every real
image. So int8 takes the user's data or the reference task's, never random
numbers (:func:`calibration_samples`). Every set says what it is and the
range of each input (:meth:`SampleSet.describe`), for the manifest.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from fedge.converters.errors import ConversionError
from fedge.converters.options import ConvertOptions
from fedge.converters.source.model_io import input_specs
from fedge.errors import ConfigError
from fedge.reference.weights import is_reference_model
from fedge.task.csv_layout import is_feature, is_header, read_rows
from fedge.wire.weight_spec import ModelSpec

SampleKind = Literal["user samples", "reference task", "seeded random"]
InputSpec = tuple[str, tuple[int | None, ...], str]
CALIBRATION_ROWS = 200


@dataclass(frozen=True)
class SampleSet:
    """One array per model input, all with the same number of rows."""

    arrays: tuple[npt.NDArray[Any], ...]
    source: str
    labels: npt.NDArray[np.int64] | None = None
    kind: SampleKind = "user samples"
    names: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return int(self.arrays[0].shape[0])

    def head(self, rows: int) -> SampleSet:
        """The first ``rows`` samples (and labels)."""
        labels = None if self.labels is None else self.labels[:rows]
        return replace(self, arrays=tuple(a[:rows] for a in self.arrays), labels=labels)

    def ranges(self) -> dict[str, list[float]]:
        """``[min, max]`` of each input, by input name."""
        names = self.names or tuple(f"input_{i}" for i in range(len(self.arrays)))
        return {
            name: [float(np.min(a)), float(np.max(a))]
            for name, a in zip(names, self.arrays, strict=True)
        }

    def describe(self) -> dict[str, Any]:
        """What the manifest records: kind, source and the range of each input."""
        return {"kind": self.kind, "source": self.source, "range": self.ranges()}


def load_samples(
    model: Any, path: Path | None = None, max_samples: int = 256, seed: int = 0
) -> SampleSet:
    specs = input_specs(model)
    names = tuple(name for name, _, _ in specs)
    if path is not None:
        arrays = read_samples(path, specs)
        check_arrays(arrays, specs, str(path))
        cast = tuple(
            a[:max_samples].astype(dtype, copy=False)
            for a, (_, _, dtype) in zip(arrays, specs, strict=True)
        )
        return SampleSet(cast, str(path), kind="user samples", names=names)
    if is_reference_task(model):
        from fedge.reference.data import load_task

        test = load_task(seed=seed).test
        check_arrays([test.x], specs, "digits test split")
        return SampleSet(
            (test.x[:max_samples],),
            "digits test split",
            labels=test.y[:max_samples],
            kind="reference task",
            names=names,
        )
    rng = np.random.default_rng(seed)
    arrays = [_random_input(rng, shape, dtype, max_samples) for _, shape, dtype in specs]
    source = f"seed {seed}: floats uniform in [0, 1), integers 0..9"
    check_arrays(arrays, specs, source)
    return SampleSet(tuple(arrays), source, kind="seeded random", names=names)


def calibration_samples(model: Any, options: ConvertOptions) -> SampleSet:
    """The int8 representative set: ``--calibration``, else ``--samples``,
    else the reference task's test split; refused for any other model."""
    path = options.calibration_path or options.samples_path
    if path is None and not is_reference_task(model):
        raise ConfigError(
            "int8 needs calibration data: give --calibration FILE (or --samples FILE) with "
            f"a few hundred real inputs (.npy, .npz or .csv). fedge has no data for model "
            f"{model.name!r} (it is not the reference digits model), and calibrating on "
            "random numbers sets int8 scales for a range real inputs may not have (a model "
            "that expects 0..255 pixels, calibrated on [0, 1), clips every real image)"
        )
    return load_samples(model, path, max_samples=CALIBRATION_ROWS, seed=options.seed)


def is_reference_task(model: Any) -> bool:
    """Whether a Keras model is fedge's reference model, whose task (and
    test data, and labels) is the digits: by its name and weight spec."""
    return is_reference_model(str(model.name), ModelSpec.from_keras(model))


def read_samples(path: Path, specs: list[InputSpec]) -> list[npt.NDArray[Any]]:
    """Arrays for the model's inputs from ``.npy``, ``.npz`` or ``.csv``."""
    if path.suffix == ".csv":
        if len(specs) != 1:
            raise ConversionError(f"{path}: a .csv works for one-input models; use .npz")
        name, shape, _ = specs[0]
        return [read_csv(path, name, shape)]
    return read_arrays(path, [name for name, _, _ in specs])


def read_arrays(path: Path, names: list[str]) -> list[npt.NDArray[Any]]:
    """Arrays for the named inputs from ``.npy`` (one input) or ``.npz``."""
    if path.is_file() and path.stat().st_size == 0:
        raise ConversionError(f"{path}: no rows (the file is empty)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
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


def read_csv(path: Path, name: str, shape: tuple[int | None, ...]) -> npt.NDArray[np.float64]:
    """One flattened example per row, reshaped to the input's shape.

    The layout of :mod:`fedge.task.csv_layout`: an optional header row of
    column names, whose label and device columns are not features.
    """
    if any(d is None for d in shape[1:]):
        raise ConversionError(f"input {name!r} has a variable dimension; use .npy")
    example = tuple(int(d) for d in shape[1:] if d is not None)
    width = int(np.prod(example))
    try:
        rows = read_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConversionError(f"{path}: not a readable CSV: {exc}") from exc
    header = rows[0][1] if rows and is_header(rows[0][1]) else None
    if header is not None:
        rows = rows[1:]
    if not rows:
        raise ConversionError(f"{path}: no rows")
    fields = len(header) if header is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != fields:
            first = "the header has" if header is not None else "the first row has"
            raise ConversionError(f"{path}, line {line}: {len(row)} fields; {first} {fields}")
    columns = [i for i in range(fields) if header is None or is_feature(header[i])]
    if len(columns) != width:
        raise ConversionError(
            f"{path}: rows have {len(columns)} values; input {name!r} takes {width} ({example})"
        )
    flat = np.empty((len(rows), width), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        for j, c in enumerate(columns):
            try:
                flat[r, j] = float(row[c])
            except ValueError:
                column = repr(header[c]) if header is not None else str(c + 1)
                raise ConversionError(
                    f"{path}, line {line}, column {column}: {row[c]!r} is not a number"
                ) from None
    return flat.reshape((-1, *example))


def _random_input(
    rng: np.random.Generator, shape: tuple[int | None, ...], dtype: str, count: int
) -> npt.NDArray[Any]:
    concrete = (count, *[8 if d is None else d for d in shape[1:]])
    if dtype.startswith(("int", "uint")):
        return rng.integers(0, 10, size=concrete).astype(dtype)
    return rng.uniform(0.0, 1.0, size=concrete).astype(dtype)


def check_arrays(arrays: list[npt.NDArray[Any]], specs: list[InputSpec], src: str) -> None:
    """Shapes, row counts and dtypes that the model can take, or a message
    that says which input is wrong and how."""
    if len(arrays) != len(specs):
        raise ConversionError(f"{src}: {len(arrays)} arrays for {len(specs)} model inputs")
    if any(a.ndim > 0 and a.shape[0] == 0 for a in arrays):
        raise ConversionError(f"{src}: no rows")
    for array, (name, shape, dtype) in zip(arrays, specs, strict=True):
        fits = array.ndim == len(shape) and all(
            e is None or e == g for e, g in zip(shape[1:], array.shape[1:], strict=True)
        )
        if not fits:
            raise ConversionError(
                f"{src}: input {name!r} has shape {array.shape}, the model takes {shape}"
            )
        _check_integers(array, name, dtype, src)
    if len({a.shape[0] for a in arrays}) != 1:
        raise ConversionError(f"{src}: inputs have different numbers of rows")


def _check_integers(array: npt.NDArray[Any], name: str, dtype: str, src: str) -> None:
    """An integer input given floats: whole numbers are cast; fractions would be
    truncated without a word, so they are refused."""
    if not dtype.startswith(("int", "uint")) or array.dtype.kind != "f":
        return
    fractional = ~np.isfinite(array) | (np.mod(array, 1) != 0)
    if np.any(fractional):
        example = array[fractional].flat[0]
        raise ConversionError(
            f"{src}: input {name!r} takes {dtype}, but the file has {array.dtype} values with "
            f"fractions (e.g. {example:g}); round them or save integers"
        )
