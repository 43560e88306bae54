"""Central training of the reference model on the reference task.

This is the "one trained Keras model" the rest of fedge starts from: the
team's model before it goes to devices.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fedge.errors import ConfigError
from fedge.reference.data import load_task, public_split
from fedge.reference.model import build_reference_model

MODEL_SUFFIXES = (".keras", ".h5")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    # Train on this stratified share of the training split only (the team's
    # public data; the devices of ``fedge simulate`` hold the rest): 0 for all.
    public_fraction: float = 0.0

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.public_fraction < 1.0:
            raise ConfigError(f"public_fraction must be in [0, 1), got {self.public_fraction}")


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    test_accuracy: float
    test_loss: float
    train_examples: int
    test_examples: int
    seconds: float


def train_reference_model(
    out: Path, config: TrainConfig = TrainConfig(), progress: bool = True
) -> TrainResult:
    """Train the digits CNN, save it to ``out`` (.keras or .h5) atomically."""
    config.validate()
    if out.suffix not in MODEL_SUFFIXES:
        raise ConfigError(f"--out must end in {' or '.join(MODEL_SUFFIXES)}, got {out}")
    import tensorflow as tf

    from fedge.reference.keras_progress import RichEpochProgress

    started = time.perf_counter()
    # Seeds fix the split, the initial weights and the batch order. Op
    # determinism is not switched on: it is process-wide and would make
    # every later unseeded random op in the process fail.
    tf.keras.utils.set_random_seed(config.seed)
    task = load_task(seed=config.seed)
    train = (
        public_split(task.train, config.public_fraction, config.seed)[0]
        if config.public_fraction > 0
        else task.train
    )
    model = build_reference_model()
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [RichEpochProgress(config.epochs)] if progress else []
    model.fit(
        train.x,
        train.y,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    loss, accuracy = model.evaluate(task.test.x, task.test.y, verbose=0)
    _save_atomically(model, out)
    return TrainResult(
        model_path=out,
        test_accuracy=float(accuracy),
        test_loss=float(loss),
        train_examples=len(train),
        test_examples=len(task.test),
        seconds=time.perf_counter() - started,
    )


def _save_atomically(model: object, out: Path) -> None:
    """Save beside the target, then rename: no half-written model on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        model.save(tmp)  # type: ignore[attr-defined]
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
