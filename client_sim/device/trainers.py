"""On-device training runtimes: the bundle's TFLite training artifact, or Keras.

Both train with the bundle's optimizer (plain SGD, or the model's compiled
Adam or SGD with momentum: :mod:`fedge.converters.targets.training_optimizer`)
on the same batches and the bundle's loss, so a device's result does not
depend on which runtime it uses (up to float rounding). A stateful
optimizer's state starts afresh at every :meth:`Trainer.set_weights` (each
round's base checkpoint) and never leaves the runtime: ``get_weights`` is
the model's weights only. Inputs are named (:class:`fedge.task.examples.Examples`), labels are
class ids or float targets, as the bundle's training record says. Batches come
from :func:`epoch_batches`: each epoch a permutation drawn from a seeded
generator, cut into consecutive batches (the last may be short). The TFF
reference engine builds its datasets from the same function.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fedge.converters.targets.training_optimizer import (
    PLAIN_SGD,
    OptimizerSlots,
    TrainingOptimizer,
)
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec

FloatArray = npt.NDArray[np.float32]
# Each input in the dtype its model records (int32 token ids, float32 images):
# train.tflite refuses a tensor of another dtype.
Inputs = Mapping[str, npt.NDArray[Any]]
Labels = npt.NDArray[Any]


def epoch_batches(
    n: int, epochs: int, batch_size: int, seed: int
) -> Iterator[npt.NDArray[np.int64]]:
    """Index batches for ``epochs`` passes over ``n`` examples."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def train_seed(fleet_seed: int, device: int, round_id: int) -> int:
    """The batch-order seed of one device in one round (shared with TFF)."""
    return (fleet_seed * 7919 + device) * 100_003 + round_id


def mean_loss(
    step: Callable[[npt.NDArray[np.int64]], float], n: int, epochs: int, batch_size: int, seed: int
) -> float:
    """Run ``step`` on every batch of :func:`epoch_batches`; the mean loss."""
    losses = [step(batch) for batch in epoch_batches(n, epochs, batch_size, seed)]
    return float(np.mean(losses)) if losses else 0.0


class Trainer(Protocol):
    spec: ModelSpec

    def set_weights(self, weights: Weights) -> None: ...

    def get_weights(self) -> Weights: ...

    def train(
        self,
        x: Inputs,
        y: Labels,
        epochs: int,
        batch_size: int,
        learning_rate: float,
        seed: int,
    ) -> float: ...

    def predict(self, x: Inputs) -> FloatArray: ...


class TfliteTrainer:
    """The bundle's ``train.tflite`` in ``tf.lite.Interpreter``: what a phone runs.

    Weights go in and out under the spec's training keys (``w000``...);
    inputs by the model's input names, labels in the ``label`` input's dtype.
    ``optimizer``: the training record's, which says the step size."""

    def __init__(
        self, path: Path, spec: ModelSpec, optimizer: TrainingOptimizer = PLAIN_SGD
    ) -> None:
        import tensorflow as tf

        self.spec = spec
        self.optimizer = optimizer
        self._interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        self._train = self._interpreter.get_signature_runner("train")
        self._infer = self._interpreter.get_signature_runner("infer")
        self._get = self._interpreter.get_signature_runner("get_weights")
        self._set = self._interpreter.get_signature_runner("set_weights")
        self.input_names = tuple(self._interpreter.get_signature_list()["infer"]["inputs"])
        self._label_dtype = self._train.get_input_details()["label"]["dtype"]

    def set_weights(self, weights: Weights) -> None:
        self._set(**self.spec.to_train_inputs(weights))

    def get_weights(self) -> Weights:
        return self.spec.from_train_outputs(self._get())

    def train(
        self,
        x: Inputs,
        y: Labels,
        epochs: int,
        batch_size: int,
        learning_rate: float,
        seed: int,
    ) -> float:
        lr = np.float32(self.optimizer.step_size(learning_rate))
        labels = np.asarray(y).astype(self._label_dtype)

        def step(batch: npt.NDArray[np.int64]) -> float:
            inputs = {name: x[name][batch] for name in self.input_names}
            out = self._train(**inputs, label=labels[batch], learning_rate=lr)
            return float(out["loss"])

        return mean_loss(step, len(y), epochs, batch_size, seed)

    def predict(self, x: Inputs) -> FloatArray:
        inputs = {name: x[name] for name in self.input_names}
        return np.asarray(self._infer(**inputs)["output"], dtype=np.float32)


class KerasTrainer:
    """The same steps with Keras (for devices without the TFLite artifact).

    ``loss`` is a Keras loss object (the bundle's, see
    :meth:`fedge.converters.targets.training_loss.TrainingLoss.keras`),
    ``optimizer`` the training record's."""

    def __init__(self, model: Any, loss: Any, optimizer: TrainingOptimizer = PLAIN_SGD) -> None:
        import tensorflow as tf

        self._model = tf.keras.models.clone_model(model)
        self.spec = ModelSpec.from_keras(self._model)
        self.input_names = tuple(self._model.input_names)
        self._loss = loss
        self.optimizer = optimizer
        self._slots = OptimizerSlots(optimizer, self._model.trainable_variables)
        self._step = tf.function(self._train_step, reduce_retracing=True)

    def _train_step(self, x: Any, y: Any, learning_rate: Any) -> Any:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self._loss(y, self._model(x, training=True))
            if self._model.losses:
                loss += tf.add_n(self._model.losses)
        variables = self._model.trainable_variables
        self._slots.apply(variables, tape.gradient(loss, variables), learning_rate)
        return loss

    def set_weights(self, weights: Weights) -> None:
        self._model.set_weights(self.spec.values(weights))
        self._slots.reset()

    def get_weights(self) -> Weights:
        return self.spec.named(self._model.get_weights())

    def train(
        self,
        x: Inputs,
        y: Labels,
        epochs: int,
        batch_size: int,
        learning_rate: float,
        seed: int,
    ) -> float:
        import tensorflow as tf

        lr = tf.constant(self.optimizer.step_size(learning_rate), tf.float32)
        labels = np.asarray(y)
        labels = labels.astype(np.int32 if labels.dtype.kind in "iu" else np.float32)

        def step(batch: npt.NDArray[np.int64]) -> float:
            return float(self._step(self._model_input(x, batch), labels[batch], lr))

        return mean_loss(step, len(y), epochs, batch_size, seed)

    def _model_input(self, x: Inputs, batch: npt.NDArray[np.int64] | None = None) -> Any:
        arrays = [x[name] if batch is None else x[name][batch] for name in self.input_names]
        return arrays if len(arrays) > 1 else arrays[0]

    def predict(self, x: Inputs) -> FloatArray:
        return np.asarray(self._model(self._model_input(x), training=False), dtype=np.float32)


class TrainerPool:
    """Runtimes shared by many simulated devices, one device at a time each.

    A runtime holds no device state between uses (weights are set before
    every use), so a fleet of thousands of devices needs only as many
    interpreters as run at once.
    """

    def __init__(self, factory: Callable[[], Trainer], size: int) -> None:
        # Last in, first out: one caller at a time (a fleet scoring every
        # device on the global test split, say) keeps reusing one runtime,
        # so only that one grows its buffers to the large batch, not all.
        self._free: queue.Queue[Trainer] = queue.LifoQueue()
        for _ in range(size):
            self._free.put(factory())

    @contextmanager
    def borrow(self) -> Iterator[Trainer]:
        trainer = self._free.get()
        try:
            yield trainer
        finally:
            self._free.put(trainer)
