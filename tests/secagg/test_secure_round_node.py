"""Python devices and the page's WebCrypto module (under Node) mask each
other in one secure round of a real ``fedge serve --secure-aggregation``:
the same wire format, and the new model is plain FedAvg of everyone's
clipped deltas within the quantisation error."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.secure_round import run_secure_round
from fedge.client_sim.device.transport import HttpTransport
from tests.helpers.live_server import running
from tests.secagg.test_secure_round_http import (
    CLIP,
    assert_fedavg_within_quantisation,
    expected_fedavg,
    result_weights,
)
from tests.server.helpers import settled

SCRIPT = Path(__file__).parents[1] / "web" / "node" / "secagg_node.mjs"
PYTHON_DEVICES = 4


def test_python_devices_and_a_webcrypto_device_complete_one_secure_round(
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    assert node, "Node is needed (scripts/setup.sh installs it)"
    config = tmp_path / "server.toml"
    config.write_text("tick_s = 0.05\n[rounds]\nover_selection = 1.0\n")
    args = ["--config", str(config), "--per-round", str(PYTHON_DEVICES + 1)]
    args += ["--rounds-min", "3", "--deadline", "600", "--secure-aggregation"]
    args += ["--secure-clip", str(CLIP), "--secure-stage-s", "5"]
    with running(tmp_path / "data", args, tmp_path / "server.log") as server:
        clients = [FedgeClient(HttpTransport(server.url)) for _ in range(PYTHON_DEVICES)]
        for client in clients:
            client.enrol()
        tasks = [c.task(idle=True, charging=True, unmetered=True)["task"] for c in clients]
        base = clients[0].checkpoint(tasks[0]["base_checkpoint"]).weights
        names = tasks[0]["secure_aggregation"]["weights"]
        rng = np.random.default_rng(27)
        deltas = [
            {n: rng.uniform(-2 * CLIP, 2 * CLIP, base[n].shape).astype(np.float32) for n in names}
            for _ in range(PYTHON_DEVICES + 1)
        ]
        given = tmp_path / "deltas.json"
        given.write_text(json.dumps({n: deltas[-1][n].reshape(-1).tolist() for n in names}))
        browser_like = subprocess.Popen(
            [node, str(SCRIPT), server.url, str(given)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            threads = [
                threading.Thread(target=run_secure_round, args=(c, t, d))
                for c, t, d in zip(clients, tasks, deltas, strict=False)
            ]
            for thread in threads:
                thread.start()
            out, err = browser_like.communicate(timeout=120)
            for thread in threads:
                thread.join(timeout=60)
        finally:
            if browser_like.poll() is None:
                browser_like.kill()
                browser_like.wait()
        assert browser_like.returncode == 0, err[-2000:]
        webcrypto = json.loads(out.strip().splitlines()[-1])
        record = settled(
            lambda p: requests.get(server.url + p, timeout=30).json(), tasks[0]["round_id"]
        )

        assert webcrypto["steps"] == ["keys", "shares", "masked", "unmask"]
        assert record["state"] == "closed", record
        assert record["metrics"]["updates"] == PYTHON_DEVICES + 1
        assert_fedavg_within_quantisation(
            result_weights(server, record), expected_fedavg(base, deltas), record
        )
        for client in clients:
            client.transport.close()


pytestmark = pytest.mark.timeout(300)
