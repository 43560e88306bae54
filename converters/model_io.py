"""Load the user's Keras 2 model, with clear errors for what goes wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedge.converters.errors import ModelLoadError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_keras_model(path: Path) -> Any:
    """A ``tf.keras.Model`` from a .keras / .h5 file or a SavedModel directory."""
    if not path.exists():
        raise ModelLoadError(f"model not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{path} is a directory but not a SavedModel (no saved_model.pb)")
    elif path.suffix not in KERAS_SUFFIXES:
        raise ModelLoadError(
            f"{path}: expected a .keras or .h5 file or a SavedModel directory, got {path.suffix!r}"
        )
    elif path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty")
    import tensorflow as tf

    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for corrupt files.
        raise ModelLoadError(f"could not load {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, tf.keras.Model):
        raise ModelLoadError(
            f"{path} is a SavedModel but not a Keras model; save it with model.save()"
        )
    return model


def input_specs(model: Any) -> list[tuple[str, tuple[int | None, ...], str]]:
    """(name, shape with batch as None, dtype) of each model input, in order."""
    return [
        (
            t.name.split(":")[0],
            tuple(None if d is None else int(d) for d in t.shape),
            t.dtype.name,
        )
        for t in model.inputs
    ]


def output_specs(model: Any) -> list[tuple[str, tuple[int | None, ...], str]]:
    names = list(getattr(model, "output_names", []) or [])
    specs = []
    for i, t in enumerate(model.outputs):
        name = names[i] if i < len(names) else t.name.split(":")[0].split("/")[0]
        shape = tuple(None if d is None else int(d) for d in t.shape)
        specs.append((name, shape, t.dtype.name))
    return specs
