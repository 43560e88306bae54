"""Load the user's model, with clear errors for what goes wrong.

Two kinds of source model:

- a Keras 2 model: a ``.keras`` or ``.h5`` file, or a SavedModel directory
  that Keras wrote (it has ``keras_metadata.pb``);
- a plain SavedModel (a ``tf.Module`` with a ``tf.function`` serving
  signature), wrapped as a :class:`~fedge.converters.source.signature_model.SignatureModel`.

Keras rebuilds a model from its saved config, which can name classes the
user wrote. ``--custom-objects MODULE`` imports a module that registers them
with Keras; ``MODULE:NAME`` also hands Keras the class ``NAME``. A ``Lambda``
layer holding a Python ``lambda`` stores that function's bytecode in the
file, and loading it runs code from the file: fedge refuses it (before Keras
reads the file) unless ``--unsafe-deserialization`` is given. Both settings
hold for every load in a conversion through :func:`keras_scope` (the bundle
loads its own copy of the model back as the parity reference).
"""

from __future__ import annotations

import importlib
import json
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedge.converters.errors import ModelLoadError
from fedge.converters.options import ConvertOptions
from fedge.converters.source.signature_model import SignatureModel
from fedge.errors import ConfigError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
KERAS_SAVED_MODEL_MARKER = "keras_metadata.pb"
Spec = tuple[str, tuple[int | None, ...], str]
# Keras's words when a saved class is not known, in its several loaders.
_UNKNOWN_CLASS_HINTS = (
    "Unknown layer",
    "Could not locate class",
    "Cannot deserialize object of type",  # a class saved from a script's __main__
    "of type <class 'str'>",
    "'str' object is not callable",
    "custom_object_scope",
)
_CUSTOM_OBJECTS_HINT = (
    "if the model has custom layers, pass --custom-objects MODULE (a module that registers "
    "them with Keras) or --custom-objects MODULE:NAME (the class itself)"
)


def load_model(path: Path, options: ConvertOptions | None = None) -> Any:
    """The source model: a ``tf.keras.Model``, or a :class:`SignatureModel`
    for a SavedModel that Keras did not write."""
    saved_model = path.is_dir() and (path / "saved_model.pb").is_file()
    if saved_model and not (path / KERAS_SAVED_MODEL_MARKER).is_file():
        return SignatureModel.load(path)
    return load_keras_model(path, options)


def load_keras_model(path: Path, options: ConvertOptions | None = None) -> Any:
    """A ``tf.keras.Model`` from a .keras / .h5 file or a Keras SavedModel directory."""
    options = options or ConvertOptions()
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
    if not options.unsafe_deserialization:
        _refuse_python_lambdas(path)
    import tensorflow as tf

    with keras_scope(options):
        try:
            model = tf.keras.models.load_model(
                path, compile=False, safe_mode=not options.unsafe_deserialization
            )
        except Exception as exc:  # Keras raises many types for corrupt files.
            message = f"could not load {path}: {type(exc).__name__}: {exc}"
            if any(hint in str(exc) for hint in _UNKNOWN_CLASS_HINTS):
                message += f"; {_CUSTOM_OBJECTS_HINT}"
            raise ModelLoadError(message) from exc
    if not isinstance(model, tf.keras.Model):
        raise ModelLoadError(
            f"{path} is a SavedModel but not a Keras model; save it with model.save()"
        )
    return model


@contextmanager
def keras_scope(options: ConvertOptions) -> Iterator[None]:
    """Keras deserialisation as the options say: the custom objects known,
    Lambda bytecode allowed only with ``unsafe_deserialization``."""
    import tensorflow as tf

    # Keras 2.14 has no public scope for safe mode (only a global switch,
    # tf.keras.__internal__.enable_unsafe_deserialization); its loaders use this one.
    from keras.src.saving.serialization_lib import SafeModeScope

    objects = resolve_custom_objects(options.custom_objects)
    with (
        tf.keras.utils.custom_object_scope(objects),
        SafeModeScope(safe_mode=not options.unsafe_deserialization),
    ):
        yield


def resolve_custom_objects(specs: Sequence[str]) -> dict[str, Any]:
    """Import each ``MODULE`` (it may register classes with Keras as it
    loads); for ``MODULE:NAME``, the object ``NAME`` under its name and
    under the name Keras saves it by."""
    import tensorflow as tf

    objects: dict[str, Any] = {}
    for spec in specs:
        module_name, colon, name = spec.strip().partition(":")
        if not module_name or (colon and not name):
            raise ConfigError(f"--custom-objects takes MODULE or MODULE:NAME, got {spec!r}")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # the user's module may raise anything as it loads
            raise ConfigError(
                f"--custom-objects: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not name:
            continue
        found = getattr(module, name, None)
        if found is None:
            raise ConfigError(f"--custom-objects: module {module_name!r} has no {name!r}")
        objects[name] = found
        objects[tf.keras.utils.get_registered_name(found)] = found
    return objects


def python_lambda_layers(path: Path) -> list[str]:
    """Names of the ``Lambda`` layers whose function is stored as Python
    bytecode in a .keras or .h5 file, read from its config (nothing runs)."""
    config = _saved_config(path)
    return [] if config is None else sorted(set(_lambda_names(config)))


def _refuse_python_lambdas(path: Path) -> None:
    names = python_lambda_layers(path) if path.is_file() else []
    if names:
        layer = names[0] if len(names) == 1 else ", ".join(names)
        raise ModelLoadError(
            f"{path}: layer {layer!r} is a Lambda layer: its Python code is stored in the "
            "file and would run as the model loads; if you trust the file, convert it with "
            "--unsafe-deserialization"
        )


def _saved_config(path: Path) -> Any:
    """The model config a Keras file holds (JSON), or None if it has none."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py  # type: ignore[import-untyped]

        with h5py.File(path, "r") as h5file:
            raw = h5file.attrs.get("model_config")
        if raw is None:
            return None
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # not readable as such: Keras's loader says why


def _lambda_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        config = node.get("config")
        if node.get("class_name") == "Lambda" and isinstance(config, dict):
            function = config.get("function")
            stored = isinstance(function, dict) and function.get("class_name") == "__lambda__"
            if stored or config.get("function_type") == "lambda":
                yield str(config.get("name", "?"))
        for value in node.values():
            yield from _lambda_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _lambda_names(value)


def source_kind(model: Any) -> str:
    """``saved_model`` for a plain SavedModel, else ``keras``."""
    return "saved_model" if isinstance(model, SignatureModel) else "keras"


def input_specs(model: Any) -> list[Spec]:
    """(name, shape with batch as None, dtype) of each model input, in order."""
    if isinstance(model, SignatureModel):
        return list(model.input_specs)
    return [
        (
            t.name.split(":")[0],
            tuple(None if d is None else int(d) for d in t.shape),
            t.dtype.name,
        )
        for t in model.inputs
    ]


def output_specs(model: Any) -> list[Spec]:
    """(name, shape, dtype) of each output, in the order Keras returns them.

    A functional model built with ``outputs={"a": ..., "b": ...}`` returns a
    dict; its outputs are named by the keys, in Keras's (sorted) order."""
    if isinstance(model, SignatureModel):
        return list(model.output_specs)
    names = output_names(model)
    return [
        (name, tuple(None if d is None else int(d) for d in t.shape), t.dtype.name)
        for name, t in zip(names, model.outputs, strict=True)
    ]


def output_names(model: Any) -> list[str]:
    """The outputs' names: the dict's keys for a dict-output model (in the
    order of ``model.outputs``), else Keras's output names."""
    try:
        structure = model.output
    except AttributeError:  # a subclassed model that was never called
        structure = None
    if isinstance(structure, dict):
        return sorted(structure)  # tf.nest's order, which model.outputs follows
    names = list(getattr(model, "output_names", []) or [])
    return [
        names[i] if i < len(names) else t.name.split(":")[0].split("/")[0]
        for i, t in enumerate(model.outputs)
    ]
