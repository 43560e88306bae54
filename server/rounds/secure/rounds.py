"""The coordinator's secure rounds: the device requests of each stage, and
the two hooks the round lifecycle calls (when a round is due, what its
close adds).

Only the round in progress has a session, in memory: a restart loses it,
and the devices of that round are refused until the round ends (at its
deadline, without quorum) and the next one opens. What the session holds is
the protocol's minimum (:mod:`fedge.secagg.aggregator`): public keys,
encrypted shares until they are fetched, the running masked sum.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fedge.secagg import (
    KeyAdvert,
    MaskedInput,
    SecAggError,
    SecAggParams,
    ShareBundle,
    UnmaskResponse,
)
from fedge.server.aggregation.errors import AggregationError
from fedge.server.errors import BadRequest, Conflict, NotFound
from fedge.server.round_config import RoundConfig
from fedge.server.rounds.running_sum import RoundSum
from fedge.server.rounds.secure.session import SecureSession
from fedge.server.secure_config import SecureAggregationConfig
from fedge.server.storage import rounds as rs
from fedge.server.storage.devices import Device
from fedge.server.storage.store import Store
from fedge.wire.weight_spec import ModelSpec

log = logging.getLogger("fedge.server")


class SecureRoundFailed(AggregationError):
    """Too few shares to unmask: the round fails, the model stays."""


class SecureRounds:
    def __init__(
        self,
        config: SecureAggregationConfig,
        rounds: RoundConfig,
        store: Store,
        spec: ModelSpec,
        round_sum: RoundSum,
        wake: Callable[[], None],
    ) -> None:
        self._config = config
        self._rounds = rounds
        self._store = store
        self.spec = spec  # the averaged weights, in the order of the masked vector
        self._sum = round_sum
        self._wake = wake
        self._session: SecureSession | None = None
        self._session_lock = threading.Lock()
        # The parameters follow from the round's size: those of a full round.
        full = SecAggParams.choose(
            max(rounds.target_participants, 3), config.dropout, spec.size, config.clip
        )
        log.info(
            "%s (for a full round; each round's own are logged when keys close)", full.describe()
        )

    def task_fields(self, round_id: int) -> dict[str, Any]:
        """What a selected device's task adds: the round is secure, and how."""
        return {
            "url": f"/v1/rounds/{round_id}/secagg",
            "weights": list(self.spec.names),
            "clip": self._config.clip,
            "dropout": self._config.dropout,
        }

    # -- the lifecycle's hooks (called under the running sum's lock) -----------

    def due(self, record: rs.RoundRecord, now: float) -> str | None:
        """``closing`` once unmasked (or failed), ``abandoned`` when too few
        devices advertised keys by the deadline, else None."""
        session = self._session_for(record)
        with session.lock:
            session.advance(now)
            if session.abandoned:
                return "abandoned"
            if session.outcome is None and session.unmask_due(now):
                outcome = session.finish()
                if outcome.mean is not None:
                    # count unit-weight updates of the mean: the mean and the
                    # count (central DP's denominator) are the survivors'.
                    for _ in outcome.survivors:
                        self._sum.add(outcome.mean, 1.0)
            return None if session.outcome is None else "closing"

    def closing(self, round_id: int) -> tuple[dict[str, Any], list[str]]:
        """The round's secure metrics and survivors; raises when it failed."""
        session = self._session
        if session is None or session.round_id != round_id or session.outcome is None:
            raise SecureRoundFailed("the secure round's state was lost (a restart)")
        if session.outcome.mean is None:
            raise SecureRoundFailed(session.outcome.reason)
        return session.metrics(), session.outcome.survivors

    def metrics(self, round_id: int) -> dict[str, Any]:
        session = self._session
        if session is None or session.round_id != round_id:
            return {"secure_aggregation": True}
        with session.lock:
            return session.metrics()

    # -- device requests -------------------------------------------------------

    def advertise(self, device: Device, round_id: int, raw: dict[str, Any]) -> dict[str, Any]:
        advert = _parse(lambda: KeyAdvert.from_json(raw))
        return self._record(device, round_id, lambda s: s.aggregator.advertise(device.id, advert))

    def directory(self, device: Device, round_id: int) -> bytes | str:
        return self._fetch(
            device, round_id, "share", lambda s: s.aggregator.directory_for(device.id)
        )

    def share(self, device: Device, round_id: int, raw: dict[str, Any]) -> dict[str, Any]:
        bundle = _parse(lambda: ShareBundle.from_json(raw, device.id))
        return self._record(device, round_id, lambda s: s.aggregator.submit_shares(bundle))

    def inbox(self, device: Device, round_id: int) -> bytes | str:
        return self._fetch(device, round_id, "upload", lambda s: s.aggregator.inbox_for(device.id))

    def upload(self, device: Device, round_id: int, raw: bytes) -> dict[str, Any]:
        masked = _parse(lambda: MaskedInput.from_bytes(raw, self.spec.size))
        return self._record(
            device, round_id, lambda s: s.aggregator.submit_masked(device.id, masked)
        )

    def unmask_request(self, device: Device, round_id: int) -> bytes | str:
        return self._fetch(
            device, round_id, "unmask", lambda s: s.aggregator.unmask_request_for(device.id)
        )

    def unmask(self, device: Device, round_id: int, raw: dict[str, Any]) -> dict[str, Any]:
        response = _parse(lambda: UnmaskResponse.from_json(raw))
        return self._record(
            device, round_id, lambda s: s.aggregator.submit_unmask(device.id, response)
        )

    def status(self, round_id: int) -> dict[str, Any]:
        with self._store.reading() as tx:
            record = tx.rounds.active()
        session = self._session
        if record is not None and record.id == round_id:
            session = self._session_for(record)
        if session is None or session.round_id != round_id:
            raise NotFound(
                f"round {round_id} is not the secure round in progress", code="unknown_round"
            )
        with session.lock:
            session.advance(time.time())
            return {"round_id": round_id, **session.metrics()}

    # -- helpers -----------------------------------------------------------------

    def _session_for(self, record: rs.RoundRecord) -> SecureSession:
        with self._session_lock:
            return self._new_session_if_needed(record)

    def _new_session_if_needed(self, record: rs.RoundRecord) -> SecureSession:
        session = self._session
        if session is None or session.round_id != record.id:
            session = SecureSession(
                record.id,
                record.deadline_at,
                self._config,
                self._rounds.target_participants,
                self._rounds.min_participants,
                self.spec,
            )
            self._session = session
        return session

    def _open_session(self, device: Device, round_id: int) -> SecureSession:
        with self._store.reading() as tx:
            record = tx.rounds.open()
            selected = record is not None and tx.selections.contains(record.id, device.id)
        if record is None or record.id != round_id:
            raise Conflict(f"round {round_id} is not open", code="round_not_open")
        if not selected:
            raise Conflict(
                "this device has no seat in the round: ask for a task", code="not_selected"
            )
        assert record is not None  # for mypy: refused above
        return self._session_for(record)

    def _record(
        self, device: Device, round_id: int, action: Callable[[SecureSession], Any]
    ) -> dict[str, Any]:
        session = self._open_session(device, round_id)
        with session.lock:
            session.advance(time.time())
            try:
                action(session)
            except SecAggError as exc:
                raise Conflict(str(exc), code="secagg_refused") from exc
            session.advance(time.time())
            stage = session.stage
        self._wake()
        return {"round_id": round_id, "stage": stage}

    def _fetch(
        self, device: Device, round_id: int, stage: str, read: Callable[[SecureSession], Any]
    ) -> bytes | str:
        """The message's JSON bytes, or the stage the round is still in."""
        session = self._open_session(device, round_id)
        with session.lock:
            session.advance(time.time())
            if session.stage != stage and not _past(session.stage, stage):
                return session.stage
            try:
                message = read(session)
            except SecAggError as exc:
                raise Conflict(str(exc), code="secagg_refused") from exc
        result: bytes = message.to_json()
        return result


STAGES = ["advertise", "share", "upload", "unmask", "done"]


def _past(current: str, wanted: str) -> bool:
    return current in STAGES and STAGES.index(current) > STAGES.index(wanted)


def _parse(parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except SecAggError as exc:
        raise BadRequest(str(exc), code="bad_secagg_message") from exc
