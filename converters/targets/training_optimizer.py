"""The optimizer of the TFLite training artifact: the one the model was compiled with.

A model compiled with Adam, or with SGD and momentum, learns with that
optimizer's state; plain SGD steps at a rate tuned for another scale can
leave it where it is (a regressor compiled with Adam kept its error at
every SGD rate tried). So ``train.tflite`` carries the compiled optimizer:

* ``sgd``: plain SGD (models compiled with SGD without momentum, not
  compiled, or with an optimizer the artifact cannot take: said so in
  ``optimizer_source``);
* ``sgd`` with ``momentum`` (and ``nesterov``): Keras's SGD, a velocity slot;
* ``adam``: Keras's Adam (``beta_1``, ``beta_2``, ``epsilon``; no amsgrad),
  two moment slots and a step count.

The state lives on the device for one round: ``set_weights`` (the round's
base checkpoint) zeroes it, as a fresh ``model.compile`` would. A round is
a fresh start from the server's model, so moments of the device's last
round, taken from another model, would point the wrong way; and a runtime
shared by many simulated devices carries nothing from one to the next. The
state never leaves the device: ``get_weights`` returns the model's weights
only.

A stateful optimizer steps at its compiled learning rate, not the round's:
the task's learning rate is an SGD rate, and Adam's rate is a step length
per weight, of another scale (:meth:`TrainingOptimizer.step_size`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SGD = "sgd"
ADAM = "adam"
PLAIN = "plain SGD"
_SETTINGS = ("learning_rate", "momentum", "nesterov", "beta_1", "beta_2", "epsilon")


@dataclass(frozen=True)
class TrainingOptimizer:
    """What ``train`` steps with; the defaults are plain SGD."""

    name: str = SGD
    learning_rate: float | None = None  # the compiled rate (None: plain SGD's is the task's)
    momentum: float = 0.0
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    source: str = PLAIN

    @property
    def stateful(self) -> bool:
        return self.name == ADAM or self.momentum > 0

    def step_size(self, task_rate: float) -> float:
        """The rate a device steps at: the compiled one for a stateful
        optimizer, else the task's (plain SGD, as before)."""
        if self.stateful and self.learning_rate is not None:
            return self.learning_rate
        return task_rate

    def record(self) -> dict[str, Any]:
        """The training record's optimizer fields in the manifest."""
        settings = {k: v for k, v in asdict(self).items() if k in _SETTINGS}
        return {
            "optimizer": self.name,
            "optimizer_settings": settings,
            "optimizer_source": self.source,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TrainingOptimizer:
        """The record's optimizer; a bundle written before optimizers were
        carried says ``"optimizer": "sgd"`` alone: plain SGD."""
        settings = record.get("optimizer_settings") or {}
        known = {k: settings[k] for k in _SETTINGS if k in settings}
        return cls(
            name=str(record.get("optimizer", SGD)),
            source=str(record.get("optimizer_source", PLAIN)),
            **known,
        )

    def describe(self) -> str:
        """A phrase for the card, or "" for plain SGD."""
        if not self.stateful:
            return ""
        if self.name == ADAM:
            detail = f"beta_1 {self.beta_1:g}, beta_2 {self.beta_2:g}, epsilon {self.epsilon:g}"
        else:
            detail = f"momentum {self.momentum:g}" + (", nesterov" if self.nesterov else "")
        return (
            f"steps with the compiled {self.name} (learning rate {self.learning_rate:g}, {detail})"
        )

    def keras(self, rate: float) -> Any:
        """The same optimizer in Keras, fresh, at ``rate``."""
        import tensorflow as tf

        if self.name == ADAM:
            return tf.keras.optimizers.Adam(rate, self.beta_1, self.beta_2, self.epsilon)
        return tf.keras.optimizers.SGD(rate, momentum=self.momentum, nesterov=self.nesterov)


def optimizer_from_config(compiled: Mapping[str, Any] | None) -> TrainingOptimizer:
    """The optimizer of a compile config (``{"optimizer": serialized}``);
    plain SGD, with the reason, for one the artifact cannot take."""
    optimizer = (compiled or {}).get("optimizer")
    if not isinstance(optimizer, dict):
        return TrainingOptimizer()
    class_name = str(optimizer.get("class_name", "")).split(">")[-1]
    config = optimizer.get("config") or {}
    rate = config.get("learning_rate", config.get("lr"))
    if class_name not in ("SGD", "Adam"):
        return TrainingOptimizer(source=f"compiled {class_name}: not carried, {PLAIN}")
    unsupported = _unsupported(config)
    if unsupported or not isinstance(rate, int | float):
        why = unsupported or "a learning rate schedule"
        return TrainingOptimizer(source=f"compiled {class_name} with {why}: not carried, {PLAIN}")
    rate = float(f"{rate:.7g}")  # float32's digits, as saved
    if class_name == "SGD":
        momentum = float(config.get("momentum") or 0.0)
        if momentum == 0:
            return TrainingOptimizer(source="compiled SGD")
        nesterov = bool(config.get("nesterov", False))
        return TrainingOptimizer(SGD, rate, momentum, nesterov, source="compiled SGD")
    return TrainingOptimizer(
        ADAM,
        rate,
        beta_1=float(config.get("beta_1", 0.9)),
        beta_2=float(config.get("beta_2", 0.999)),
        epsilon=float(config.get("epsilon", 1e-7)),
        source="compiled Adam",
    )


def _unsupported(config: Mapping[str, Any]) -> str:
    """The first compiled setting the artifact's step does not take, or ""."""
    for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "decay"):
        if config.get(key):
            return f"{key} {config[key]}"
    if config.get("amsgrad"):
        return "amsgrad"
    if config.get("use_ema"):
        return "use_ema"
    return ""


class OptimizerSlots:
    """The optimizer's state as TF variables beside the model's, and its
    step, written as Keras 2.14 writes it (``keras/optimizers/{sgd,adam}.py``)
    so that the artifact's steps are Keras's."""

    def __init__(self, optimizer: TrainingOptimizer, variables: Sequence[Any]) -> None:
        import tensorflow as tf

        self.optimizer = optimizer
        self._slots: list[list[Any]] = []
        count = 2 if optimizer.name == ADAM else 1 if optimizer.momentum > 0 else 0
        for variable in variables:
            self._slots.append(
                [tf.Variable(tf.zeros(variable.shape, variable.dtype)) for _ in range(count)]
            )
        self._steps = tf.Variable(0.0, dtype=tf.float32)

    @property
    def state(self) -> list[Any]:
        """Every state variable (for a ``tf.Module`` to track and save)."""
        return [slot for slots in self._slots for slot in slots] + [self._steps]

    def reset(self) -> None:
        """Zero the state (a fresh optimizer)."""
        import tensorflow as tf

        for slots in self._slots:
            for slot in slots:
                slot.assign(tf.zeros_like(slot))
        self._steps.assign(0.0)

    def apply(self, variables: Sequence[Any], grads: Sequence[Any], rate: Any) -> None:
        self._steps.assign_add(1.0)
        for variable, grad, slots in zip(variables, grads, self._slots, strict=True):
            if self.optimizer.name == ADAM:
                self._adam(variable, grad, slots, rate)
            elif slots:
                (velocity,) = slots
                velocity.assign(-grad * rate + velocity * self.optimizer.momentum)
                if self.optimizer.nesterov:
                    variable.assign_add(-grad * rate + velocity * self.optimizer.momentum)
                else:
                    variable.assign_add(velocity)
            else:
                variable.assign_sub(rate * grad)

    def _adam(self, variable: Any, grad: Any, slots: list[Any], rate: Any) -> None:
        import tensorflow as tf

        opt = self.optimizer
        m, v = slots
        beta_1_power = tf.pow(tf.constant(opt.beta_1, tf.float32), self._steps)
        beta_2_power = tf.pow(tf.constant(opt.beta_2, tf.float32), self._steps)
        alpha = rate * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m.assign_add((grad - m) * (1 - opt.beta_1))
        v.assign_add((tf.square(grad) - v) * (1 - opt.beta_2))
        variable.assign_sub((m * alpha) / (tf.sqrt(v) + opt.epsilon))


PLAIN_SGD = TrainingOptimizer()
