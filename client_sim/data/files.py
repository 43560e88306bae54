"""Read the user's ``.npz`` and ``.csv`` files into arrays, unchecked.

Each reader maps the file's layout onto the model's input names and
returns a :class:`RawData`; :func:`fedge.client_sim.data.user_data.load_dataset` then checks
shapes, labels and values the same way whatever the format.

=========  ===========================================================
``.npz``   ``x`` (one-input model; its input's name is accepted too) or
           one array per input name; ``y``; optional ``device``
``.csv``   a header row; a label column ``y`` (or ``label``); optional
           ``device``; every other column a feature, in file order,
           reshaped to the one input's per-example shape (the layout of
           :mod:`fedge.task.csv_layout`, which ``predict`` reads too)
=========  ===========================================================
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.bundle.manifest import TensorSpec
from fedge.errors import DataError
from fedge.task.csv_layout import DEVICE_COLUMN, LABEL_COLUMNS, read_rows

DEVICE = DEVICE_COLUMN


@dataclass(frozen=True)
class RawData:
    """Arrays as the source holds them, keyed by model input name.

    ``x_names`` says what the source calls each input (``x``, a column
    range), so messages use the user's names.
    """

    x: dict[str, npt.NDArray[Any]]
    y: npt.NDArray[Any]
    device: npt.NDArray[Any] | None
    x_names: dict[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None


def sorted_names(names: Iterable[str]) -> tuple[str, ...]:
    """Names in order: numerically when all are whole numbers (2 before 10), else as text."""
    unique = set(names)
    if all(n.isdigit() for n in unique):
        return tuple(sorted(unique, key=lambda n: (int(n), n)))
    return tuple(sorted(unique))


def read_npz(path: Path, inputs: Sequence[TensorSpec]) -> RawData:
    arrays = _npz_arrays(path)
    src = path.name
    if len(inputs) == 1:
        spec = inputs[0]
        if spec.name != "x" and "x" in arrays and spec.name in arrays:
            raise DataError(
                f"{src} holds both 'x' and {spec.name!r}; the model has one input, "
                "so keep one of them"
            )
        keys = {spec.name: spec.name if spec.name in arrays else "x"}
        expected = f"x (the input {spec.name!r}; its own name is accepted too)"
    else:
        keys = {spec.name: spec.name for spec in inputs}
        expected = ", ".join(repr(s.name) for s in inputs) + " (one array per model input)"
    expected += ", y (the labels) and optionally device (each example's device id)"
    unknown = sorted(set(arrays) - {*keys.values(), "y", DEVICE})
    if unknown:
        raise DataError(
            f"{src} holds arrays the model does not take: {', '.join(unknown)}; "
            f"expected: {expected}"
        )
    for key in [*keys.values(), "y"]:
        if key not in arrays:
            have = ", ".join(sorted(arrays)) or "no arrays"
            raise DataError(f"{src} has no array {key!r} (it holds: {have}); expected: {expected}")
    return RawData(
        x={name: arrays[key] for name, key in keys.items()},
        y=arrays["y"],
        device=arrays.get(DEVICE),
        x_names={name: key for name, key in keys.items()},
    )


def _npz_arrays(path: Path) -> dict[str, npt.NDArray[Any]]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path.name} holds a single array, not named arrays; "
                "save with numpy.savez(path, x=..., y=...)"
            )
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path.name} cannot be read as a NumPy .npz archive: {exc}") from exc


def read_csv(path: Path, inputs: Sequence[TensorSpec]) -> RawData:
    src = path.name
    if len(inputs) != 1:
        names = ", ".join(repr(s.name) for s in inputs)
        raise DataError(
            f"{src}: a CSV file holds the features of one input; the model takes "
            f"{len(inputs)} ({names}); use a .npz file with one array per input name"
        )
    spec = inputs[0]
    header, rows = _csv_rows(path)
    lowered = [h.strip().lower() for h in header]
    label_cols = [i for i, h in enumerate(lowered) if h in LABEL_COLUMNS]
    device_cols = [i for i, h in enumerate(lowered) if h == DEVICE]
    if len(label_cols) != 1 or len(device_cols) > 1:
        raise DataError(
            f"{src}: the header ({', '.join(header)}) must name one label column, "
            "'y' or 'label', and at most one 'device' column (is the header row missing?)"
        )
    feature_cols = [i for i in range(len(header)) if i not in (*label_cols, *device_cols)]
    try:
        shape = _per_example_shape(spec, len(feature_cols), src)
    except DataError as exc:
        # Too many columns because some hold text (a name, a city): name them.
        text = _text_columns(rows, feature_cols, header)
        if not text:
            raise
        raise DataError(_text_columns_message(text, spec, src)) from exc
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{src}, line {line}: {len(row)} fields; the header has {len(header)}")
    features = _numbers(rows, feature_cols, header, src)
    labels = [row[label_cols[0]].strip() for _, row in rows]
    device = None
    if device_cols:
        device = np.array([row[device_cols[0]].strip() for _, row in rows], dtype=np.str_)
        for (line, _), name in zip(rows, device, strict=True):
            if not name:
                raise DataError(f"{src}, line {line}: the device column is empty")
    return RawData(
        x={spec.name: features.reshape((len(rows), *shape))},
        y=_labels(labels),
        device=device,
        x_names={spec.name: "the feature columns"},
    )


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows, each with its line number."""
    try:
        rows = read_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path.name} cannot be read as CSV: {exc}") from exc
    if not rows:
        raise DataError(f"{path.name} is empty; expected a header row and one row per example")
    return rows[0][1], rows[1:]


def _per_example_shape(spec: TensorSpec, count: int, src: str) -> tuple[int, ...]:
    """The input's shape without the batch for ``count`` values; one free dim is inferred."""
    dims = spec.shape[1:]
    known = math.prod(d for d in dims if d is not None)
    free = sum(d is None for d in dims)
    if free == 0 and known == count:
        return tuple(d for d in dims if d is not None)
    if free == 1 and count > 0 and count % known == 0:
        return tuple(count // known if d is None else d for d in dims)
    takes = f"{known} values per example" if free == 0 else "a shape a CSV row cannot fix"
    raise DataError(
        f"{src} has {count} feature columns; the model's input {spec.name!r} takes "
        f"{spec.shape}, i.e. {takes}"
    )


def _text_columns(
    rows: list[tuple[int, list[str]]], cols: list[int], header: list[str]
) -> list[tuple[str, str]]:
    """Feature columns holding a cell that is not a number: (name, that cell)."""
    found = []
    for c in cols:
        for _, row in rows:
            cell = row[c].strip() if c < len(row) else ""
            try:
                float(cell)
            except ValueError:
                found.append((header[c].strip(), cell))
                break
    return found


def _text_columns_message(text: list[tuple[str, str]], spec: TensorSpec, src: str) -> str:
    names = ", ".join(repr(name) for name, _ in text)
    cells = ", ".join(repr(cell) for _, cell in text)
    one = len(text) == 1
    not_features = "it is not a feature" if one else "they are not features"
    return (
        f"{src}: {'column' if one else 'columns'} {names} {'holds' if one else 'hold'} "
        f"text ({cells}), not numbers, so {not_features}; the "
        f"model's input {spec.name!r} takes {spec.shape}, from every column but 'y' (or "
        f"'label') and 'device': drop {'it' if one else 'them'}"
    )


def _numbers(
    rows: list[tuple[int, list[str]]], cols: list[int], header: list[str], src: str
) -> npt.NDArray[np.float64]:
    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        for j, c in enumerate(cols):
            try:
                out[r, j] = float(row[c])
            except ValueError:
                raise DataError(
                    f"{src}, line {line}, column {header[c]!r}: {row[c]!r} is not a number; "
                    "every feature must be one"
                ) from None
    return out


def _labels(cells: list[str]) -> npt.NDArray[Any]:
    """Numbers when every cell is one, else the text (a class name, or an error later)."""
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=np.str_)
