"""A fleet's rounds, written once for every backend (:mod:`.backend`).

Round 0 offers the deployed model to every device, which starts from it.
Then each round the devices the server asked for (:mod:`.pacing`) ask for
work until the round closes; the fleet scores the round's global model,
files each contribution under the round that accepted it, and (thread
backend) lets the devices follow the server's releases (:mod:`.releases`).
At the end every device is offered the final global model, and reports its
personalised one.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable

from fedge.client_sim.device.simulated import RoundOutcome, evaluate
from fedge.client_sim.device.trainers import Trainer
from fedge.client_sim.fleet.backend import DeviceBackend
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.pacing import DevicePacing, RoundWatch, run_round_passes
from fedge.client_sim.fleet.preparation import FleetModel
from fedge.client_sim.fleet.releases import FleetReleases
from fedge.client_sim.report.fleet_report import (
    FleetReport,
    Progress,
    RoundReport,
    Scores,
    mean_over_devices,
    personalised_scores,
    shown_config,
    shown_selections,
)
from fedge.task.examples import Examples
from fedge.wire.update_codec import Weights


def run_rounds(
    config: FleetConfig,
    model: FleetModel,
    backend: DeviceBackend,
    test: Examples,
    partition: str,
    progress: Progress | None = None,
    releases: FleetReleases | None = None,
) -> FleetReport:
    """``config.rounds`` server rounds with ``backend``'s devices; the report.
    ``test``: the global test split; ``releases``: followed between rounds."""
    evaluator = model.trainer()
    # Both backends draw the same device orders from the seed, draw for draw.
    order_rng = random.Random(config.seed)
    reports: list[RoundReport] = []
    selected: dict[int, list[int]] = {}
    contributed = [0] * backend.size
    weights = model.current_weights()
    deployed = _scores(backend, evaluator, weights, test, model)
    pacing = DevicePacing(backend.size)
    watch = RoundWatch(model.url)
    try:
        if releases is not None:
            releases.start()
        for _ in range(config.rounds):
            report, outcomes, weights = _one_round(
                backend, order_rng, model, evaluator, test, pacing, watch, config.asynchronous
            )
            reports.append(report)
            for outcome in outcomes:
                if outcome.status == "contributed" and outcome.round_id is not None:
                    selected.setdefault(outcome.round_id, []).append(outcome.device)
                    contributed[outcome.device] += 1
            if progress is not None:
                progress(report)
            if releases is not None:
                releases.after_round(len(reports))
        released = releases.report() if releases is not None else None
    finally:
        watch.close()
    # Each device scores the final global model on its own data and adopts
    # it if it is no worse than its personalised one.
    final = _scores(backend, evaluator, weights, test, model)
    personal = backend.personal_scores(test)
    counters = backend.counters()
    return FleetReport(
        config=shown_config(config),
        model={"name": model.manifest.name, "bundle_id": model.bundle_id},
        metric=model.objective.metric,
        partition=partition,
        rounds=reports,
        selected=shown_selections(selected, reports[-1].round_id),
        scores={
            "deployed": deployed,
            "final": final,
            "personalised": personalised_scores(personal),
        },
        participation=contributed,
        crashes=counters.crashes,
        retries=counters.retries,
        final_weights=weights,
        releases=released,
    )


def _scores(
    backend: DeviceBackend, evaluator: Trainer, weights: Weights, test: Examples, model: FleetModel
) -> Scores:
    """``weights`` offered to every device (each adopts it if no worse), and scored."""
    return Scores(
        global_test=evaluate(evaluator, weights, test, model.objective),
        devices=mean_over_devices(backend.offer_global(weights)),
    )


def _one_round(
    backend: DeviceBackend,
    rng: random.Random,
    model: FleetModel,
    evaluator: Trainer,
    test: Examples,
    pacing: DevicePacing,
    watch: RoundWatch,
    asynchronous: bool = False,
) -> tuple[RoundReport, list[RoundOutcome], Weights]:
    """One server round: the devices due ask for work until the round ends;
    between passes the fleet waits on the round events, or on the first
    device whose retry time comes. ``asynchronous``: the round is a version
    of the async mode; a device trains on whatever version its task names
    (its lease may be on an earlier one) and its update goes into the buffer
    open when it arrives."""
    started = time.perf_counter()
    before = backend.counters()
    round_id = model.current_round_id()

    def step(order: list[int]) -> Iterable[RoundOutcome]:
        rng.shuffle(order)
        return backend.step(order, None if asynchronous else round_id)

    outcomes, state = run_round_passes(
        round_id, pacing, watch, step, lambda: model.get_json(f"/v1/rounds/{round_id}")
    )
    rejects = Counter(o.detail for o in outcomes if o.status == "rejected")
    weights = model.checkpoint(state["result_checkpoint"] or state["base_checkpoint"])
    after = backend.counters()
    report = RoundReport(
        round_id=round_id,
        state=state["state"],
        metrics=evaluate(evaluator, weights, test, model.objective),
        participants=int(state["updates"]),
        dropouts=sum(o.status == "dropout" for o in outcomes),
        rejects=dict(rejects),
        bytes_up=after.bytes_up - before.bytes_up,
        bytes_down=after.bytes_down - before.bytes_down,
        seconds=time.perf_counter() - started,
    )
    return report, outcomes, weights
