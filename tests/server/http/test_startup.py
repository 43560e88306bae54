"""Where the first checkpoint comes from, and a server that starts without TensorFlow.

A bundle's weights come from its ``weights.safetensors`` (checked against
the manifest), the default from the reference weights shipped with fedge;
only a Keras file, an old bundle or a non-default seed needs TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask

from fedge.bundle.manifest import MANIFEST_FILE, seal_manifest
from fedge.bundle.weights import WEIGHTS_ARTIFACT, WEIGHTS_FILE
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.reference.weights import REFERENCE_MODEL_NAME, build_initial_weights, shipped_weights
from fedge.server.errors import ConfigurationError
from fedge.server.http.app import create_app, shutdown
from fedge.wire.update_codec import Weights, decode_checkpoint
from fedge.wire.weight_spec import ModelSpec

HEAVY = ("tensorflow", "keras", "tf_keras", "tensorflow_federated")

# Runs `fedge serve` (the CLI's own code path) twice in one fresh
# interpreter, a first start and a restart on the same data directory; a
# thread waits for the ready line, asks /healthz, notes which heavy modules
# the process has imported, then stops the server as SIGTERM does.
SERVE_TWICE = r"""
import io, json, os, signal, sys, threading, urllib.request

from fedge.cli.main import main

READY = "fedge serving on "
HEAVY = tuple(os.environ["HEAVY_MODULES"].split(","))


def heavy():
    return sorted(m for m in HEAVY if m in sys.modules)


class Watch(io.TextIOBase):
    def __init__(self, out):
        self.out, self.url, self.ready = out, None, threading.Event()

    def write(self, text):
        for line in text.splitlines():
            if line.startswith(READY):
                self.url = line[len(READY):].strip()
                self.ready.set()
        return self.out.write(text)

    def flush(self):
        self.out.flush()


def probe(watch, results):
    watch.ready.wait(120)
    if watch.url is None:
        results.append({"error": "no ready line"})
        return
    try:
        with urllib.request.urlopen(watch.url + "/healthz", timeout=30) as reply:
            results.append({"status": reply.status, "heavy": heavy()})
    except Exception as exc:
        results.append({"error": repr(exc)})
    finally:
        os.kill(os.getpid(), signal.SIGTERM)


results = []
for _ in range(2):
    watch = Watch(sys.stdout)
    sys.stdout = watch
    thread = threading.Thread(target=probe, args=(watch, results), daemon=True)
    thread.start()
    try:
        main(["serve", *sys.argv[1:]], standalone_mode=False)
    finally:
        watch.ready.set()
        thread.join(60)
        sys.stdout = watch.out
print("RESULT " + json.dumps({"runs": results, "heavy_at_exit": heavy()}), flush=True)
"""


@dataclass(frozen=True)
class SmallBundle:
    path: Path
    keras_path: Path
    weights: Weights


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> SmallBundle:
    """A bundle of a small 3-class CNN (not the reference model)."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("small")
    tf.keras.utils.set_random_seed(11)
    inputs = tf.keras.Input((8, 8, 1), name="image")
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    outputs = tf.keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = tf.keras.Model(inputs, outputs, name="small_cnn")
    keras_path = root / "small.keras"
    model.save(keras_path)
    options = ConvertOptions(targets=("tflite",), verify=False, tflite_training=False)
    convert(keras_path, root / "bundle", options)
    weights = ModelSpec.from_keras(model).named(model.get_weights())
    return SmallBundle(root / "bundle", keras_path, weights)


@pytest.fixture
def start(tmp_path: Path) -> Any:
    """Apps on a new data directory each, all shut down at the end."""
    apps: list[Flask] = []

    def build(**config: Any) -> Flask:
        settings = {"data_dir": tmp_path / f"data{len(apps)}", "port": 0, **config}
        app = create_app(test_config=settings)
        apps.append(app)
        return app

    try:
        yield build
    finally:
        for app in apps:
            shutdown(app)


def initial_checkpoint(app: Flask) -> tuple[str, Weights]:
    """The model's name and its current checkpoint, through the public API."""
    client = app.test_client()
    checkpoint_id = client.get("/healthz").get_json()["checkpoint"]
    token = client.post("/v1/devices", json={"platform": "test"}).get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    with client.get(f"/v1/checkpoints/{checkpoint_id}", headers=auth) as reply:
        assert reply.status_code == 200, reply.get_json()
        data = reply.get_data()
    (model,) = client.get("/v1/models").get_json()["models"]
    return model["name"], decode_checkpoint(data).weights


def assert_same_weights(got: Weights, expected: Weights) -> None:
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def serve_twice(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run SERVE_TWICE in a fresh interpreter; it is killed if it overruns."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGE_")}
    env["HEAVY_MODULES"] = ",".join(HEAVY)
    command = [sys.executable, "-c", SERVE_TWICE, "--data-dir", str(tmp_path / "data")]
    result = subprocess.run(
        [*command, "--port", "0", *args], capture_output=True, text=True, timeout=300, env=env
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout + result.stderr[-3000:]
    parsed: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return parsed


@pytest.mark.parametrize("source", ["bundle", "default"])
def test_fedge_serve_never_imports_tensorflow(
    source: str, small_bundle: SmallBundle, tmp_path: Path
) -> None:
    args = ["--model", str(small_bundle.path)] if source == "bundle" else []

    report = serve_twice(tmp_path, *args)

    first, restart = report["runs"]
    assert first == {"status": 200, "heavy": []}
    assert restart == {"status": 200, "heavy": []}
    assert report["heavy_at_exit"] == []


def test_the_import_check_sees_tensorflow_when_a_keras_file_needs_it(
    small_bundle: SmallBundle, tmp_path: Path
) -> None:
    # The negative control: a .keras model is loaded with TensorFlow, and
    # the same probe reports it (it stays imported for the restart).
    report = serve_twice(tmp_path, "--model", str(small_bundle.keras_path))

    first, restart = report["runs"]
    assert first == {"status": 200, "heavy": ["keras", "tensorflow"]}
    assert restart["status"] == 200


def test_a_bundle_starts_from_its_weights_file(small_bundle: SmallBundle, start: Any) -> None:
    app = start(model=small_bundle.path)

    name, weights = initial_checkpoint(app)

    assert name == "small_cnn"
    assert_same_weights(weights, small_bundle.weights)


def test_the_default_starts_from_the_shipped_reference_weights(start: Any) -> None:
    app = start()

    name, weights = initial_checkpoint(app)

    assert name == REFERENCE_MODEL_NAME
    assert_same_weights(weights, shipped_weights())


def test_another_seed_builds_the_reference_model_with_its_weights(start: Any) -> None:
    app = start(seed=1)

    name, weights = initial_checkpoint(app)

    assert name == REFERENCE_MODEL_NAME
    assert_same_weights(weights, build_initial_weights(1))
    assert not np.array_equal(weights["conv1/kernel"], shipped_weights()["conv1/kernel"])


def _copy(bundle: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(bundle, to)
    return to


def test_a_modified_weights_file_is_refused(
    small_bundle: SmallBundle, start: Any, tmp_path: Path
) -> None:
    bundle = _copy(small_bundle.path, tmp_path / "bundle")
    data = bytearray((bundle / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0x01
    (bundle / WEIGHTS_FILE).write_bytes(bytes(data))

    with pytest.raises(ConfigurationError, match=r"weights.safetensors does not match its sha256"):
        start(model=bundle)

    assert_same_weights(initial_checkpoint(start(model=small_bundle.path))[1], small_bundle.weights)


def test_weights_that_differ_from_the_manifest_spec_are_refused(
    small_bundle: SmallBundle, start: Any, tmp_path: Path
) -> None:
    bundle = _copy(small_bundle.path, tmp_path / "bundle")
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["weights"][0]["shape"] = [3, 3, 1, 5]  # the file holds (3, 3, 1, 4)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    seal_manifest(bundle)  # as fedge writes it, not a tampered copy

    with pytest.raises(ConfigurationError, match=r"conv/kernel: shape \(3, 3, 1, 4\)"):
        start(model=bundle)


def test_a_bundle_without_a_weights_file_loads_its_keras_model(
    small_bundle: SmallBundle, start: Any, tmp_path: Path
) -> None:
    # A bundle converted before bundles carried their weights.
    bundle = _copy(small_bundle.path, tmp_path / "bundle")
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    del manifest["artifacts"][WEIGHTS_ARTIFACT]
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    seal_manifest(bundle)  # as fedge writes it, not a tampered copy
    (bundle / WEIGHTS_FILE).unlink()

    name, weights = initial_checkpoint(start(model=bundle))

    assert name == "small_cnn"
    assert_same_weights(weights, small_bundle.weights)
