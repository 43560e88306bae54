"""A Keras callback that shows training as a rich progress bar.

Imports TensorFlow, so import this module only where training happens.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichEpochProgress(tf.keras.callbacks.Callback):  # type: ignore[misc]
    """One bar over the epochs; the latest loss and accuracy beside it."""

    def __init__(self, epochs: int, description: str = "training") -> None:
        super().__init__()
        self._epochs = epochs
        self._description = description
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._task = self._progress.add_task(description, total=epochs, metrics="")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._progress.start()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        self._progress.update(self._task, completed=epoch + 1, metrics=shown)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._progress.stop()
