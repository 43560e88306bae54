"""``fedge predict``: batch predictions with any runtime of a bundle.

Inputs: ``.npy`` (one-input models), ``.npz`` (one array per input name, or
``arr_0``...), or ``.csv`` (one flattened example per row, one-input
models). Outputs: ``.npy`` (one output), ``.npz`` (several) or ``.csv``
(one row per example; a classifier gets a ``predicted`` label column).

Everything is checked before anything is written: the bundle (and its id,
against ``--bundle-id``), the output path (its directory must exist: a
typo is not a reason to create directories), the inputs (numbers, rows,
no NaN or infinity, integers that fit the input's dtype). A runtime that
fails on the inputs (a token id outside an embedding's vocabulary) is
reported as bad input, with the range the input held. The output file
appears whole or not at all; an existing one is replaced only on success.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from fedge.bundle.manifest import (
    Manifest,
    ManifestError,
    VerifiedBundle,
    open_bundle,
    verify_bundle,
)
from fedge.converters.errors import (
    BadInputError,
    ConversionError,
    PredictionError,
    TargetFailedError,
)
from fedge.converters.parity.predictor import Predictor
from fedge.converters.parity.samples import check_arrays, read_samples
from fedge.converters.targets.registry import TARGETS
from fedge.errors import FedgeError

RUNTIMES = ("tflite", "tfjs", "coreml", "keras")
OUTPUT_SUFFIXES = (".npy", ".npz", ".csv")
Array = npt.NDArray[Any]
# How TFLite, TensorFlow and TF.js say that an index (a token id) is out of range.
_INDEX_OUT_OF_RANGE = re.compile(r"index out of bounds|is not in \[|index value", re.IGNORECASE)
_KINDS = {"U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers"}


@dataclass(frozen=True)
class PredictRun:
    """What ``fedge predict`` did: which bundle (and its id), how many rows, where."""

    bundle: VerifiedBundle
    rows: int
    out: Path


def predict_to_file(
    bundle_dir: Path,
    runtime: str,
    inputs_path: Path,
    out_path: Path,
    expected_id: str | None = None,
) -> PredictRun:
    """Check everything, predict, then write ``out_path`` in one step."""
    bundle = open_bundle(bundle_dir, expected_id)
    check_output_path(out_path, bundle.manifest)
    outputs = _predict(bundle_dir, bundle.manifest, runtime, inputs_path)
    write_outputs(out_path, bundle.manifest, outputs)
    return PredictRun(bundle, len(outputs[0]), out_path)


def predict_bundle(
    bundle_dir: Path, runtime: str, inputs_path: Path
) -> tuple[Manifest, list[Array]]:
    manifest = verify_bundle(bundle_dir)
    return manifest, _predict(bundle_dir, manifest, runtime, inputs_path)


def _predict(bundle_dir: Path, manifest: Manifest, runtime: str, inputs_path: Path) -> list[Array]:
    if runtime not in RUNTIMES:
        raise BadInputError(f"--runtime must be one of {', '.join(RUNTIMES)}")
    try:
        record = manifest.artifact(runtime)
    except ManifestError as exc:  # a runtime this bundle lacks: the argument is wrong
        raise BadInputError(str(exc)) from exc
    inputs = read_inputs(inputs_path, manifest)
    predictor = TARGETS[runtime].loader()(bundle_dir, record)
    return run_predictor(predictor, runtime, inputs, manifest, inputs_path)


def read_inputs(path: Path, manifest: Manifest) -> list[Array]:
    """The file's arrays, cast to the model's input dtypes; any problem with
    them is a :class:`BadInputError` that names the input and what is wrong."""
    specs = [(s.name, s.shape, s.dtype) for s in manifest.inputs]
    if path.suffix not in (".npy", ".npz", ".csv"):
        raise BadInputError(f"{path}: expected .npy, .npz or .csv")
    if not path.is_file():
        raise BadInputError(f"no such input file: {path}")
    try:
        arrays = read_samples(path, specs)
        _check_numbers(arrays, specs, path)
        check_arrays(arrays, specs, str(path))
    except BadInputError:
        raise
    except ConversionError as exc:  # unreadable, wrong shape, no rows...: the file's fault
        raise BadInputError(str(exc)) from exc
    cast = [_cast(a, name, dtype, path) for a, (name, _, dtype) in zip(arrays, specs, strict=True)]
    for array, (name, _, _) in zip(cast, specs, strict=True):
        _check_finite(array, name, path)
    return cast


def _check_numbers(arrays: list[Array], specs: list[Any], path: Path) -> None:
    for array, (name, _, dtype) in zip(arrays, specs, strict=True):
        if array.dtype.kind in "biuf":
            continue
        what = _KINDS.get(array.dtype.kind, "values that are not numbers")
        hint = "map them to numbers (token ids) first" if "int" in dtype else "convert them first"
        raise BadInputError(
            f"{path}: input {name!r} takes {dtype} numbers, but the file holds "
            f"{what} ({array.dtype}); {hint}"
        )


def _cast(array: Array, name: str, dtype: str, path: Path) -> Array:
    """``array`` as ``dtype``; integers that would wrap around are refused."""
    target = np.dtype(dtype)
    if target.kind in "iu" and array.size and array.dtype.kind in "iuf":
        info = np.iinfo(target)
        low, high = np.min(array), np.max(array)
        if low < info.min or high > info.max:
            raise BadInputError(
                f"{path}: input {name!r} takes {dtype}, but the file has values from "
                f"{low:g} to {high:g}, outside {info.min}..{info.max}"
            )
    with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, refused next
        return array.astype(target, copy=False)


def _check_finite(array: Array, name: str, path: Path) -> None:
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        first_row = int(np.argwhere(bad)[0][0])
        raise BadInputError(
            f"{path}: input {name!r} has {int(bad.sum())} values that are NaN or infinite "
            f"(first in row {first_row}); the model's outputs for them would be meaningless"
        )


def run_predictor(
    predictor: Predictor, runtime: str, inputs: list[Array], manifest: Manifest, source: Path
) -> list[Array]:
    """The runtime's outputs; its failures as fedge's errors, not tracebacks."""
    try:
        return predictor.predict(inputs)
    except TargetFailedError as exc:  # raised by a runtime's runner: here, predict failed
        detail = exc.detail
    except FedgeError:
        raise
    except Exception as exc:  # TFLite, TensorFlow and NumPy raise many types on bad data
        detail = f"{type(exc).__name__}: {_summary(exc)}"
    integers = [
        (spec.name, array)
        for spec, array in zip(manifest.inputs, inputs, strict=True)
        if array.dtype.kind in "iu" and array.size
    ]
    if integers and _INDEX_OUT_OF_RANGE.search(detail):
        held = "; ".join(
            f"{name!r} holds values from {int(np.min(a))} to {int(np.max(a))}"
            for name, a in integers
        )
        raise BadInputError(
            f"{runtime} could not run on {source.name}: an index out of range ({detail}). "
            f"Input {held}: token ids and other indices must be in [0, size) of the layer "
            "that looks them up (an Embedding's input_dim)"
        )
    raise PredictionError(f"{runtime}: prediction failed on {source.name}: {detail}")


def _summary(exc: BaseException) -> str:
    """The line of an error that says what went wrong (TensorFlow's come with
    a 'Graph execution error' header and the node's stack)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return "no message"
    return next((line for line in lines if _INDEX_OUT_OF_RANGE.search(line)), lines[0])


def check_output_path(path: Path, manifest: Manifest) -> None:
    """A path ``write_outputs`` can write: known format, existing directory."""
    if path.suffix not in OUTPUT_SUFFIXES:
        raise BadInputError(f"--out {path.name}: write .npy, .npz or .csv")
    if len(manifest.outputs) > 1 and path.suffix != ".npz":
        names = ", ".join(s.name for s in manifest.outputs)
        raise BadInputError(
            f"--out {path.name}: the model has {len(manifest.outputs)} outputs ({names}); "
            "write .npz"
        )
    if path.is_dir():
        raise BadInputError(f"--out {path}: is a directory")
    if not path.parent.is_dir():
        raise BadInputError(
            f"--out {path}: the directory {path.parent} does not exist; create it first"
        )


def write_outputs(path: Path, manifest: Manifest, outputs: list[Array]) -> None:
    """Write through a temporary file beside ``path``, then rename it into place."""
    check_output_path(path, manifest)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".csv":
            with open(scratch, "w", newline="") as text:
                _write_csv(text, manifest, outputs)
        else:
            with open(scratch, "wb") as binary:  # a handle: NumPy adds no suffix
                if path.suffix == ".npy":
                    np.save(binary, outputs[0])
                else:
                    named = {s.name: o for s, o in zip(manifest.outputs, outputs, strict=True)}
                    np.savez(binary, **named)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def _write_csv(handle: IO[str], manifest: Manifest, outputs: list[Array]) -> None:
    values = outputs[0].reshape(len(outputs[0]), -1)
    labels = manifest.labels
    header = (
        list(labels)
        if labels and len(labels) == values.shape[1]
        else [f"{manifest.outputs[0].name}_{i}" for i in range(values.shape[1])]
    )
    writer = csv.writer(handle)
    writer.writerow([*header, "predicted"] if labels else header)
    for row in values:
        cells = [f"{v:.6g}" for v in row]
        writer.writerow([*cells, header[int(row.argmax())]] if labels else cells)
