"""``fedge pull`` against a real ``fedge serve`` after a federated round:
the pulled Keras model holds exactly the new checkpoint's weights; a
checkpoint pulled into a directory is a verified bundle of those weights,
converted as the live bundle was (parity passed); and a pulled release is
the release's verified bundle, whose TFLite model predicts as the pulled
Keras model of that release.

``fedge simulate`` and the first ``fedge pull`` run as their own processes
(the console script, as a user runs them); the other pulls run in process
through click's runner, each still over HTTP against the server process:
a process of their own would only import TensorFlow again (about 5 s of
CPU each), which the pull does not depend on."""

from __future__ import annotations

import os
import subprocess
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from fedge.bundle.manifest import open_bundle
from fedge.bundle.weights import read_weights
from fedge.cli.main import main
from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.transport import HttpTransport
from fedge.wire.update_codec import Weights
from fedge.wire.weight_spec import ModelSpec
from tests.helpers.live_server import FEDGE, running
from tests.helpers.release_bundles import build

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def fedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FEDGE), *args], capture_output=True, text=True, timeout=300, env=ENV)


def fedge_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The command run through click's runner, told as a finished process."""
    result = CliRunner().invoke(main, list(args))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["fedge", *args], result.exit_code, result.stdout, stderr)


@pytest.mark.long(70)
def test_pull_after_a_round_gives_the_checkpoint_and_the_release(tmp_path: Path) -> None:
    import tensorflow as tf

    built = build(tmp_path, "first", 0.0)
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(120, 4)).astype(np.float32), y=rng.integers(0, 3, 120))
    serve_args = ["--model", str(built.path), "--per-round", "2", "--rounds-min", "2"]
    with running(tmp_path / "server", serve_args, tmp_path / "server.log") as server:
        ran = fedge(
            "simulate",
            "--server",
            server.url,
            "--data",
            str(data),
            "--devices",
            "4",
            "--rounds",
            "1",
            "--learning-rate",
            "0.5",
        )
        assert ran.returncode == 0, ran.stderr
        name = requests.get(f"{server.url}/v1/models", timeout=30).json()["models"][0]["name"]
        current = requests.get(f"{server.url}/v1/models/{name}", timeout=30).json()
        checkpoint = current["current_checkpoint"]
        client = FedgeClient(HttpTransport(server.url), seed=5)
        client.enrol(platform="observer")
        expected = client.checkpoint(checkpoint).weights
        client.transport.close()

        keras_out = tmp_path / "global.keras"
        pulled = fedge("pull", "--server", server.url, "--out", str(keras_out))
        bundle_out = tmp_path / "global"
        pulled_bundle = fedge_in_process("pull", "--server", server.url, "--out", str(bundle_out))
        chosen_out = tmp_path / "chosen"
        pulled_chosen = fedge_in_process(
            "pull", "--server", server.url, "--checkpoint", checkpoint, "--out", str(chosen_out)
        )
        release_dir = tmp_path / "release1"
        pulled_release = fedge_in_process(
            "pull", "--server", server.url, "--release", "1", "--out", str(release_dir)
        )
        release_keras = tmp_path / "release1.keras"
        pulled_release_keras = fedge_in_process(
            "pull", "--server", server.url, "--release", "1", "--out", str(release_keras)
        )

    assert pulled.returncode == 0, pulled.stderr
    assert checkpoint[:12] in pulled.stdout
    model = tf.keras.models.load_model(keras_out, compile=False)
    got = ModelSpec.from_keras(model).named(model.get_weights())
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)
    # The round changed the model: the pulled weights are not the deployed ones.
    deployed = tf.keras.models.load_model(built.keras_path, compile=False)
    assert not np.array_equal(model.get_weights()[0], deployed.get_weights()[0])

    for result, directory in ((pulled_bundle, bundle_out), (pulled_chosen, chosen_out)):
        assert result.returncode == 0, result.stderr
        assert checkpoint[:12] in result.stdout
        check_rebuilt_bundle(directory, built.path, checkpoint, expected, model)
    assert not list(tmp_path.glob(".fedge-pull-*"))  # the working directories are gone

    assert pulled_release.returncode == 0, pulled_release.stderr
    verified = open_bundle(release_dir)
    assert verified.bundle_id == built.bundle_id
    tflite = release_dir / verified.manifest.artifact("tflite")["entry"]
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    runner = interpreter.get_signature_runner()
    x = rng.normal(size=(1, 4)).astype(np.float32)
    lite = next(iter(runner(x=x).values()))
    assert pulled_release_keras.returncode == 0, pulled_release_keras.stderr
    release_model = tf.keras.models.load_model(release_keras, compile=False)
    np.testing.assert_allclose(lite, release_model(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(lite, deployed(x).numpy(), atol=1e-5)


def check_rebuilt_bundle(
    directory: Path, deployed: Path, checkpoint: str, expected: Weights, model: Any
) -> None:
    """A pulled checkpoint's bundle: verified (every file's sha256, the
    seal), converted as the deployed bundle was with parity passed, holding
    exactly the checkpoint's weights, its TFLite model running them."""
    import tensorflow as tf

    deployed_manifest = open_bundle(deployed).manifest
    rebuilt = open_bundle(directory)
    assert rebuilt.sealed
    manifest = rebuilt.manifest
    assert manifest.name == deployed_manifest.name
    assert manifest.version == f"checkpoint-{checkpoint[:12]}"
    assert sorted(manifest.artifacts) == sorted(deployed_manifest.artifacts)
    assert manifest.failures == {}
    for target in ("tflite", "tflite_train"):
        assert manifest.parity[target]["status"] == "pass", manifest.parity[target]
    bundle_weights = read_weights(directory, manifest)
    assert bundle_weights is not None and set(bundle_weights) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(bundle_weights[key], value)
    # Its TFLite model runs the checkpoint's weights, not the deployed ones.
    lite_path = directory / manifest.artifact("tflite")["entry"]
    runner = tf.lite.Interpreter(model_path=str(lite_path)).get_signature_runner()
    probe = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(
        next(iter(runner(x=probe).values())), model(probe).numpy(), atol=1e-5
    )
