"""Central DP on a secure round: devices clip to ``dp_clip_norm`` themselves
(the server cannot), and the server's DP step takes the unmasked mean as
the mean of that many unit-weight clipped updates."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import requests

from fedge.client_sim.device.client import FedgeClient
from fedge.client_sim.device.secure_round import run_secure_round
from fedge.client_sim.device.transport import HttpTransport
from tests.helpers.live_server import running
from tests.secagg.test_secure_round_http import result_weights
from tests.server.helpers import settled

DEVICES = 3
DP_CLIP = 0.5
CLIP = 0.05


def test_a_secure_round_with_central_dp_releases_the_mean_of_norm_clipped_updates(
    tmp_path: Path,
) -> None:
    config = tmp_path / "server.toml"
    config.write_text("tick_s = 0.05\n[rounds]\nover_selection = 1.0\n")
    args = ["--config", str(config), "--per-round", str(DEVICES), "--rounds-min", "3"]
    args += ["--deadline", "600", "--secure-aggregation", "--secure-clip", str(CLIP)]
    args += ["--dp-clip", str(DP_CLIP), "--dp-noise", "0"]
    with running(tmp_path / "data", args, tmp_path / "server.log") as server:
        clients = [FedgeClient(HttpTransport(server.url)) for _ in range(DEVICES)]
        for client in clients:
            client.enrol()
        tasks = [c.task(idle=True, charging=True, unmetered=True)["task"] for c in clients]
        base = clients[0].checkpoint(tasks[0]["base_checkpoint"]).weights
        names = tasks[0]["secure_aggregation"]["weights"]
        rng = np.random.default_rng(3)
        # Norms far over DP_CLIP: each device must scale its update down.
        deltas = [
            {n: rng.uniform(-0.04, 0.04, base[n].shape).astype(np.float32) for n in names}
            for _ in clients
        ]
        threads = [
            threading.Thread(target=run_secure_round, args=(c, t, d))
            for c, t, d in zip(clients, tasks, deltas, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        record = settled(
            lambda p: requests.get(server.url + p, timeout=30).json(), tasks[0]["round_id"]
        )

        assert tasks[0]["secure_aggregation"]["l2_clip"] == DP_CLIP
        assert record["state"] == "closed", record
        assert record["metrics"]["dp_clip_norm"] == DP_CLIP
        assert record["metrics"]["num_updates"] == DEVICES
        new = result_weights(server, record)
        clipped = []
        for delta in deltas:
            flat = np.concatenate([delta[n].astype(np.float64).reshape(-1) for n in names])
            assert np.linalg.norm(flat) > 2 * DP_CLIP
            clipped.append(flat * (0.999 * DP_CLIP / np.linalg.norm(flat)))
        mean = np.mean(clipped, axis=0)
        got = np.concatenate([(new[n].astype(np.float64) - base[n]).reshape(-1) for n in names])
        step = 2 * CLIP / ((1 << record["metrics"]["secure_params"]["bits"]) - 1)
        np.testing.assert_allclose(got, mean, rtol=0, atol=step + 1e-6)
        for client in clients:
            client.transport.close()
