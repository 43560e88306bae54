"""The user's own data for ``fedge simulate --data``, checked against the model.

:func:`load_dataset` reads a ``.npz`` file, a ``.csv`` file or a folder of
images by class (see :mod:`fedge.client_sim.data.files` and
:mod:`fedge.client_sim.data.image_folder`),
then checks every array the same way against the model's inputs
(:class:`~fedge.bundle.manifest.TensorSpec`) and what it learns
(:class:`LabelSpec`). Anything that cannot be used is a
:class:`~fedge.errors.DataError` that says what is wrong and what was
expected, before a device trains on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.bundle.manifest import TensorSpec
from fedge.client_sim.data.files import RawData, read_csv, read_npz
from fedge.client_sim.data.image_folder import read_image_folder
from fedge.errors import DataError
from fedge.task.examples import Examples, FloatArray, Labels

CLASS_IDS = "class_ids"
TARGETS = "targets"


@dataclass(frozen=True)
class LabelSpec:
    """What the model learns, from the bundle's training record.

    ``kind`` is ``"class_ids"`` (integer labels in ``[0, num_classes)``)
    or ``"targets"`` (float labels of ``shape`` per example, the output's
    shape without the batch). ``class_names`` are the bundle's labels, if
    any: an image folder's class folders are mapped onto them.
    """

    kind: str
    shape: tuple[int, ...]
    num_classes: int | None
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Dataset:
    """Checked examples: ``x`` per input name, in the dtype the model's input has;
    ``y`` int64 class ids or float32 targets; ``device`` each example's device id,
    if the data names one."""

    examples: Examples
    device: npt.NDArray[np.str_] | None
    source: str
    class_names: tuple[str, ...] | None


def load_dataset(path: Path, inputs: Sequence[TensorSpec], label: LabelSpec) -> Dataset:
    if label.kind not in (CLASS_IDS, TARGETS):
        raise DataError(f"unknown label kind {label.kind!r}; expected {CLASS_IDS} or {TARGETS}")
    if not inputs:
        raise DataError("the model declares no inputs")
    raw = _read(path, inputs, label)
    src = path.name
    n = _common_length(raw, src)
    if n == 0:
        raise DataError(f"{src} holds no examples")
    x = {spec.name: _input(raw.x[spec.name], spec, raw.x_names[spec.name], src) for spec in inputs}
    device = None if raw.device is None else _device_ids(raw.device, src)
    return Dataset(Examples(x=x, y=_labels(raw.y, label, src)), device, src, raw.class_names)


def _read(path: Path, inputs: Sequence[TensorSpec], label: LabelSpec) -> RawData:
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_dir():
        if len(inputs) != 1 or label.kind != CLASS_IDS:
            raise DataError(
                f"{path.name}: a folder of images by class fits a model with one image "
                f"input that learns class ids; this one takes {len(inputs)} input(s) "
                f"and learns {label.kind}"
            )
        return read_image_folder(path, inputs[0], label.class_names)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path, inputs)
    if suffix == ".csv":
        return read_csv(path, inputs)
    raise DataError(
        f"{path.name}: unknown data format {path.suffix or '(no suffix)'!r}; expected a .npz "
        "file, a .csv file or a folder of images by class (DATA/<class>/*.png)"
    )


def _common_length(raw: RawData, src: str) -> int:
    arrays = {raw.x_names[name]: a for name, a in raw.x.items()}
    arrays["y"] = raw.y
    if raw.device is not None:
        arrays["device"] = raw.device
    scalar = [name for name, a in arrays.items() if a.ndim == 0]
    if scalar:
        raise DataError(f"{src}: {', '.join(scalar)} must hold one row per example, not a scalar")
    lengths = {name: int(a.shape[0]) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise DataError(
            f"{src}: arrays have different lengths ({listed}); each holds one row per example"
        )
    return next(iter(lengths.values()))


def _input(a: npt.NDArray[Any], spec: TensorSpec, name: str, src: str) -> FloatArray:
    takes = f"the model's input {spec.name!r} takes {spec.shape}"
    if a.dtype.kind not in "biuf":
        raise DataError(f"{src}: {name} holds {a.dtype} values, not numbers; {takes}")
    fits = a.ndim == len(spec.shape) and all(
        d is None or d == s for d, s in zip(spec.shape[1:], a.shape[1:], strict=True)
    )
    if not fits:
        raise DataError(f"{src}: {name} has shape {a.shape}; {takes}")
    dtype = input_dtype(spec)
    if dtype.kind in "iu":
        return _whole_numbers(a, dtype, name, src, spec)
    x = a.astype(dtype)
    _check_finite(x, name, src)
    return x


def input_dtype(spec: TensorSpec) -> np.dtype[Any]:
    """The dtype the manifest records for an input (float32 if it names none NumPy knows).

    Token ids stay int32 all the way to the runtime: ``train.tflite``
    refuses a float tensor for an integer input.
    """
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        return np.dtype(np.float32)
    return dtype if dtype.kind in "biuf" else np.dtype(np.float32)


def _whole_numbers(
    a: npt.NDArray[Any], dtype: np.dtype[Any], name: str, src: str, spec: TensorSpec
) -> npt.NDArray[Any]:
    flat = a.reshape(len(a), -1)
    whole = (np.isfinite(flat) & (flat == np.round(flat))).all(axis=1)
    if not whole.all():
        i = int(np.argmin(whole))
        raise DataError(
            f"{src}: {name} holds a value that is not a whole number in example {i}; "
            f"the model's input {spec.name!r} takes {dtype} values (token or category ids)"
        )
    return a.astype(dtype)


def _check_finite(a: npt.NDArray[Any], name: str, src: str) -> None:
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{src}: {name} holds NaN or infinite values in {int(bad.sum())} example(s), "
            f"the first at index {int(np.argmax(bad))}; every value must be finite"
        )


def _labels(y: npt.NDArray[Any], label: LabelSpec, src: str) -> Labels:
    if label.kind == CLASS_IDS:
        return _class_ids(y, label, src)
    return _targets(y, label, src)


def _class_ids(y: npt.NDArray[Any], label: LabelSpec, src: str) -> npt.NDArray[np.int64]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{src}: y has shape {y.shape}; class ids are one integer per example, shape (n,) "
            "(one-hot labels? store each example's class index)"
        )
    if y.dtype.kind in "US":
        y = _ids_from_names(y.astype(np.str_), label, src)
    if y.dtype.kind not in "iuf":
        raise DataError(f"{src}: y holds {y.dtype} values; class ids must be integers")
    whole = np.isfinite(y) & (y == np.round(y)) if y.dtype.kind == "f" else np.ones(len(y), bool)
    if not whole.all():
        i = int(np.argmin(whole))
        raise DataError(f"{src}: y holds {y[i]} at index {i}; class ids must be whole numbers")
    upper = label.num_classes
    out = (y < 0) | (y >= upper) if upper is not None else y < 0
    if out.any():
        i = int(np.argmax(out))
        allowed = f"[0, {upper}) (the model has {upper} classes)" if upper is not None else ">= 0"
        raise DataError(
            f"{src}: y holds class id {y[i]:g} at index {i}; class ids must be in {allowed}"
        )
    return y.astype(np.int64)


def _ids_from_names(y: npt.NDArray[np.str_], label: LabelSpec, src: str) -> npt.NDArray[np.int64]:
    names = label.class_names or ()
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in y} - set(index))
    if unknown:
        known = f"one of its labels ({', '.join(names)})" if names else "its bundle names none"
        raise DataError(
            f"{src}: y holds text labels ({', '.join(unknown[:5])}) the model does not know; "
            f"use class ids, or for each example {known}"
        )
    return np.array([index[str(v)] for v in y], dtype=np.int64)


def _targets(y: npt.NDArray[Any], label: LabelSpec, src: str) -> FloatArray:
    if y.dtype.kind not in "biuf":
        raise DataError(f"{src}: y holds {y.dtype} values; the model's targets are numbers")
    n = len(y)
    if y.shape[1:] != label.shape:
        if int(np.prod(label.shape)) != 1 or y.size != n:
            raise DataError(
                f"{src}: y has shape {y.shape}; the model's output takes "
                f"{(None, *label.shape)} (one target of shape {label.shape} per example)"
            )
        y = y.reshape((n, *label.shape))
    out = y.astype(np.float32)
    _check_finite(out, "y", src)
    return out


def _device_ids(device: npt.NDArray[Any], src: str) -> npt.NDArray[np.str_]:
    if device.ndim != 1:
        raise DataError(f"{src}: device has shape {device.shape}; expected one id per example")
    whole = device.dtype.kind == "f" and bool(
        np.isfinite(device).all() and (device == np.round(device)).all()
    )
    if whole:  # ids saved as floats (1.0): name them 1, as ints would be
        device = device.astype(np.int64)
    if device.dtype.kind not in "iuUS":
        raise DataError(
            f"{src}: device holds {device.dtype} values; device ids are integers or strings"
        )
    return device.astype(np.str_)
