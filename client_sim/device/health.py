"""A device watches the live model: how it does on what the user labelled,
and what it predicts, sent to the server at the pace the server sets.

Once per window (``POST /v1/releases/{version}/health``; the receipt's
``next_report_at`` is when the next one opens, so the server sets the
pace), a device that has labelled examples runs the release it serves on
them with the runtime it uses (TFLite here) and reports the loss and
headline metric, and a histogram of the predicted classes (a regressor:
its output quantiles). Numbers only: neither the examples nor the
predictions leave the device. A report before the window opens is not
sent (the device waits); a 409 ``already_reported`` means another report
of this device reached the window first, and moves the pace on the same way.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.client_sim.device.release_cache import ReleaseCache
from fedge.task.examples import Examples
from fedge.task.objective import Objective
from fedge.wire.health import QUANTILES, HealthReceipt, HealthReport, HealthWireError
from fedge.wire.predictions import Predictions
from fedge.wire.releases import Release


def measure(
    outputs: npt.NDArray[Any], labels: npt.NDArray[Any], objective: Objective, runtime: str
) -> HealthReport:
    """The report of a model's ``outputs`` on labelled examples."""
    scores = objective.evaluate(outputs, labels)
    made = predictions_of(outputs)
    return HealthReport(
        metric=objective.metric,
        loss=scores["loss"],
        value=scores[objective.metric],
        num_examples=len(labels),
        runtime=runtime,
        histogram=made.histogram,
        quantiles=made.quantiles,
    )


def predictions_of(outputs: npt.NDArray[Any]) -> Predictions:
    """What a model predicted, numbers only: a histogram of its classes (a
    classifier) or its output quantiles (a regressor). A health report
    carries it for the live model, a canary evaluation for the candidate."""
    flat = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if flat.shape[1] > 1:
        counts = np.bincount(np.argmax(flat, axis=1), minlength=flat.shape[1])
        return Predictions(tuple(int(c) for c in counts), None)
    return Predictions(None, tuple(float(q) for q in np.quantile(flat[:, 0], QUANTILES)))


def send_report(client: FedgeClient, version: int, report: HealthReport) -> HealthReceipt:
    """Send one report; a refusal is a :class:`ProtocolError` with the server's code."""
    reply = client.post_json(f"/v1/releases/{version}/health", report.to_json())
    try:
        return HealthReceipt.from_json(reply.json())
    except (ValueError, HealthWireError) as exc:
        raise ProtocolError(reply.status, "bad_receipt", str(exc)) from exc


class HealthReporter:
    """One device's reports on the release it serves, at the server's pace."""

    def __init__(
        self,
        client: FedgeClient,
        objective: Objective,
        cache: ReleaseCache,
        runtime: str = "tflite",
    ) -> None:
        self.client, self.objective, self.cache, self.runtime = client, objective, cache, runtime
        self.next_report_at = 0.0  # nothing known yet: the first report goes at once
        self.sent = 0

    def maybe_report(self, release: Release, labelled: Examples, now: float | None = None) -> str:
        """Report on ``labelled`` (the examples labelled since the last
        report) if the window allows; returns what happened."""
        if (time.time() if now is None else now) < self.next_report_at:
            return "waiting"
        if len(labelled) == 0:
            return "no_labels"
        self.cache.bundle(self.client, release)
        with self.cache.runtime(release.bundle_id) as runtime:
            outputs = runtime.predict(labelled.x)
        report = measure(outputs, labelled.y, self.objective, self.runtime)
        try:
            receipt = send_report(self.client, release.version, report)
        except ProtocolError as exc:
            return f"refused:{exc.code}"
        self.next_report_at = receipt.next_report_at
        self.sent += 1
        return "reported"
