"""Federate a model fedge never ships on the user's own data.

A small tabular classifier (from a .npz with device ids) and a regressor
(from a CSV with device ids, given as a Keras file) are built here, trained
a little centrally (the deployed model), and federated over real HTTP with
the TFLite training artifact; the global model must improve on the
held-out data. A server that federates another model is refused with a
message naming the difference.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import requests
import tensorflow as tf
from click.testing import CliRunner

from fedge.cli.main import main
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from tests.helpers.live_server import running

CLASSES, FEATURES = 3, 4


def _clusters(n: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Three Gaussian clusters in 4-D, one per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, size=(CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, size=n)
    x = centres[y] + rng.normal(0, 1.0, size=(n, FEATURES))
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def classifier_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tabular classifier trained for one short epoch: the deployed model."""
    work = tmp_path_factory.mktemp("classifier")
    tf.keras.utils.set_random_seed(5)
    inputs = tf.keras.Input((FEATURES,), name="features")
    hidden = tf.keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = tf.keras.layers.Dense(CLASSES, activation="softmax", name="species")(hidden)
    model = tf.keras.Model(inputs, outputs, name="tabular_classifier")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    x, y = _clusters(64, seed=1)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.save(work / "classifier.keras")
    bundle = work / "bundle"
    convert(work / "classifier.keras", bundle, ConvertOptions(targets=("tflite",)))
    return bundle


@pytest.fixture(scope="module")
def classifier_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 examples on 6 devices named by the data, each with its own mix of classes."""
    x, y = _clusters(600, seed=1)
    rng = np.random.default_rng(2)
    # Devices see classes unevenly: device k holds mostly class k % 3.
    device = np.array([f"phone-{(label * 2 + rng.integers(0, 2)) % 6}" for label in y])
    path = tmp_path_factory.mktemp("data") / "clusters.npz"
    np.savez(path, x=x, y=y, device=device)
    return path


def _regression(
    n: int, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5]) + 0.3 + rng.normal(0, 0.1, n)).astype(np.float32)
    devices = [f"site-{int(v > 0) + 2 * int(w > 0)}" for v, w in zip(x[:, 0], x[:, 1], strict=True)]
    return x, y, devices


@pytest.fixture(scope="module")
def regressor_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear regressor compiled with MSE, barely trained."""
    tf.keras.utils.set_random_seed(7)
    inputs = tf.keras.Input((3,), name="readings")
    outputs = tf.keras.layers.Dense(1, name="estimate")(inputs)
    model = tf.keras.Model(inputs, outputs, name="tabular_regressor")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    path = tmp_path_factory.mktemp("regressor") / "regressor.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def regression_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y, devices = _regression(400, seed=3)
    path = tmp_path_factory.mktemp("data") / "readings.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["device", "a", "b", "c", "y"])
        for row, target, device in zip(x, y, devices, strict=True):
            writer.writerow([device, *(f"{v:.6f}" for v in row), f"{target:.6f}"])
    return path


def test_a_tabular_classifier_federates_from_an_npz_with_device_ids(
    classifier_bundle: Path, classifier_data: Path
) -> None:
    config = FleetConfig(
        model=classifier_bundle,
        data=classifier_data,
        # Every device takes part in every round: which devices a round
        # gets does not depend on thread timing.
        per_round=6,
        rounds=5,
        local_epochs=3,
        learning_rate=0.1,
        workers=6,
        seed=0,
    )

    report = run_fleet(config)

    assert report.metric == "accuracy"
    assert report.model["name"] == "tabular_classifier"
    assert report.partition.startswith("natural")
    assert len(report.participation) == 6  # one device per id in the data
    assert [r.state for r in report.rounds] == ["closed"] * 5
    deployed, final = report.scores["deployed"], report.scores["final"]
    # The global model improves on the global test split and on the devices'
    # own held-out data, in loss (the bundle's cross-entropy) and accuracy.
    assert final.global_test["loss"] < deployed.global_test["loss"] - 0.1
    assert final.global_test["accuracy"] > deployed.global_test["accuracy"] + 0.05, (
        deployed,
        final,
    )
    assert final.devices["loss"] < deployed.devices["loss"]
    personal = report.scores["personalised"].devices["accuracy"]
    assert personal >= final.devices["accuracy"] - 1e-9  # a device keeps the better one


@pytest.mark.long(25)
def test_a_regressor_from_a_keras_file_federates_from_a_csv(
    regressor_keras: Path, regression_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.json"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--model",
            str(regressor_keras),
            "--data",
            str(regression_csv),
            "--per-round",
            "3",
            "--rounds",
            "4",
            "--local-epochs",
            "3",
            "--learning-rate",
            "0.05",
            "--report",
            str(out),
            "--plot",
            str(tmp_path / "run.png"),
        ],
    )

    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["metric"] == "mae"
    assert len(report["participation"]) == 4  # site-0 .. site-3
    deployed, final = report["scores"]["deployed"], report["scores"]["final"]
    # Mean absolute error falls on the global test split and on device data.
    assert final["global_test"]["mae"] < 0.5 * deployed["global_test"]["mae"]
    assert final["devices"]["mae"] < deployed["devices"]["mae"]
    assert "global test mae: round 0 (deployed)" in result.output
    assert (tmp_path / "run.png").read_bytes()[:4] == b"\x89PNG"


def test_a_server_federating_another_model_is_refused_by_name_and_weights(
    classifier_bundle: Path, regressor_keras: Path, regression_csv: Path, tmp_path: Path
) -> None:
    with running(
        tmp_path / "server", ["--model", str(classifier_bundle)], tmp_path / "server.log"
    ) as server:
        result = CliRunner().invoke(
            main,
            [
                "simulate",
                "--server",
                server.url,
                "--model",
                str(regressor_keras),
                "--data",
                str(regression_csv),
                "--per-round",
                "2",
                "--rounds",
                "1",
            ],
        )
        # Nothing reached the server: no device enrolled but the observer,
        # no update arrived.
        rounds = requests.get(f"{server.url}/v1/rounds", timeout=10).json()

    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "federates 'tabular_classifier'" in message
    assert "'tabular_regressor'" in message
    assert "hidden/kernel only on the server" in message
    assert "estimate/kernel only in the fleet's model" in message
    assert all(r["updates"] == 0 for r in rounds["rounds"])


def test_with_only_a_server_the_fleet_takes_the_servers_bundle(
    classifier_bundle: Path, classifier_data: Path, tmp_path: Path
) -> None:
    with running(
        tmp_path / "server",
        ["--model", str(classifier_bundle), "--rounds-target", "3", "--rounds-min", "3"],
        tmp_path / "server.log",
    ) as server:
        report = run_fleet(
            FleetConfig(
                server_url=server.url,
                data=classifier_data,
                per_round=3,
                rounds=2,
                workers=3,
                work_dir=tmp_path / "fleet",
            )
        )

    expected = (classifier_bundle / "manifest.sha256").read_text().split()[0]
    assert report.model == {"name": "tabular_classifier", "bundle_id": expected}
    assert (tmp_path / "fleet" / "server-bundle" / "manifest.json").read_bytes() == (
        classifier_bundle / "manifest.json"
    ).read_bytes()
    assert [r.state for r in report.rounds] == ["closed", "closed"]
