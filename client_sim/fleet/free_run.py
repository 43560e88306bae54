"""A fleet on the wall clock: each device asks for work whenever its own
next time comes, as devices in the field do, for a time budget.

The round-by-round driver (:mod:`.rounds`) runs passes over the devices a
round needs, which suits synchronous rounds and reports per round. To
compare synchronous rounds with asynchronous aggregation on the same
stragglers, both modes need the same device behaviour: here ``workers``
threads take the device whose time is nearest, let it step once (ask,
train for as long as its profile says, upload), and schedule its next ask
from the answer (after contributing: ``rest_s``; after a refusal: the
server's ``retry_after_s``; offline: a tenth of its window). Whatever the
server's mode, only the server decides what counts.

A watcher records each new model (round or version) with the wall-clock
time it appeared, scored on the global test split, and the device-compute
seconds spent by then.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fedge.client_sim.device.simulated import RoundOutcome, SimDevice, evaluate
from fedge.client_sim.device.trainers import Trainer
from fedge.client_sim.fleet.preparation import FleetModel
from fedge.task.examples import Examples

OFFLINE_RETRY_S = 2.0


@dataclass(frozen=True)
class ModelPoint:
    """A new global model: when it appeared, its score, the work spent by then."""

    seconds: float
    model_id: int
    metrics: dict[str, float]
    device_seconds: float
    # The server's metrics of the round (version) that made it: in async
    # mode mean_staleness, max_staleness, staleness_histogram among them.
    server_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class FreeRunReport:
    points: list[ModelPoint] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    device_seconds: float = 0.0  # steps that trained (contributed or refused at upload)
    wasted_seconds: float = 0.0  # of those, the ones whose upload was refused
    seconds: float = 0.0


class _Schedule:
    """The devices' next ask times, nearest first."""

    def __init__(self, n: int) -> None:
        self._heap = [(0.0, i) for i in range(n)]
        self._lock = threading.Lock()
        self.stopped = threading.Event()  # set: no device starts another step

    def next_due(self, stop_at: float) -> int | None:
        """The nearest device, once its time has come (None: past ``stop_at``)."""
        while True:  # more workers than devices: the others are all stepping
            with self._lock:
                if self._heap:
                    at, index = heapq.heappop(self._heap)
                    break
            if time.monotonic() > stop_at or self.stopped.wait(0.05):
                return None
        wait = at - time.monotonic()
        if at > stop_at or time.monotonic() + max(wait, 0) > stop_at:
            return None
        if wait > 0 and self.stopped.wait(wait):
            return None
        return index if not self.stopped.is_set() else None

    def put(self, index: int, at: float) -> None:
        with self._lock:
            heapq.heappush(self._heap, (at, index))


def run_free(
    devices: list[SimDevice],
    model: FleetModel,
    evaluator: Trainer,
    test: Examples,
    budget_s: float,
    workers: int,
    rest_s: float = 0.5,
    models: int | None = None,
) -> FreeRunReport:
    """Run ``devices`` for ``budget_s`` seconds on ``workers`` threads (or
    until ``models`` new global models were made, when given)."""
    report = FreeRunReport()
    schedule = _Schedule(len(devices))
    started = time.monotonic()
    stop_at = started + budget_s
    lock = threading.Lock()

    def next_ask(outcome: RoundOutcome, now: float) -> float:
        if outcome.status == "contributed":
            return now + rest_s
        if outcome.status == "offline":
            return now + OFFLINE_RETRY_S
        return now + (outcome.retry_after_s or 1.0)

    def work() -> None:
        while True:
            index = schedule.next_due(stop_at)
            if index is None:
                return
            began = time.monotonic()
            outcome = devices[index].step(None)
            now = time.monotonic()
            with lock:
                report.outcomes[
                    outcome.status + (f":{outcome.detail}" if outcome.detail else "")
                ] += 1
                if outcome.status in ("contributed", "rejected"):
                    report.device_seconds += now - began
                    if outcome.status == "rejected":
                        report.wasted_seconds += now - began
            schedule.put(index, next_ask(outcome, now))

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    seen = 0
    while time.monotonic() < stop_at:
        newest = _newest_closed(model)
        if newest is not None and newest[0] > seen:
            seen = newest[0]
            weights = model.checkpoint(newest[1])
            with lock:
                spent = report.device_seconds
            report.points.append(
                ModelPoint(
                    time.monotonic() - started,
                    seen,
                    evaluate(evaluator, weights, test, model.objective),
                    spent,
                    newest[2],
                )
            )
            if models is not None and seen >= models:
                schedule.stopped.set()  # the workers finish the steps under way
                break
        time.sleep(0.25)
    for thread in threads:
        thread.join()
    report.seconds = time.monotonic() - started
    return report


def _newest_closed(model: FleetModel) -> tuple[int, str, dict[str, Any]] | None:
    """(round id, checkpoint, metrics) of the newest closed round (or version)."""
    rounds = model.get_json("/v1/rounds?limit=5")["rounds"]
    closed = [r for r in rounds if r["state"] == "closed"]
    if not closed:
        return None
    newest = max(closed, key=lambda r: r["round_id"])
    return int(newest["round_id"]), str(newest["result_checkpoint"]), dict(newest["metrics"])
