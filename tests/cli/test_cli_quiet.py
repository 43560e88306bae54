"""A new user's first screen: fedge's lines, not TensorFlow's and
coremltools' import-time notices; real errors still show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

FEDGE = Path(sys.executable).with_name("fedge")
# Notices every run printed before fedge's first line (none is about the user's model).
NOISE = (
    "scikit-learn version",  # coremltools, at import
    "has not been tested with coremltools",
    "Failed to load _ML",  # coremltools' macOS-only proxies, on Linux
    "TensorFlow Decision Forests",  # imported by tensorflowjs
    "pkg_resources is deprecated",  # tensorflow_hub, imported by tensorflowjs
    "WARNING:tensorflow:",
    "WARNING:absl:",
    "WARNING:root:",
)


def run_fedge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [str(FEDGE), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tf.keras.utils.set_random_seed(30)
    inputs = tf.keras.Input((4,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="y")(inputs), name="tiny")
    model.compile(optimizer="sgd", loss="mse")  # Keras warns about metrics when it loads this
    path = tmp_path_factory.mktemp("quiet") / "tiny.keras"
    model.save(path)
    return path


@pytest.mark.long(26)
def test_convert_shows_fedge_and_not_the_libraries(tiny_model: Path) -> None:
    done = run_fedge(
        "convert",
        str(tiny_model),
        "--out",
        "bundle",
        "--targets",
        "tfjs,coreml",
        "--no-verify",
        cwd=tiny_model.parent,
    )

    assert done.returncode == 0, done.stderr
    noisy = [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)]
    assert noisy == []
    assert "bundle tiny v1" in done.stdout  # fedge's own summary


def test_real_errors_still_show(tmp_path: Path) -> None:
    (tmp_path / "broken.keras").write_bytes(b"not a model")

    done = run_fedge("convert", "broken.keras", "--out", "bundle", cwd=tmp_path)

    assert done.returncode == 1
    assert "Error:" in done.stderr and "broken.keras" in done.stderr
    assert not (tmp_path / "bundle").exists()
