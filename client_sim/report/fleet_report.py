"""What a fleet run found: per round, and for the deployed, final and
personalised models (plain data, written as the JSON report)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedge.wire.update_codec import Weights


@dataclass
class RoundReport:
    round_id: int
    state: str
    # The global model after the round on the global test split: loss and
    # the headline metric (accuracy, or mae for a regressor).
    metrics: dict[str, float]
    participants: int
    dropouts: int
    rejects: dict[str, int]
    bytes_up: int
    bytes_down: int
    seconds: float


@dataclass
class Scores:
    """A model's loss and headline metric on the global test split and on
    the devices' own held-out data (the mean over devices)."""

    global_test: dict[str, float]
    devices: dict[str, float]


@dataclass
class ReleaseReport:
    """A release made during the run, as the server shows it at the end.

    ``candidate`` and ``baseline``: the counted canary devices' means of
    loss and the metric on their own held-out data (None without reports);
    ``using``: what those devices chose to serve. ``canary``: the server's
    whole canary summary (its evidence: counted devices, the difference and
    its interval, the test's statistic, the reason), None without one.
    ``parity``: by runtime, the canary devices' parity on their own runtime
    (``GET /v1/releases/{v}``'s ``parity``)."""

    version: int
    source: str
    state: str
    percent: float  # the share of devices it reached as the candidate
    cut_after_round: int | None  # the fleet round after which the fleet cut it
    decision: str | None  # promote | rollback | None (not decided)
    metric: str | None
    candidate: dict[str, float] | None
    baseline: dict[str, float] | None
    reports: int
    using: dict[str, int]
    error: str | None = None
    canary: dict[str, Any] | None = None
    parity: dict[str, Any] = field(default_factory=dict)


@dataclass
class Releases:
    """Releases during the run, and what the devices serve at its end:
    ``adoption`` counts devices serving the candidate, the live release,
    their personalised model, or an ``older`` release that did better on
    their data; ``devices``: per device, what it serves and every bundle it
    took (each checked against the id it was given)."""

    releases: list[ReleaseReport]
    rollout: dict[str, Any]
    adoption: dict[str, int]
    devices: list[dict[str, Any]]
    # What the devices' release checks came to (unchanged, live, reported, refused:<code>, ...).
    outcomes: dict[str, int]
    # The live release's health series at the end (GET /v1/releases/{v}/health;
    # None: devices reported no health).
    health: dict[str, Any] | None = None


@dataclass
class FleetReport:
    config: dict[str, Any]
    # The federated model: its name and bundle id (the sha256 of its manifest).
    model: dict[str, str]
    metric: str
    partition: str
    rounds: list[RoundReport]
    selected: dict[int, list[int]]
    # "deployed" (the server's model before round 1), "final" (the global
    # model after the last round), "personalised" (each device's own choice).
    scores: dict[str, Scores]
    participation: list[int]
    crashes: int
    retries: int
    final_weights: Weights = field(repr=False, default_factory=dict)
    releases: Releases | None = None  # None: the server has no releases

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "model": self.model,
            "metric": self.metric,
            "partition": self.partition,
            "rounds": [vars(r) for r in self.rounds],
            "selected": {str(k): v for k, v in self.selected.items()},
            "scores": {name: vars(s) for name, s in self.scores.items()},
            "participation": self.participation,
            "crashes": self.crashes,
            "retries": self.retries,
            "releases": _releases_json(self.releases),
        }


def _releases_json(releases: Releases | None) -> dict[str, Any] | None:
    if releases is None:
        return None
    return {**vars(releases), "releases": [vars(r) for r in releases.releases]}


Progress = Callable[[RoundReport], None]


def shown_config(config: Any) -> dict[str, Any]:
    """A run's settings as the report shows them: paths as text, and never
    the admin token (a secret)."""
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(config).items()
        if k != "admin_token"
    }


def shown_selections(
    selected: Mapping[int, Iterable[int]], last_round: int
) -> dict[int, list[int]]:
    """The devices selected per round, up to the run's last round."""
    return {r: sorted(selected[r]) for r in sorted(selected) if r <= last_round}


def mean_over_devices(rows: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each key over devices (a device without held-out data is NaN: skipped)."""
    keys = rows[0] if rows else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: NaN
        return {key: float(np.nanmean([row[key] for row in rows])) for key in keys}


def personalised_scores(personal: list[tuple[dict[str, float], dict[str, float]]]) -> Scores:
    """The personalised models' scores from each device's (own data, global test) pair."""
    return Scores(
        global_test=mean_over_devices([on_test for _, on_test in personal]),
        devices=mean_over_devices([own for own, _ in personal]),
    )
