"""One simulated device: private data, a runtime, a profile, a client.

Each round it takes part in: fetch the task, load the base checkpoint into
its runtime, train locally, upload the delta (never data). It also keeps a
personalised model for its own predictions: after training it has a model
fine-tuned from the newest global one, and it adopts that (or the new
global model) only if it beats its current model on its own held-out data
(on-device acceptance).

Weights named as local state (``--local-state``; FedBN's BatchNorm
statistics) are the device's own: it trains from its own values of them,
not the checkpoint's, keeps what training made of them, and evaluates
every global model with them.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.client_sim.device.profiles import DeviceProfile
from fedge.client_sim.device.secure_round import SecureRoundError, run_secure_round
from fedge.client_sim.device.trainers import Trainer, TrainerPool, train_seed
from fedge.client_sim.device.transport import TransportError
from fedge.task.examples import DeviceExamples, Examples, Labels
from fedge.task.objective import Objective
from fedge.wire.update_codec import Update, UpdateMeta, Weights, encode_update


@dataclass
class RoundOutcome:
    device: int
    # contributed | offline | conditions | not_selected | next_round | dropout | rejected | error,
    # or deferred: not asked (the fleet's pass ended when the round was full)
    status: str
    detail: str = ""
    round_id: int | None = None
    receipt: dict[str, Any] | None = None
    num_examples: int = 0
    loss: float = 0.0
    # A refusal's advice: ask again once this round opens (the server's pace
    # steering), or, within the round, after this many seconds.
    retry_round: int | None = None
    retry_after_s: float | None = None


@dataclass
class DeviceStats:
    contributed: int = 0
    dropouts: int = 0
    crashes: int = 0
    rejects: dict[str, int] = field(default_factory=dict)


def evaluate(
    trainer: Trainer, weights: Weights, data: Examples, objective: Objective
) -> dict[str, float]:
    """The loss and headline metric of ``weights`` on ``data`` (NaN for none)."""
    if len(data) == 0:
        return objective.evaluate(np.zeros((0,)), data.y)
    trainer.set_weights(weights)
    return objective.evaluate(trainer.predict(data.x), data.y)


def poison_labels(labels: Labels, objective: Objective, num_classes: int) -> Labels:
    """Wrong labels of the same shape and dtype, for the ``poison`` fault.

    Class ids become the next class (``(y + 1) % num_classes``), one-hot
    targets likewise (rolled by one along the class axis), binary targets
    the other class (``1 - y``), regression targets their negation."""
    if objective.takes_class_ids:
        return (labels + 1) % num_classes
    if objective.loss == "categorical_crossentropy":
        return np.roll(labels, 1, axis=-1)
    if objective.loss == "binary_crossentropy":
        return 1 - labels
    return -labels


class SimDevice:
    def __init__(
        self,
        index: int,
        data: DeviceExamples,
        trainers: TrainerPool,
        client: FedgeClient,
        profile: DeviceProfile,
        seed: int,
        objective: Objective,
        local_state: frozenset[str] = frozenset(),
    ) -> None:
        self.index = index
        self.data = data
        self.objective = objective
        self.trainers = trainers
        self.client = client
        self.profile = profile
        self.stats = DeviceStats()
        self.personal: Weights | None = None
        # The personalised model's headline metric on the device's held-out data.
        self.personal_score = float("nan")
        self._rng = random.Random(seed * 1_000_003 + index)
        self._seed = seed
        self._last_upload: bytes | None = None
        self._old_checkpoint: str | None = None
        self._poisoned: Labels | None = None
        # The trained model's headline metric on the held-out data, sent with the update.
        self._trained_scores: dict[str, float] = {}
        self._local_names = local_state
        # This device's own values of the local state (none before it trains).
        self._local: Weights = {}

    def step(self, round_id: int | None = None) -> RoundOutcome:
        """Try to take part in the open round once.

        ``round_id``: the round the fleet is running. A task for a later one
        (the round closed while this device waited its turn) is left for the
        next pass: the device stays selected and the server gives it the
        same task then, so each of the fleet's rounds is one server round."""
        profile, rng = self.profile, self._rng
        if rng.random() >= profile.availability or not profile.in_window(time.time()):
            return RoundOutcome(self.index, "offline")
        conditions = (
            rng.random() < profile.p_idle,
            rng.random() < profile.p_charging,
            rng.random() < profile.p_unmetered,
        )
        try:
            return self._take_task(self.client.task(*conditions), round_id)
        except ProtocolError as exc:
            self.stats.rejects[exc.code] = self.stats.rejects.get(exc.code, 0) + 1
            return RoundOutcome(self.index, "rejected", exc.code)
        except TransportError as exc:
            return RoundOutcome(self.index, "error", str(exc))

    def _take_task(self, answer: dict[str, Any], round_id: int | None) -> RoundOutcome:
        task = answer["task"]
        if task is None:
            return RoundOutcome(
                self.index,
                answer.get("reason", "not_selected"),
                retry_round=answer.get("retry_round"),
                retry_after_s=answer.get("retry_after_s"),
            )
        if round_id is not None and task["round_id"] != round_id:
            return RoundOutcome(self.index, "next_round", round_id=task["round_id"])
        if self._rng.random() < self.profile.dropout:
            self.stats.dropouts += 1
            return RoundOutcome(self.index, "dropout", round_id=task["round_id"])
        return self._train_and_upload(task)

    def _train_and_upload(self, task: dict[str, Any]) -> RoundOutcome:
        round_id = task["round_id"]
        base_id = task["base_checkpoint"]
        if self.profile.fault == "stale_base" and self._old_checkpoint is not None:
            base_id = self._old_checkpoint
        base = self.with_local_state(self.client.checkpoint(base_id).weights)
        self._old_checkpoint = self._old_checkpoint or task["base_checkpoint"]
        train = self.data.train
        with self.trainers.borrow() as trainer:
            trainer.set_weights(base)
            loss = trainer.train(
                train.x,
                self._train_labels(trainer),
                task["local_epochs"],
                task["batch_size"],
                task["learning_rate"],
                seed=self.train_seed(round_id),
            )
            trained = trainer.get_weights()
            self._local = {name: trained[name] for name in self._local_names}
            self._consider_personal(trainer, trained)
        time.sleep(self.profile.compute_s_per_example * len(train) * task["local_epochs"])
        delta = {name: trained[name] - base[name] for name in task["weights"]}
        if "secure_aggregation" in task:  # the server gets only the round's sum
            return self._take_part_securely(task, delta, len(train), loss)
        body = self._with_fault(round_id, base_id, delta, len(train), loss)
        time.sleep(self.profile.transfer_s(len(body)))
        if self._rng.random() < self.profile.crash_mid_upload:
            # The upload reaches the server but the device dies before the
            # receipt arrives; after a restart it sends the same bytes again.
            with contextlib.suppress(ProtocolError):
                self.client.upload(round_id, body)
            self.stats.crashes += 1
        receipt = self.client.upload(round_id, body)
        if self.profile.fault == "replay":
            # Only a replaying device needs its last upload: a fleet's other
            # devices would each hold a model's worth of bytes for nothing.
            self._last_upload = body
        self.stats.contributed += 1
        return RoundOutcome(
            self.index,
            "contributed",
            round_id=round_id,
            receipt=receipt,
            num_examples=len(train),
            loss=loss,
        )

    def _take_part_securely(
        self, task: dict[str, Any], delta: Weights, examples: int, loss: float
    ) -> RoundOutcome:
        round_id = task["round_id"]
        try:
            run_secure_round(self.client, task, delta, timeout_s=task["deadline_at"] - time.time())
        except SecureRoundError:
            self.stats.dropouts += 1
            return RoundOutcome(self.index, "dropout", round_id=round_id)
        self.stats.contributed += 1
        return RoundOutcome(
            self.index, "contributed", round_id=round_id, num_examples=examples, loss=loss
        )

    def _train_labels(self, trainer: Trainer) -> Labels:
        """The labels the device trains on: its own, or wrong ones if it poisons."""
        train = self.data.train
        if self.profile.fault != "poison":
            return train.y
        if self._poisoned is None:
            # The model's output width is the number of classes.
            one = trainer.predict({name: a[:1] for name, a in train.x.items()})
            self._poisoned = poison_labels(train.y, self.objective, int(one.shape[-1]))
        return self._poisoned

    def with_local_state(self, weights: Weights) -> Weights:
        """``weights`` with this device's own values of its local state."""
        return {**weights, **self._local} if self._local else weights

    def train_seed(self, round_id: int) -> int:
        """Batch order for a round: the TFF engine uses the same seed."""
        return train_seed(self._seed, self.index, round_id)

    def _with_fault(
        self, round_id: int, base_id: str, delta: Weights, n: int, loss: float
    ) -> bytes:
        fault = self.profile.fault
        if fault == "replay" and self._last_upload is not None:
            return self._last_upload
        if fault == "nan":
            first = next(iter(delta))
            delta = {**delta, first: np.full_like(delta[first], np.nan)}
        elif fault == "wrong_shape":
            first = next(iter(delta))
            delta = {**delta, first: delta[first].reshape(-1)[:-1]}
        meta = UpdateMeta(
            round_id=round_id,
            base_checkpoint=base_id,
            num_examples=n,
            metrics={"loss": loss, **self._trained_scores},
        )
        return encode_update(Update(meta=meta, deltas=delta))

    def _consider_personal(self, trainer: Trainer, candidate: Weights) -> None:
        """On-device acceptance: keep the better model on the device's own data.
        Its score there (``accuracy`` for a classifier) goes with the update."""
        score = self.score(trainer, candidate)
        finite = bool(np.isfinite(score))
        self._trained_scores = {self.objective.metric: score} if finite else {}
        self._keep_if_better(candidate, score)

    def score(self, trainer: Trainer, weights: Weights) -> float:
        """The headline metric of ``weights`` on this device's held-out data."""
        return evaluate(trainer, weights, self.data.holdout, self.objective)[self.objective.metric]

    def _keep_if_better(self, weights: Weights, score: float) -> None:
        if self.personal is None or self.objective.at_least_as_good(score, self.personal_score):
            self.personal, self.personal_score = weights, score

    def offer_global(self, weights: Weights) -> dict[str, float]:
        """A new global model arrives: adopt it if it is no worse. Its loss
        and metric on this device's held-out data (with the device's own
        local state, which the global model does not carry)."""
        weights = self.with_local_state(weights)
        with self.trainers.borrow() as trainer:
            scores = evaluate(trainer, weights, self.data.holdout, self.objective)
        self._keep_if_better(weights, scores[self.objective.metric])
        return scores

    def personal_scores(self, test: Examples) -> tuple[dict[str, float], dict[str, float]]:
        """The personalised model's scores on the device's own held-out data
        and on ``test`` (the global test split)."""
        if self.personal is None:
            raise RuntimeError(f"device {self.index} has no model yet")
        with self.trainers.borrow() as trainer:
            own = evaluate(trainer, self.personal, self.data.holdout, self.objective)
            return own, evaluate(trainer, self.personal, test, self.objective)
