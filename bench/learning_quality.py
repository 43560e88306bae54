"""Learning quality of the hybrid story: deployed -> federated -> personalised.

Two tasks, each trained centrally on a public 30% and deployed, then
fine-tuned by a fleet over real HTTP with TFLite on-device training:

* ``digits``: the reference CNN; 20 devices hold the rest of the digits,
  Dirichlet(0.5) label skew, each in its own handwriting style;
* ``diabetes``: a small Keras regressor on scikit-learn's diabetes data
  (442 patients, 10 features, target / 100); the patients' age decides
  their device (8 clinics, the natural partition of a device column).

For every server strategy (``--strategies``; FedAvgM and FedAdam with their
default trust region) and 3 seeds, the table gives the headline metric
(accuracy, or mean absolute error) of the deployed model (round 0), the
final global model and the personalised models, on the global test split
and on the devices' own held-out data: the mean and the spread (min..max)
over seeds. Run:

    .venv/bin/python -m bench.learning_quality [--rounds 10] [--seeds 3] \
        [--strategies fedavg,fedadam] [--tasks digits]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.client_sim.report.fleet_report import FleetReport
from fedge.server.aggregation.strategies import STRATEGIES

PUBLIC_FRACTION = 0.3
CLINICS = 8
CELLS = (
    ("deployed", "global_test"),
    ("final", "global_test"),
    ("personalised", "global_test"),
    ("deployed", "devices"),
    ("final", "devices"),
    ("personalised", "devices"),
)


def diabetes_task(work: Path, seed: int) -> tuple[Path, Path]:
    """(bundle of the regressor trained on the public part, .npz of the rest with clinics)."""
    import tensorflow as tf
    from sklearn.datasets import load_diabetes

    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    data = load_diabetes()
    x = np.asarray(data.data, dtype=np.float32)
    y = np.asarray(data.target, dtype=np.float32) / 100.0
    # Age (the first feature) decides the clinic: older patients elsewhere.
    edges = np.quantile(x[:, 0], np.linspace(0, 1, CLINICS + 1)[1:-1])
    clinic = np.array([f"clinic-{int(c)}" for c in np.searchsorted(edges, x[:, 0])])
    rng = np.random.default_rng(seed)
    public = rng.permutation(len(y))[: round(PUBLIC_FRACTION * len(y))]
    private = np.setdiff1d(np.arange(len(y)), public)
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((x.shape[1],), name="measurements")
    hidden = tf.keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = tf.keras.layers.Dense(1, name="progression")(hidden)
    model = tf.keras.Model(inputs, outputs, name="diabetes_regressor")
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x[public], y[public], epochs=30, batch_size=16, verbose=0)
    # Devices fine-tune with the compiled optimizer (train.tflite carries it):
    # deploy with a tenth of the central rate, as a team fine-tuning would.
    model.compile(optimizer=tf.keras.optimizers.Adam(0.001), loss="mse")
    model.save(work / "diabetes.keras")
    bundle = work / "diabetes-bundle"
    convert(work / "diabetes.keras", bundle, ConvertOptions(targets=("tflite",), seed=seed))
    npz = work / "diabetes-clinics.npz"
    np.savez(npz, x=x[private], y=y[private], device=clinic[private])
    return bundle, npz


def run(task: str, strategy: str, seed: int, rounds: int, work: Path) -> FleetReport:
    base = FleetConfig(rounds=rounds, seed=seed, strategy=strategy, local_epochs=3, workers=8)
    if task == "digits":
        config = replace(
            base, devices=20, per_round=10, learning_rate=0.05, public_fraction=PUBLIC_FRACTION
        )
    else:
        bundle, data = diabetes_task(work, seed)
        config = replace(base, model=bundle, data=data, per_round=4, learning_rate=0.02)
    return run_fleet(config)


def score(report: FleetReport, model: str, where: str) -> float:
    scores: dict[str, float] = getattr(report.scores[model], where)
    return scores[report.metric]


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ({min(values):.3f}..{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default="digits,diabetes")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    console = Console(width=200)
    table = Table(
        title=f"hybrid serving: deployed -> {args.rounds} rounds -> personalised; mean "
        f"(min..max) over {args.seeds} seeds"
    )
    for column in (
        "task",
        "metric",
        "strategy",
        *(f"{model} / {where.replace('_', ' ')}" for model, where in CELLS),
        "median s/round",
    ):
        table.add_column(column, justify="left" if column in ("task", "strategy") else "right")
    for task in args.tasks.split(","):
        for strategy in args.strategies.split(","):
            reports = []
            for seed in range(args.seeds):
                console.print(f"{task}, {strategy}, seed {seed} ...")
                with tempfile.TemporaryDirectory() as tmp:
                    reports.append(run(task, strategy, seed, args.rounds, Path(tmp)))
            metric = reports[0].metric
            table.add_row(
                task,
                metric,
                strategy,
                *(spread([score(r, model, where) for r in reports]) for model, where in CELLS),
                f"{statistics.median(s.seconds for r in reports for s in r.rounds):.2f}",
            )
    console.print(table)


if __name__ == "__main__":
    main()
