"""Federate a model whose input is integer token ids, with the default runtime.

Token ids are int32 in the model and in the manifest; the simulated devices
must hand them to ``train.tflite`` as int32, not as floats, or the
interpreter refuses the tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions

VOCAB, LENGTH = 20, 6


@pytest.fixture(scope="module")
def token_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("tokens")
    tf.keras.utils.set_random_seed(3)
    tokens = tf.keras.Input((LENGTH,), dtype="int32", name="tokens")
    embedded = tf.keras.layers.Embedding(VOCAB, 4, name="embed")(tokens)
    pooled = tf.keras.layers.GlobalAveragePooling1D(name="pool")(embedded)
    outputs = tf.keras.layers.Dense(2, activation="softmax", name="topic")(pooled)
    model = tf.keras.Model(tokens, outputs, name="token_classifier")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.save(work / "tokens.keras")
    bundle = work / "bundle"
    convert(work / "tokens.keras", bundle, ConvertOptions(targets=("tflite",)))
    return bundle


@pytest.fixture(scope="module")
def token_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Topic 0 uses the low half of the vocabulary, topic 1 the high half."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=120)
    low = rng.integers(0, VOCAB // 2, size=(120, LENGTH))
    x = (low + y[:, None] * (VOCAB // 2)).astype(np.int32)
    path = tmp_path_factory.mktemp("data") / "tokens.npz"
    np.savez(path, x=x, y=y)
    return path


def test_a_token_id_model_federates_with_the_tflite_runtime(
    token_bundle: Path, token_data: Path
) -> None:
    report = run_fleet(
        FleetConfig(
            model=token_bundle,
            data=token_data,
            devices=3,
            per_round=3,
            rounds=2,
            local_epochs=2,
            learning_rate=0.5,
            workers=3,
            seed=0,
        )
    )

    assert [r.state for r in report.rounds] == ["closed", "closed"]
    deployed, final = report.scores["deployed"], report.scores["final"]
    assert final.global_test["loss"] < deployed.global_test["loss"]
