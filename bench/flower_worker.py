"""Times Flower's aggregation functions (and fedge's, for the same NumPy).

Runs in ``.bench-venv`` (see ``bench/setup_flower.sh``): Flower cannot be
installed next to the pinned TFF stack, and that venv has no fedge.
``bench/aggregation_bench.py`` starts it with ``PYTHONPATH`` at ``.typecheck/``,
the package view that ``scripts/typecheck.py`` builds (``server/`` as
``fedge/server``, and so on), so ``fedge.server.aggregation`` (pure NumPy)
imports here too, and fedge and Flower are timed side by side on the NumPy
that Flower needs. Only the aggregation call is timed; the updates are loaded
from the ``.npy`` files first. Prints one JSON object. By hand, after
``scripts/typecheck.py`` has built the view:

    PYTHONPATH=.typecheck .bench-venv/bin/python bench/flower_worker.py DIR --repeats 3 --trim 0.2
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedge.server.aggregation.kernels import (
    InMemoryUpdates,
    StreamingMean,
    coordinate_median,
    trimmed_mean,
)


def interleaved(
    runs: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds of each run, ``repeats`` times after one warm-up, taking
    turns so that load from other processes falls on all of them alike."""
    outputs = {key: fn() for key, fn in runs.items()}
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            started = time.perf_counter()
            fn()
            seconds[key].append(time.perf_counter() - started)
    return seconds, outputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trim", type=float, default=0.2)
    args = parser.parse_args()

    import flwr  # type: ignore[import-not-found]
    from flwr.server.strategy.aggregate import (  # type: ignore[import-not-found]
        aggregate,
        aggregate_median,
        aggregate_trimmed_avg,
    )

    layout = json.loads((args.directory / "layout.json").read_text())
    names: list[str] = layout["names"]
    updates = [
        [np.load(args.directory / f"u{i}-{j}.npy") for j in range(len(names))]
        for i in range(layout["updates"])
    ]
    examples: list[int] = layout["num_examples"]
    results = list(zip(updates, examples, strict=True))
    as_weights = [dict(zip(names, arrays, strict=True)) for arrays in updates]

    def ours_mean() -> list[Any]:
        mean = StreamingMean()
        mean.add_many(as_weights, examples)  # one batch, as a group commit adds it
        return list(mean.result().values())

    def memory_pass() -> float:
        return float(sum(float(a.sum()) for arrays in updates for a in arrays))

    runs: dict[str, Callable[[], Any]] = {
        "memory_pass": memory_pass,
        "flower_mean": lambda: aggregate(results),
        "ours_mean": ours_mean,
        "flower_median": lambda: aggregate_median(results),
        "ours_median": lambda: list(coordinate_median(InMemoryUpdates(as_weights)).values()),
        "flower_trimmed": lambda: aggregate_trimmed_avg(results, args.trim),
        "ours_trimmed": lambda: list(trimmed_mean(InMemoryUpdates(as_weights), args.trim).values()),
    }
    seconds, outputs = interleaved(runs, args.repeats)
    report: dict[str, Any] = {"numpy": np.__version__, "flwr": flwr.__version__, "times": seconds}
    report["max_abs_diff"] = {
        kind: max(
            float(np.max(np.abs(np.asarray(a, np.float64) - b)))
            for a, b in zip(outputs[f"ours_{kind}"], outputs[f"flower_{kind}"], strict=True)
        )
        for kind in ("mean", "median", "trimmed")
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
