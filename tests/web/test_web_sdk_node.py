"""The web SDK under Node: ``web/sdk/fedge.js`` with ``@tensorflow/tfjs``
(cpu, as the parity runner uses) against a real ``fedge serve`` of the
tabular classifier. It predicts what Keras predicts, refuses bad input with
typed errors (storing nothing), and joins a round whose update is the
Keras epoch of the same SGD on the same examples."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.wire.update_codec import decode_checkpoint
from fedge.wire.weight_spec import ModelSpec
from tests.helpers.live_server import LiveServer, running
from tests.web.any_models import Built

SCRIPT = Path(__file__).parent / "node" / "sdk_node.mjs"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, any_model: Any
) -> Iterator[tuple[Built, LiveServer]]:
    built = any_model("tabular_classifier")
    root = tmp_path_factory.mktemp("sdk-node")
    args = ["--model", str(built.bundle), "--rounds-target", "1", "--rounds-min", "1"]
    with running(root / "data", args, root / "server.log") as server:
        yield built, server


def test_the_sdk_under_node_predicts_and_joins_a_round(
    served: tuple[Built, LiveServer], tmp_path: Path
) -> None:
    import tensorflow as tf

    built, server = served
    rows = built.rows["features"]
    labels = [0, 1, 2, 1, 0, 2]
    request = {
        "inputs": {"features": rows[:3].tolist()},
        "examples": [
            {"inputs": {"features": r.tolist()}, "label": label}
            for r, label in zip(rows[:6], labels, strict=True)
        ],
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    node = shutil.which("node")
    assert node, "Node is needed for the SDK under Node (scripts/setup.sh installs it)"

    done = subprocess.run(
        [node, str(SCRIPT), server.url, str(path)], capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    model = tf.keras.models.load_model(built.keras)
    expected = model.predict(rows[:3], verbose=0)
    assert np.abs(np.asarray(result["predicted"]["tier"]) - expected).max() < 1e-4
    assert result["down"] == "server_unreachable"
    assert result["bad"] == {
        "unknown_input": "unknown_input",
        "bad_shape": "bad_shape",
        "not_finite": "not_finite",
        "bad_label": "bad_label",
    }
    assert result["storedAfterBad"] == 0
    outcome = result["outcome"]
    assert outcome["status"] == "contributed", outcome
    assert outcome["num_examples"] == 6
    assert result["steps"][-1] == "done"
    # The live model's health (issue 23): numbers on the 6 stored examples,
    # then the server's pace (next_report_at) holds the second call back.
    reported, again = result["health"]
    assert reported["status"] == "reported", reported
    body = reported["body"]
    assert (body["runtime"], body["num_examples"], body["metric"]) == ("tfjs-cpu", 6, "accuracy")
    assert len(body["histogram"]) == 3 and sum(body["histogram"]) == 6
    assert again == {"status": "waiting", "nextReportAt": reported["nextReportAt"]}
    series = requests.get(f"{server.url}/v1/releases/1/health", timeout=30).json()
    # Counted in the open window (or a judged one, if the hour turned meanwhile).
    assert series["open_reports"] + sum(w["devices"] for w in series["windows"]) == 1
    # The round closed on this update: its checkpoint is the base plus the Keras epoch.
    record = requests.get(f"{server.url}/v1/rounds/{outcome['round_id']}", timeout=30).json()
    spec = ModelSpec.from_keras(model)
    device = {"Authorization": f"Bearer {result['token']}"}

    def checkpoint(checkpoint_id: str) -> Any:
        reply = requests.get(
            f"{server.url}/v1/checkpoints/{checkpoint_id}", headers=device, timeout=30
        )
        assert reply.status_code == 200, reply.text
        return decode_checkpoint(reply.content, spec).weights

    base = checkpoint(outcome["base_checkpoint"])
    model.set_weights(spec.values(base))
    config = record["config"]
    model.compile(
        optimizer=tf.keras.optimizers.SGD(config["learning_rate"]),
        loss="sparse_categorical_crossentropy",
    )
    model.fit(
        rows[:6],
        np.asarray(labels),
        batch_size=config["batch_size"],
        epochs=config["local_epochs"],
        shuffle=False,
        verbose=0,
    )
    trained = spec.named([np.asarray(v) for v in model.get_weights()])
    deadline = time.monotonic() + 60
    while record["state"] != "closed" and time.monotonic() < deadline:
        time.sleep(0.2)
        record = requests.get(f"{server.url}/v1/rounds/{outcome['round_id']}", timeout=30).json()
    assert record["state"] == "closed"
    new = checkpoint(record["result_checkpoint"])
    for name in spec.names:
        np.testing.assert_allclose(new[name] - base[name], trained[name] - base[name], atol=2e-6)
