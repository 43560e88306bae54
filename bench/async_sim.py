"""A fleet on a simulated clock, for :mod:`bench.async_vs_sync`: synchronous
rounds and asynchronous buffered aggregation (FedBuff) on the same devices.

Why a simulated clock: 1,000 devices whose speeds span two orders of
magnitude, on a shared 2-core machine, would measure the machine's thread
contention, not the protocols. Here time is an event queue: a device's task
takes exactly what its profile says (download, compute for its examples and
epochs, upload: :mod:`fedge.client_sim.device.speeds`), and the server's own
steps take no time in either mode (which favours the mode that makes more
steps only as far as real servers make a step in milliseconds; fedge's
measured fold time is well under one). Everything else is real: each task
trains the bundle's ``train.tflite`` on the device's own examples from the
model it was handed, and the server's aggregation code makes every model
(the strategy's ``next_weights`` over a :class:`StreamingMean`, weighed by
examples and, in async mode, by the server's own staleness policy).

The rules follow the server: a synchronous round hands ``ceil(K x
over_selection)`` seats to idle devices that are online (in their
availability window), closes at its K-th upload, or at its deadline with
at least ``min_participants``, else it is given up and the next one opens
on the same model; an upload for a closed round is refused (``late``: its
training is wasted). In async mode at most ``concurrency`` devices train at
once (a freed seat goes at once to an idle online device), an upload more
than ``max_staleness`` versions old is refused (``too_stale``), and every K
accepted updates make the next version. A device that has started a task
finishes it (a tab kept open while it trains). The same seeds draw the same
devices' speeds, windows and batch orders in both modes.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bench.async_tasks import Task
from fedge.client_sim.device.profiles import DeviceProfile
from fedge.client_sim.device.trainers import Trainer, train_seed
from fedge.server.aggregation.factory import make_strategy
from fedge.server.aggregation.kernels import StreamingMean
from fedge.server.aggregation.strategies import ServerState
from fedge.server.rounds.buffered.staleness import staleness_factor
from fedge.wire.update_codec import Weights

# Evaluations in a row at the target that count as reaching it.
HELD = 3
# Measured task durations whose median is "the fleet's" (slow_factor).
RECENT_TASKS = 500


@dataclass(frozen=True)
class SyncSettings:
    per_round: int  # K: the uploads that close a round
    over_selection: float
    deadline_s: float
    min_participants: int
    server_lr: float = 1.0  # FedAvg's server learning rate


@dataclass(frozen=True)
class AsyncSettings:
    buffer: int  # K: accepted updates per version
    concurrency: int
    max_staleness: int
    staleness_weight: str = "sqrt"
    lease_s: float = 60.0  # how long a device may train on its task
    server_lr: float = 1.0
    # FedBuff's step: the buffer's mean scaled by its mean staleness factor
    # (the server's aggregation.scaled_step: for FedAvg the same as a server
    # learning rate of that factor, which is how it is applied here).
    scaled_step: bool = False
    hinge_after: int = 2
    # The staleness weight whose buffer mean scales the step (None: the
    # updates' own staleness_weight; the server's aggregation.step_weight).
    step_weight: str | None = None
    # The server's strategy (fedavg, fedavgm with this momentum, fedadam).
    strategy: str = "fedavg"
    momentum: float = 0.5
    # Fast devices first (0: off): a device whose last task, as the server
    # measured it (lease to upload), took more than this many times the
    # median of the recent measured tasks gets a seat only when no other
    # idle online device is left. Unmeasured devices count as fast.
    slow_factor: float = 0.0


@dataclass(frozen=True)
class Point:
    seconds: float  # simulated
    models: int  # rounds closed / versions made by then
    score: float  # the headline metric on the global test split
    device_s: float  # device-compute seconds spent by then


@dataclass
class SimReport:
    points: list[Point] = field(default_factory=list)
    uploads: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    device_s: float = 0.0  # compute of every task that finished training
    wasted_s: float = 0.0  # compute of refused uploads
    bytes_moved: int = 0
    models: int = 0
    mean_staleness: float = 0.0

    def reached(self, target: float, held: int = HELD) -> Point | None:
        """The first evaluation from which the score stays at ``target`` or
        better for ``held`` evaluations in a row (a noisy curve touching the
        target once has not reached it)."""
        scores = [p.score for p in self.points]
        for i, point in enumerate(self.points):
            window = scores[i : i + held]
            if len(window) == held and min(window) >= target:
                return point
        return None

    @property
    def final(self) -> float:
        return self.points[-1].score if self.points else float("nan")


@dataclass
class _Work:
    device: int
    base: int  # round id (sync) or version (async) it trained on
    start: float
    compute_s: float
    delta: Weights
    examples: int


class Simulation:
    """One run: ``settings`` decide the mode; ``budget_s`` simulated seconds."""

    def __init__(
        self,
        task: Task,
        profiles: list[DeviceProfile],
        settings: SyncSettings | AsyncSettings,
        budget_s: float,
        seed: int,
        evaluations: int = 150,
    ) -> None:
        self.task, self.profiles = task, profiles
        self.settings = settings
        self.budget_s = budget_s
        self.seed = seed
        self._rng = random.Random(f"selection:{seed}")
        self._trainer: Trainer = task.make_trainer()
        self._events: list[tuple[float, int, int]] = []  # (time, order, device)
        self._order = 0
        self._busy: dict[int, _Work] = {}
        self._tasks_done = [0] * len(profiles)
        self._weights = dict(task.initial)
        self._state = ServerState()
        self._model_id = 0  # rounds closed / versions made
        self._step = 1.0 / evaluations * budget_s
        self._next_eval = 0.0
        self._staleness_sum = 0
        self._measured: dict[int, float] = {}  # device -> its last task's seconds
        self._recent: deque[float] = deque(maxlen=RECENT_TASKS)
        self.report = SimReport()

    # -- devices -------------------------------------------------------------

    def _duration(self, device: int) -> tuple[float, float]:
        """(whole task seconds, compute seconds) of ``device``'s next task."""
        profile, data = self.profiles[device], self.task.devices[device]
        compute = profile.compute_s_per_example * len(data.train) * self.task.local_epochs
        down = profile.transfer_s(self.task.download_bytes)
        up = profile.transfer_s(self.task.upload_bytes)
        return down + compute + up, compute

    def _idle_online(self, now: float) -> list[int]:
        return [i for i, p in enumerate(self.profiles) if i not in self._busy and p.in_window(now)]

    def _hand_out(self, devices: list[int], now: float, base: int) -> None:
        """Each of ``devices`` takes a task on the current model at ``now``."""
        task = self.task
        for device in devices:
            data = task.devices[device].train
            self._trainer.set_weights(self._weights)
            self._trainer.train(
                data.x,
                data.y,
                task.local_epochs,
                task.batch_size,
                task.learning_rate,
                seed=train_seed(self.seed, device, self._tasks_done[device]),
            )
            self._tasks_done[device] += 1
            trained = self._trainer.get_weights()
            delta = {name: trained[name] - self._weights[name] for name in self._weights}
            total, compute = self._duration(device)
            self._busy[device] = _Work(device, base, now, compute, delta, len(data))
            self.report.bytes_moved += task.download_bytes
            self._order += 1
            heapq.heappush(self._events, (now + total, self._order, device))

    def _fast_first(self, online: list[int], free: int, slow_factor: float) -> list[int]:
        """``free`` of ``online``: at random among those not measured slow,
        the slow ones only for seats nobody else takes."""
        if not slow_factor or not self._recent:
            return self._rng.sample(online, min(free, len(online)))
        bound = slow_factor * statistics.median(self._recent)
        fast = [d for d in online if self._measured.get(d, 0.0) <= bound]
        chosen = self._rng.sample(fast, min(free, len(fast)))
        if len(chosen) < free:
            slow = [d for d in online if self._measured.get(d, 0.0) > bound]
            chosen += self._rng.sample(slow, min(free - len(chosen), len(slow)))
        return chosen

    def _arrive(self, device: int) -> _Work:
        work = self._busy.pop(device)
        self.report.uploads += 1
        self.report.device_s += work.compute_s
        self.report.bytes_moved += self.task.upload_bytes
        return work

    def _refuse(self, work: _Work, code: str) -> None:
        self.report.refused[code] = self.report.refused.get(code, 0) + 1
        self.report.wasted_s += work.compute_s

    # -- the server ----------------------------------------------------------

    def _new_model(self, mean: StreamingMean, factors: float = 1.0) -> None:
        """A server step: FedAvg (or, in async mode, FedAvgM if the settings
        say so) with the settings' server learning rate (times ``factors``:
        the scaled step's mean staleness factor)."""
        s = self.settings
        params: dict[str, Any] = {"server_lr": s.server_lr * factors}
        if isinstance(s, AsyncSettings) and s.strategy == "fedavgm":
            params["momentum"] = s.momentum
        name = s.strategy if isinstance(s, AsyncSettings) else "fedavg"
        strategy = make_strategy(name, **params)
        result = strategy.next_weights(self._weights, self._state, mean)
        self._weights, self._state = dict(result.new_weights), result.state
        self._model_id += 1

    def _spent(self, now: float) -> float:
        """Device-compute seconds by ``now``: finished tasks and the part of
        those in flight."""
        running = sum(min(max(now - w.start, 0.0), w.compute_s) for w in self._busy.values())
        return self.report.device_s + running

    def _evaluate_until(self, now: float) -> None:
        """Score the current model at each evaluation time up to ``now``."""
        while self._next_eval <= min(now, self.budget_s):
            self._trainer.set_weights(self._weights)
            scores = self.task.objective.evaluate(
                self._trainer.predict(self.task.test.x), self.task.test.y
            )
            self.report.points.append(
                Point(
                    self._next_eval,
                    self._model_id,
                    float(scores[self.task.metric]),
                    self._spent(self._next_eval),
                )
            )
            self._next_eval += self._step

    def run(self) -> SimReport:
        if isinstance(self.settings, SyncSettings):
            self._run_sync(self.settings)
        else:
            self._run_async(self.settings)
        self.report.models = self._model_id
        self.report.mean_staleness = self._staleness_sum / max(self.report.accepted, 1)
        return self.report

    def _next_event(self) -> tuple[float, int] | None:
        if not self._events:
            return None
        at, _, device = heapq.heappop(self._events)
        return at, device

    def _run_sync(self, s: SyncSettings) -> None:
        now, round_id = 0.0, 1
        seats = math.ceil(s.per_round * s.over_selection)
        while now <= self.budget_s:
            # A round opens: its seats go to idle online devices.
            online = self._idle_online(now)
            chosen = self._rng.sample(online, min(seats, len(online)))
            self._hand_out(chosen, now, round_id)
            deadline = now + s.deadline_s
            mean = StreamingMean()
            while True:
                nearest = self._events[0][0] if self._events else math.inf
                if nearest > deadline:  # the deadline comes first
                    self._evaluate_until(deadline)
                    if mean.count >= s.min_participants:
                        self._new_model(mean)
                    now = deadline
                    break
                event = self._next_event()
                assert event is not None
                now, device = event
                self._evaluate_until(now)
                work = self._arrive(device)
                if work.base != round_id:
                    self._refuse(work, "late")
                    continue
                mean.add(work.delta, float(work.examples))
                self.report.accepted += 1
                if mean.count >= s.per_round:
                    self._new_model(mean)
                    break
            round_id += 1
        self._evaluate_until(self.budget_s)

    def _run_async(self, s: AsyncSettings) -> None:
        now, version, factors = 0.0, 1, 0.0
        mean = StreamingMean()
        while now <= self.budget_s:
            # A lease past its time frees its seat (its upload will be refused).
            leased = sum(1 for w in self._busy.values() if now - w.start < s.lease_s)
            free = s.concurrency - leased
            if free > 0:
                online = self._idle_online(now)
                self._hand_out(self._fast_first(online, free, s.slow_factor), now, version)
            event = self._next_event()
            if event is None:  # nobody online: wait for a window to open
                now += 1.0
                continue
            now, device = event
            self._evaluate_until(now)
            work = self._arrive(device)
            self._measured[device] = now - work.start
            self._recent.append(now - work.start)
            lag = version - work.base
            if now - work.start > s.lease_s:
                self._refuse(work, "lease_expired")
                continue
            if lag > s.max_staleness:
                self._refuse(work, "too_stale")
                continue
            factor = staleness_factor(s.staleness_weight, lag, s.hinge_after)
            mean.add(work.delta, float(work.examples) * factor)
            factors += staleness_factor(s.step_weight or s.staleness_weight, lag, s.hinge_after)
            self._staleness_sum += lag
            self.report.accepted += 1
            if mean.count >= s.buffer:
                self._new_model(mean, factors / mean.count if s.scaled_step else 1.0)
                version += 1
                mean, factors = StreamingMean(), 0.0
        self._evaluate_until(self.budget_s)
