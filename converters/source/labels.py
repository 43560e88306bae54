"""Class labels (``--labels``): checked once against the model, for every target.

A model takes labels when it has one output of shape ``(batch, classes)``
and there is one distinct, non-empty label per class. Probabilities or
logits: the labels name the columns either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedge.errors import ConfigError

Spec = tuple[str, tuple[int | None, ...], str]


def check_labels(outputs: Sequence[Spec], labels: Sequence[str] | None) -> None:
    """Raise :class:`ConfigError` (a bad argument) unless ``labels`` fit ``outputs``."""
    if labels is None:
        return
    for index, label in enumerate(labels, start=1):
        if not label:
            raise ConfigError(f"--labels: label {index} is empty")
    repeated = next((label for i, label in enumerate(labels) if label in labels[:i]), None)
    if repeated is not None:
        raise ConfigError(f"--labels: {repeated!r} is given twice")
    if len(outputs) != 1 or len(outputs[0][1]) != 2:
        shapes = ", ".join(f"{name!r} {shape}" for name, shape, _ in outputs)
        raise ConfigError(
            f"--labels needs a model with one output of shape (batch, classes); "
            f"this one has {shapes}"
        )
    name, shape, _ = outputs[0]
    classes = shape[1]
    if classes != len(labels):
        raise ConfigError(
            f"--labels: {len(labels)} labels for {classes} classes "
            f"(output {name!r} has shape {shape}); give {classes}"
        )
