"""The loss (default learning rate, and optimizer) of the TFLite training artifact.

In order of precedence:

1. ``--loss`` (with ``--from-logits`` for a cross-entropy on logits);
2. the loss the model was compiled with. fedge loads models without
   compiling them (so that a custom metric does not stop a conversion), so
   the compile settings are read from the saved file: ``compile_config`` in
   a ``.keras`` archive, ``training_config`` in an ``.h5`` file or in a
   SavedModel's ``keras_metadata.pb``; a compiled model object is read
   directly;
3. a guess from the last layer (softmax: sparse categorical cross-entropy;
   else mean squared error), recorded as a guess.

Only an SGD optimizer's learning rate becomes the default (SGD) rate;
another optimizer's rate is not an SGD rate. The compiled optimizer itself
(Adam, SGD with momentum) is read from the same config and carried by the
artifact: :mod:`fedge.converters.targets.training_optimizer`.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedge.converters.errors import ConversionError
from fedge.converters.options import LOSS_ALIASES, LOSSES, ConvertOptions
from fedge.converters.targets.training_optimizer import (
    PLAIN_SGD,
    TrainingOptimizer,
    optimizer_from_config,
)

CROSS_ENTROPIES = tuple(name for name in LOSSES if name.endswith("crossentropy"))
_CLASS_NAMES = {
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "BinaryCrossentropy": "binary_crossentropy",
    "MeanSquaredError": "mean_squared_error",
    "MeanAbsoluteError": "mean_absolute_error",
}
_FUNCTION_NAMES = {
    **{name: name for name in LOSSES},
    **LOSS_ALIASES,
    "MSE": "mean_squared_error",
    "MAE": "mean_absolute_error",
}
COMPILED = "compiled"
OPTION = "--loss"


class UnsupportedLossError(ConversionError):
    """The model's compiled loss is not one the training artifact can take."""


@dataclass(frozen=True)
class TrainingLoss:
    """What ``train`` minimises, and where that choice came from, and the
    optimizer it steps with.

    ``source``: ``compiled``, ``--loss``, or ``guessed: ...`` with the reason.
    """

    name: str
    from_logits: bool = False
    source: str = COMPILED
    learning_rate: float | None = None
    learning_rate_source: str = ""
    optimizer: TrainingOptimizer = PLAIN_SGD

    def keras(self) -> Any:
        """The Keras loss object (mean over the batch)."""
        import tensorflow as tf

        losses = tf.keras.losses
        if self.name == "sparse_categorical_crossentropy":
            return losses.SparseCategoricalCrossentropy(from_logits=self.from_logits)
        if self.name == "categorical_crossentropy":
            return losses.CategoricalCrossentropy(from_logits=self.from_logits)
        if self.name == "binary_crossentropy":
            return losses.BinaryCrossentropy(from_logits=self.from_logits)
        if self.name == "mean_absolute_error":
            return losses.MeanAbsoluteError()
        return losses.MeanSquaredError()

    def label_shape(self, output_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Sparse labels are class ids (the output without its class axis);
        the rest are targets shaped like the output."""
        if self.name == "sparse_categorical_crossentropy":
            return (None, *output_shape[1:-1])
        return (None, *output_shape[1:])

    @property
    def label_dtype(self) -> str:
        return "int32" if self.name == "sparse_categorical_crossentropy" else "float32"

    def record(self) -> dict[str, Any]:
        """The training record's loss fields in the manifest."""
        return {
            "loss": self.name,
            "from_logits": self.from_logits,
            "loss_source": self.source,
            "learning_rate": self.learning_rate,
            "learning_rate_source": self.learning_rate_source,
            **self.optimizer.record(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainingLoss:
        return cls(
            name=str(record["loss"]),
            from_logits=bool(record.get("from_logits", False)),
            source=str(record.get("loss_source", COMPILED)),
            learning_rate=record.get("learning_rate"),
            learning_rate_source=str(record.get("learning_rate_source", "")),
            optimizer=TrainingOptimizer.from_record(record),
        )


def describe(record: dict[str, Any]) -> str:
    """One phrase for the card and the summary: the loss and where it came from."""
    logits = " (from logits)" if record.get("from_logits") else ""
    source = str(record.get("loss_source", COMPILED))
    origin = {COMPILED: "as compiled", OPTION: "given by --loss"}.get(
        source, f"{source} (give --loss)"
    )
    text = f"loss {record['loss']}{logits}, {origin}"
    rate = record.get("learning_rate")
    if rate is not None:
        text += f"; default learning rate {rate:g} ({record.get('learning_rate_source')})"
    optimizer = TrainingOptimizer.from_record(record).describe()
    return f"{text}; {optimizer}" if optimizer else text


def resolve_loss(model: Any, model_path: Path | None, options: ConvertOptions) -> TrainingLoss:
    """The training loss for a model, by the precedence in the module docstring."""
    compiled = read_compile_config(model_path) if model_path is not None else None
    if compiled is None:
        compiled = _object_compile_config(model)
    rate, rate_source = sgd_learning_rate(compiled)
    optimizer = optimizer_from_config(compiled)
    override = options.training_loss()
    if override is not None:
        return TrainingLoss(override, options.from_logits, OPTION, rate, rate_source, optimizer)
    if compiled is None or compiled.get("loss") is None:
        return guess(model)
    name, from_logits = loss_from_config(compiled["loss"])
    return TrainingLoss(name, from_logits, COMPILED, rate, rate_source, optimizer)


def loss_of(model: Any) -> TrainingLoss:
    """The loss of a model object alone: as compiled, or guessed."""
    compiled = _object_compile_config(model)
    if compiled is None or compiled.get("loss") is None:
        return guess(model)
    name, from_logits = loss_from_config(compiled["loss"])
    rate, rate_source = sgd_learning_rate(compiled)
    return TrainingLoss(
        name, from_logits, COMPILED, rate, rate_source, optimizer_from_config(compiled)
    )


def guess(model: Any) -> TrainingLoss:
    """What fedge did before it read compiled losses, now said to be a guess."""
    layers = getattr(model, "layers", None) or [None]
    activation = getattr(getattr(layers[-1], "activation", None), "__name__", "")
    shape = model.outputs[0].shape
    if activation == "softmax" and len(shape) == 2 and int(shape[-1]) > 1:
        return TrainingLoss(
            "sparse_categorical_crossentropy",
            source="guessed: not compiled; the last layer is a softmax",
        )
    return TrainingLoss(
        "mean_squared_error", source="guessed: not compiled; the last layer is not a softmax"
    )


def read_compile_config(path: Path) -> dict[str, Any] | None:
    """``{"loss": ..., "optimizer": ...}`` as saved with the model, or None if
    it was saved uncompiled (or the file does not say)."""
    try:
        if path.is_dir():
            return _saved_model_config(path)
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            compiled = config.get("compile_config")
            return dict(compiled) if isinstance(compiled, dict) else None
        if path.suffix in (".h5", ".hdf5"):
            import h5py  # type: ignore[import-untyped]

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("training_config")
            return _training_config(raw)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return None


def _saved_model_config(path: Path) -> dict[str, Any] | None:
    metadata = path / "keras_metadata.pb"
    if not metadata.is_file():
        return None
    from keras.protobuf import saved_metadata_pb2

    saved = saved_metadata_pb2.SavedMetadata()
    saved.ParseFromString(metadata.read_bytes())
    for node in saved.nodes:
        if node.node_path == "root":
            return _training_config(json.loads(node.metadata).get("training_config"))
    return None


def _training_config(raw: Any) -> dict[str, Any] | None:
    """The h5 / SavedModel ``training_config`` in ``compile_config``'s keys."""
    if raw is None:
        return None
    config = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(config, dict):
        return None
    return {"loss": config.get("loss"), "optimizer": config.get("optimizer_config")}


def _object_compile_config(model: Any) -> dict[str, Any] | None:
    if getattr(model, "compiled_loss", None) is None or getattr(model, "loss", None) is None:
        return None
    import tensorflow as tf

    loss = model.loss
    if not isinstance(loss, str | list | dict):
        loss = tf.keras.losses.serialize(loss)
    optimizer = getattr(model, "optimizer", None)
    return {
        "loss": loss,
        "optimizer": None if optimizer is None else tf.keras.optimizers.serialize(optimizer),
    }


def loss_from_config(config: Any) -> tuple[str, bool]:
    """(name, from_logits) of a saved loss, or UnsupportedLossError saying why."""
    if isinstance(config, str):
        if config in _FUNCTION_NAMES:
            return _FUNCTION_NAMES[config], False
        raise UnsupportedLossError(_unsupported(repr(config)))
    if isinstance(config, list) or (isinstance(config, dict) and "class_name" not in config):
        raise UnsupportedLossError(
            "the model is compiled with a loss per output; train.tflite takes one loss "
            "(give --loss)"
        )
    if not isinstance(config, dict):
        raise UnsupportedLossError(_unsupported(repr(config)))
    class_name = str(config.get("class_name", "")).split(">")[-1]
    settings = config.get("config") or {}
    if class_name in ("function", "LossFunctionWrapper"):
        fn = settings.get("fn") if isinstance(settings, dict) else settings
        return loss_from_config(fn)
    if class_name not in _CLASS_NAMES:
        raise UnsupportedLossError(_unsupported(class_name))
    if settings.get("label_smoothing"):
        raise UnsupportedLossError(
            f"the compiled {class_name} smooths labels ({settings['label_smoothing']}); "
            "train.tflite does not (give --loss)"
        )
    if settings.get("reduction") not in (None, "auto", "sum_over_batch_size"):
        raise UnsupportedLossError(
            f"the compiled {class_name} reduces by {settings['reduction']!r}; "
            "train.tflite takes the batch mean (give --loss)"
        )
    return _CLASS_NAMES[class_name], bool(settings.get("from_logits", False))


def _unsupported(name: str) -> str:
    return (
        f"the model is compiled with loss {name}, which train.tflite does not take "
        f"(it takes {', '.join(LOSSES)}); give --loss"
    )


def sgd_learning_rate(compiled: dict[str, Any] | None) -> tuple[float | None, str]:
    """An SGD optimizer's learning rate, rounded to float32's 7 digits."""
    optimizer = (compiled or {}).get("optimizer")
    if not isinstance(optimizer, dict):
        return None, ""
    class_name = str(optimizer.get("class_name", "")).split(">")[-1]
    rate = (optimizer.get("config") or {}).get("learning_rate")
    if class_name != "SGD":
        return None, f"compiled {class_name}: not an SGD rate"
    if not isinstance(rate, int | float):
        return None, "compiled SGD with a schedule"
    return float(f"{rate:.7g}"), "compiled SGD"
