"""FedBN on devices whose images differ in style: BatchNorm statistics
averaged across devices (the default) against ``--local-state bn`` (each
device keeps its own, Li et al. 2021).

    .venv/bin/python -m bench.fedbn_bench [--rounds 8] [--devices 8]

A small BatchNorm CNN is trained briefly on a clean public share of the
digits (the deployed model); the rest is spread over devices, each seeing
its digits in one style: as they are, inverted, at low contrast, brightened,
rotated. Each run federates the same bundle over the same devices through
``run_fleet`` (embedded server, TFLite training) and prints the devices'
accuracy on their own held-out data: the global model (with the device's
own statistics under ``bn``) and the personalised one.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.reference.data import load_digits_images

Images = npt.NDArray[np.float32]
STYLES: dict[str, Callable[[Images], Images]] = {
    "plain": lambda x: x,
    "inverted": lambda x: 1.0 - x,
    "low contrast": lambda x: 0.4 + 0.2 * x,
    "bright": lambda x: np.clip(0.5 + 1.5 * x, 0.0, 2.0),
    "rotated": lambda x: np.rot90(x, k=1, axes=(1, 2)),
}


def _bundle(work: Path, x: Images, y: npt.NDArray[np.int64]) -> Path:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(x.shape[1:], name="image")
    h = inputs
    for i, filters in enumerate((8, 16)):
        h = tf.keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(h)
        h = tf.keras.layers.BatchNormalization(name=f"bn{i}")(h)
        h = tf.keras.layers.Activation("relu")(h)
    h = tf.keras.layers.Flatten()(h)
    outputs = tf.keras.layers.Dense(10, activation="softmax", name="digit")(h)
    model = tf.keras.Model(inputs, outputs, name="styled_digits_cnn")
    model.compile(tf.keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    model.save(work / "model.keras")
    convert(work / "model.keras", work / "bundle", ConvertOptions(targets=("tflite",)))
    return work / "bundle"


def _styled_data(work: Path, x: Images, y: npt.NDArray[np.int64], devices: int) -> Path:
    rng = np.random.default_rng(1)
    owner = rng.integers(0, devices, size=len(y))
    styles = list(STYLES.values())
    styled = np.empty_like(x)
    for device in range(devices):
        mine = owner == device
        styled[mine] = styles[device % len(styles)](x[mine])
    path = work / "styled.npz"
    np.savez(path, x=styled, y=y, device=np.array([f"device-{d}" for d in owner]))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--devices", type=int, default=10)
    args = parser.parse_args()
    x, y = load_digits_images()
    public = np.random.default_rng(0).random(len(y)) < 0.2
    table = Table(title=f"FedBN: {args.devices} devices, {args.rounds} rounds, styled digits")
    for column in ("BatchNorm statistics", "global on own data", "personalised", "deployed"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        bundle = _bundle(work, x[public], y[public])
        data = _styled_data(work, x[~public], y[~public], args.devices)
        for label, local in (("averaged (default)", ()), ("--local-state bn", ("bn",))):
            report = run_fleet(
                FleetConfig(
                    model=bundle,
                    data=data,
                    per_round=args.devices,
                    rounds=args.rounds,
                    local_epochs=2,
                    learning_rate=0.05,
                    workers=4,
                    local_state=local,
                    work_dir=work / label.replace(" ", "_"),
                )
            )
            scores = report.scores
            table.add_row(
                label,
                f"{scores['final'].devices['accuracy']:.3f}",
                f"{scores['personalised'].devices['accuracy']:.3f}",
                f"{scores['deployed'].devices['accuracy']:.3f}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
