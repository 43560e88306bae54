"""Models that carry state beside their trainable weights: an adapted
``Normalization`` layer (its ``count`` is int64) and ``BatchNormalization``
(moving mean and variance).

Such state is carried as what it is: the server's checkpoints keep its
dtype, and what devices send for it never reaches the aggregate (the
normalization statistics stay those of ``adapt``). Served by a real
``fedge serve`` and federated by the fleet, over HTTP, with the TFLite
training artifact.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.wire.update_codec import Weights, decode_checkpoint
from tests.helpers.live_server import running

CLASSES, FEATURES = 3, 4


def _clusters(n: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Three clusters far from the origin and of unequal scales: what an
    adapted Normalization layer is for."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, size=(CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, size=n)
    x = 5.0 + 2.0 * (centres[y] + rng.normal(0, 1.0, size=(n, FEATURES)))
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def stateful_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier with an adapted Normalization layer and a BatchNorm."""
    work = tmp_path_factory.mktemp("stateful")
    tf.keras.utils.set_random_seed(3)
    x, _ = _clusters(200, seed=1)
    norm = tf.keras.layers.Normalization(name="scale")
    norm.adapt(x)
    inputs = tf.keras.Input((FEATURES,), name="features")
    hidden = tf.keras.layers.Dense(8, name="hidden")(norm(inputs))
    hidden = tf.keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = tf.keras.layers.Activation("relu")(hidden)
    outputs = tf.keras.layers.Dense(CLASSES, activation="softmax", name="species")(hidden)
    model = tf.keras.Model(inputs, outputs, name="stateful_classifier")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    model.save(work / "model.keras")
    bundle = work / "bundle"
    convert(work / "model.keras", bundle, ConvertOptions(targets=("tflite",)))
    return bundle


@pytest.fixture(scope="module")
def batchnorm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier with a BatchNorm layer and no other state."""
    work = tmp_path_factory.mktemp("batchnorm")
    tf.keras.utils.set_random_seed(4)
    inputs = tf.keras.Input((FEATURES,), name="features")
    hidden = tf.keras.layers.Dense(8, name="hidden")(inputs)
    hidden = tf.keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = tf.keras.layers.Activation("relu")(hidden)
    outputs = tf.keras.layers.Dense(CLASSES, activation="softmax", name="species")(hidden)
    model = tf.keras.Model(inputs, outputs, name="batchnorm_classifier")
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    model.save(work / "model.keras")
    bundle = work / "bundle"
    convert(work / "model.keras", bundle, ConvertOptions(targets=("tflite",)))
    return bundle


@pytest.fixture(scope="module")
def cluster_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = _clusters(240, seed=2)
    device = np.array([f"phone-{i % 3}" for i in range(len(y))])
    path = tmp_path_factory.mktemp("data") / "clusters.npz"
    np.savez(path, x=x, y=y, device=device)
    return path


def _checkpoints(data_dir: Path) -> dict[int, Weights]:
    """Every checkpoint the server stored, by the round that made it."""
    found = {}
    for path in (data_dir / "checkpoints").glob("*.safetensors"):
        checkpoint = decode_checkpoint(path.read_bytes())
        found[checkpoint.round_id] = checkpoint.weights
    return found


def _assert_state_kept(data_dir: Path) -> None:
    checkpoints = _checkpoints(data_dir)
    assert len(checkpoints) >= 2, sorted(checkpoints)
    first, last = checkpoints[min(checkpoints)], checkpoints[max(checkpoints)]
    assert first["scale/count"].dtype == np.int64
    assert last["scale/count"].dtype == np.int64
    assert last["scale/count"] == first["scale/count"]
    np.testing.assert_array_equal(last["scale/mean"], first["scale/mean"])
    np.testing.assert_array_equal(last["scale/variance"], first["scale/variance"])
    # The trainable weights did move.
    assert not np.array_equal(last["hidden/kernel"], first["hidden/kernel"])
    assert (last["bn/moving_variance"] > 0).all()


def test_a_normalization_and_batchnorm_model_is_served_and_federated(
    stateful_bundle: Path, cluster_data: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "server"
    with running(
        data_dir,
        ["--model", str(stateful_bundle), "--rounds-target", "3", "--rounds-min", "3"],
        tmp_path / "server.log",
    ) as server:
        report = run_fleet(
            FleetConfig(
                server_url=server.url,
                data=cluster_data,
                per_round=3,
                rounds=1,
                workers=3,
                work_dir=tmp_path / "fleet",
            )
        )

    assert [r.state for r in report.rounds] == ["closed"]
    _assert_state_kept(data_dir)


def test_fedge_simulate_federates_a_normalization_model(
    stateful_bundle: Path, cluster_data: Path, tmp_path: Path
) -> None:
    report = run_fleet(
        FleetConfig(
            model=stateful_bundle,
            data=cluster_data,
            per_round=3,
            rounds=1,
            workers=3,
            work_dir=tmp_path / "fleet",
        )
    )

    assert [r.state for r in report.rounds] == ["closed"]
    assert np.isfinite(report.scores["final"].global_test["loss"])


def _assert_statistics_kept(data_dir: Path) -> None:
    checkpoints = _checkpoints(data_dir)
    assert len(checkpoints) >= 2, sorted(checkpoints)
    first = checkpoints[min(checkpoints)]
    for round_id, weights in checkpoints.items():
        assert (weights["bn/moving_variance"] > 0).all(), round_id
        np.testing.assert_array_equal(weights["bn/moving_variance"], first["bn/moving_variance"])
        np.testing.assert_array_equal(weights["bn/moving_mean"], first["bn/moving_mean"])
    assert not np.array_equal(
        checkpoints[max(checkpoints)]["hidden/kernel"], first["hidden/kernel"]
    )


def test_central_dp_noises_no_batchnorm_statistic(
    batchnorm_bundle: Path, cluster_data: Path, tmp_path: Path
) -> None:
    """Noise of std 5/3 per coordinate would make about a third of the
    variances negative (and the activations NaN): the statistics are not
    clipped, not noised and, under DP, not averaged."""
    data_dir = tmp_path / "server"
    args = ["--model", str(batchnorm_bundle), "--per-round", "3", "--rounds-min", "3"]
    with running(
        data_dir,
        [*args, "--dp-clip", "1.0", "--dp-noise", "5.0"],
        tmp_path / "server.log",
        environ={**os.environ, "FEDGE_DP_INSECURE_TEST_SEED": "1"},
    ) as server:
        report = run_fleet(
            FleetConfig(
                server_url=server.url,
                data=cluster_data,
                per_round=3,
                rounds=1,
                workers=3,
                work_dir=tmp_path / "fleet",
            )
        )

    assert [r.state for r in report.rounds] == ["closed"]
    _assert_statistics_kept(data_dir)


def test_local_batchnorm_statistics_stay_on_the_devices(
    batchnorm_bundle: Path, cluster_data: Path, tmp_path: Path
) -> None:
    """``--local-state bn`` (FedBN): the server's checkpoints keep the
    deployed statistics while the devices train on and keep their own."""
    report = run_fleet(
        FleetConfig(
            model=batchnorm_bundle,
            data=cluster_data,
            per_round=3,
            rounds=2,
            workers=3,
            local_state=("bn",),
            work_dir=tmp_path / "fleet",
        )
    )

    assert [r.state for r in report.rounds] == ["closed", "closed"]
    _assert_statistics_kept(tmp_path / "fleet" / "server")
    assert np.isfinite(report.scores["personalised"].devices["accuracy"])
