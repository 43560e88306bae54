"""Handing out tasks: which device gets a seat in the open round.

A device checks in (``POST /v1/tasks``) with its conditions. In one
transaction the check-in is recorded, the rules of
:mod:`fedge.server.rounds.admission` are applied to what the database says, and
an admitted device's seat is taken (a row in ``selections``). Only a
selected device may upload to the round (:mod:`fedge.server.rounds.ingest`).

A check-in is committed without waiting for the disk (nothing is
acknowledged as stored: a check-in lost in a power cut is asked again), and
a refused device is told the round to come back in
(:func:`fedge.server.rounds.admission.paced_round`): most of a large fleet's
devices cost the server one cheap check-in every few rounds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

from fedge.server.round_config import RoundConfig
from fedge.server.rounds import admission
from fedge.server.rounds.admission import Refusal, Seats
from fedge.server.storage import rounds as rs
from fedge.server.storage.devices import ActiveDevices, Conditions, Device
from fedge.server.storage.store import Store, Tx

# How stale the count of active devices that pace steering uses may be.
ACTIVE_COUNT_S = 0.25


@dataclass(frozen=True)
class TaskDecision:
    task: dict[str, Any] | None
    reason: str = ""
    retry_after_s: float = 1.0
    # The round worth asking in (admission.paced_round); None: no advice.
    retry_round: int | None = None

    @classmethod
    def refused(cls, refusal: Refusal, retry_round: int | None = None) -> TaskDecision:
        return cls(None, refusal.reason, refusal.retry_after_s, retry_round)

    def to_json(self) -> dict[str, Any]:
        if self.task is not None:
            return {"task": self.task}
        answer = {"task": None, "reason": self.reason, "retry_after_s": self.retry_after_s}
        if self.retry_round is not None:
            answer["retry_round"] = self.retry_round
        return answer


def check_in(
    tx: Tx, rounds: RoundConfig, device_id: str, conditions: Conditions, now: float
) -> rs.RoundRecord | Refusal:
    """Records a device's check-in; the open round it may ask a seat of, or
    why not (conditions not met, no round open). Both modes begin so."""
    tx.devices.record_check_in(device_id, conditions, now)
    refusal = admission.conditions_refusal(rounds, conditions)
    if refusal is not None:
        return refusal
    record = tx.rounds.open()
    return admission.NO_OPEN_ROUND if record is None else record


class Selector:
    def __init__(
        self, store: Store, rounds: RoundConfig, model_name: str, weight_names: list[str]
    ) -> None:
        self._store = store
        self._rounds = rounds
        self._model_name = model_name
        self._weight_names = list(weight_names)
        # When the active devices were last counted, and what was found.
        self._active: tuple[float, ActiveDevices | None] = (-math.inf, None)

    def request_task(
        self, device: Device, conditions: Conditions, now: float | None = None
    ) -> TaskDecision:
        now = time.time() if now is None else now
        # A check-in is not acknowledged as stored (a lost one costs a
        # repeat), so it does not wait for the disk; uploads do.
        with self._store.transaction(durable=False) as tx:
            record = check_in(tx, self._rounds, device.id, conditions, now)
            if isinstance(record, Refusal):
                return TaskDecision.refused(record)
            if not tx.selections.contains(record.id, device.id):
                seats, enrolled_at = self._seats(tx, record, device.id, now)
                refusal = admission.seat_refusal(seats, device.participations, now, enrolled_at)
                if refusal is not None:
                    return TaskDecision.refused(refusal, self._paced(tx, record, device, now))
                tx.selections.add(record.id, device.id, now)
            contributed = tx.updates.get(record.id, device.id) is not None
            if contributed:
                paced = self._paced(tx, record, device, now)
                return TaskDecision.refused(admission.ALREADY_CONTRIBUTED, paced)
        return TaskDecision(task_for(record, self._model_name, self._weight_names))

    def _seats(
        self, tx: Tx, record: rs.RoundRecord, device_id: str, now: float
    ) -> tuple[Seats, float]:
        """The round's seats as the fair sampler weighs them, and when the
        device enrolled. The scan of the active devices is needed only in a
        round with a free seat, before half time."""
        taken = tx.selections.count(record.id)
        slots = self._rounds.selection_slots
        seats = Seats(taken, slots, 0, record.opened_at, record.deadline_at)
        if taken >= slots or now >= seats.half_time:
            return seats, 0.0
        standing = tx.devices.seat_standing(
            device_id, admission.active_since(self._rounds, now), record.opened_at
        )
        seats = replace(
            seats,
            least_participations=standing.lower_quartile,
            settled_active=standing.settled_active,
        )
        return seats, standing.enrolled_at

    def _paced(self, tx: Tx, record: rs.RoundRecord, device: Device, now: float) -> int:
        """The round a refused device should ask in next (admission.paced_round).

        It competes for seats with every active device, or, if it is among
        the least served (whom the fair sampler seats first), with those
        only: they are spread over fewer rounds, so that each round enough
        of them ask. The devices are counted at most every ACTIVE_COUNT_S."""
        counted_at, active = self._active
        if active is None or not 0 <= now - counted_at < ACTIVE_COUNT_S:
            active = tx.devices.active(admission.active_since(self._rounds, now))
            self._active = (now, active)
        least_served = device.participations <= active.least_participations
        competing = active.least_served if least_served else active.count
        return admission.paced_round(record.id, device.id, competing, self._rounds.selection_slots)


def task_for(record: rs.RoundRecord, model_name: str, weight_names: list[str]) -> dict[str, Any]:
    """What a selected device needs to train for the round and upload."""
    config = record.config
    return {
        "round_id": record.id,
        "base_checkpoint": record.base_checkpoint,
        "checkpoint_url": f"/v1/checkpoints/{record.base_checkpoint}",
        "upload_url": f"/v1/rounds/{record.id}/updates",
        "deadline_at": record.deadline_at,
        "local_epochs": config["local_epochs"],
        "batch_size": config["batch_size"],
        "learning_rate": config["learning_rate"],
        "model": model_name,
        "weights": list(weight_names),
    }
