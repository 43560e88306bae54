"""``fedge predict``: batch predictions with any runtime of a bundle.

Inputs: ``.npy`` (one-input models), ``.npz`` (one array per input name, or
``arr_0``...), or ``.csv`` (one flattened example per row, one-input
models). Outputs: ``.npy`` (one output), ``.npz`` (several) or ``.csv``
(one row per example; a classifier gets a ``predicted`` label column).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.errors import ConversionError
from fedge.converters.registry import TARGETS
from fedge.converters.samples import check_arrays, read_arrays
from fedge.manifest import Manifest, verify_bundle

RUNTIMES = ("tflite", "tfjs", "coreml", "keras")


def read_inputs(path: Path, manifest: Manifest) -> list[npt.NDArray[Any]]:
    if not path.is_file():
        raise ConversionError(f"no such input file: {path}")
    specs = [(s.name, s.shape, s.dtype) for s in manifest.inputs]
    if path.suffix == ".csv":
        arrays = [_read_csv(path, manifest)]
    elif path.suffix in (".npy", ".npz"):
        arrays = read_arrays(path, [name for name, _, _ in specs])
    else:
        raise ConversionError(f"{path}: expected .npy, .npz or .csv")
    check_arrays(arrays, specs, str(path))
    return [a.astype(dtype) for a, (_, _, dtype) in zip(arrays, specs, strict=True)]


def _read_csv(path: Path, manifest: Manifest) -> npt.NDArray[Any]:
    if len(manifest.inputs) != 1:
        raise ConversionError("a .csv input works for one-input models; use .npz")
    spec = manifest.inputs[0]
    try:
        flat = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise ConversionError(f"{path}: not a numeric CSV: {exc}") from exc
    if any(d is None for d in spec.shape[1:]):
        raise ConversionError(f"input {spec.name!r} has a variable dimension; use .npy")
    shape = tuple(int(d) for d in spec.shape[1:] if d is not None)
    if flat.shape[1] != int(np.prod(shape)):
        raise ConversionError(
            f"{path}: rows have {flat.shape[1]} values; input {spec.name!r} takes "
            f"{int(np.prod(shape))} ({shape})"
        )
    return flat.reshape((-1, *shape))


def predict_bundle(
    bundle_dir: Path, runtime: str, inputs_path: Path
) -> tuple[Manifest, list[npt.NDArray[Any]]]:
    if runtime not in RUNTIMES:
        raise ConversionError(f"--runtime must be one of {', '.join(RUNTIMES)}")
    manifest = verify_bundle(bundle_dir)
    record = manifest.artifact(runtime)
    inputs = read_inputs(inputs_path, manifest)
    predictor = TARGETS[runtime].loader()(bundle_dir, record)
    return manifest, predictor.predict(inputs)


def write_outputs(path: Path, manifest: Manifest, outputs: list[npt.NDArray[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        if len(outputs) != 1:
            raise ConversionError("the model has several outputs; write .npz")
        np.save(path, outputs[0])
    elif path.suffix == ".npz":
        np.savez(path, **{s.name: o for s, o in zip(manifest.outputs, outputs, strict=True)})
    elif path.suffix == ".csv":
        _write_csv(path, manifest, outputs)
    else:
        raise ConversionError(f"{path}: write .npy, .npz or .csv")


def _write_csv(path: Path, manifest: Manifest, outputs: list[npt.NDArray[Any]]) -> None:
    if len(outputs) != 1:
        raise ConversionError("the model has several outputs; write .npz")
    values = outputs[0].reshape(len(outputs[0]), -1)
    labels = manifest.labels
    header = (
        list(labels)
        if labels and len(labels) == values.shape[1]
        else [f"{manifest.outputs[0].name}_{i}" for i in range(values.shape[1])]
    )
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, "predicted"] if labels else header)
        for row in values:
            cells = [f"{v:.6g}" for v in row]
            writer.writerow([*cells, header[int(row.argmax())]] if labels else cells)
