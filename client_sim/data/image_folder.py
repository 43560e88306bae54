"""Read a folder of images by class: ``DATA/<class>/*.png|jpg|jpeg|bmp|gif``.

Each class folder's name is a label. The labels' order is the bundle's
(``class_names``) when it has one, so ids match what the model predicts;
otherwise the folder names sorted (numerically when they are all numbers).
Every image becomes what the model's one image input takes: grayscale or
RGB by its channel count, resized bilinearly to its height and width,
scaled to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from fedge.bundle.manifest import TensorSpec
from fedge.client_sim.data.files import RawData, sorted_names
from fedge.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_MODES = {1: "L", 3: "RGB"}


def read_image_folder(
    folder: Path, spec: TensorSpec, class_names: tuple[str, ...] | None
) -> RawData:
    height, width, channels = _image_size(spec, folder.name)
    classes = _class_folders(folder)
    order = class_names if class_names is not None else sorted_names(classes)
    unknown = sorted(set(classes) - set(order))
    if unknown:
        raise DataError(
            f"{folder.name}: class folders {', '.join(unknown)} are not among the model's "
            f"labels ({', '.join(order)})"
        )
    images: list[npt.NDArray[np.float32]] = []
    labels: list[int] = []
    for class_id, name in enumerate(order):
        for path in classes.get(name, []):
            images.append(_load(path, (width, height), _MODES[channels], folder))
            labels.append(class_id)
    return RawData(
        x={spec.name: np.stack(images).reshape((len(images), height, width, channels))},
        y=np.array(labels, dtype=np.int64),
        device=None,
        x_names={spec.name: "the images"},
        class_names=tuple(order),
    )


def _image_size(spec: TensorSpec, src: str) -> tuple[int, int, int]:
    dims = spec.shape
    if len(dims) != 4 or None in dims[1:] or dims[3] not in _MODES:
        raise DataError(
            f"{src}: a folder of images needs a model whose input takes images "
            f"(None, height, width, 1 or 3); its input {spec.name!r} takes {dims}"
        )
    height, width, channels = (int(d) for d in dims[1:] if d is not None)
    return height, width, channels


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Each class folder's images, in name order; a class folder with none is an error."""
    stray = [p.name for p in folder.iterdir() if p.is_file() and _is_image(p)]
    if stray:
        raise DataError(
            f"{folder.name} holds images outside class folders ({', '.join(sorted(stray)[:3])}); "
            f"put each image in {folder.name}/<class>/"
        )
    classes = {
        d.name: sorted(p for p in d.iterdir() if p.is_file() and _is_image(p))
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".")
    }
    if not classes:
        raise DataError(
            f"{folder.name} has no class folders; expected {folder.name}/<class>/*.png "
            f"(or {', '.join(IMAGE_SUFFIXES[1:])})"
        )
    empty = sorted(name for name, paths in classes.items() if not paths)
    if empty:
        raise DataError(
            f"{folder.name}: class folders {', '.join(empty)} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)})"
        )
    return classes


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _load(path: Path, size: tuple[int, int], mode: str, root: Path) -> npt.NDArray[np.float32]:
    try:
        with Image.open(path) as image:
            pixels = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as exc:
        where = path.relative_to(root.parent)
        raise DataError(f"{where} cannot be read as an image: {exc}") from exc
    return np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
