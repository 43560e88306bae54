"""Central DP on a secure round: devices clip to ``dp_clip_norm`` themselves
(the server cannot), and the server's DP step takes the unmasked mean as
the mean of that many unit-weight clipped updates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.secagg.live_round import join, secure_round, uniform_deltas
from tests.secagg.test_secure_round_http import result_weights

DEVICES = 3
DP_CLIP = 0.5
CLIP = 0.05


def test_a_secure_round_with_central_dp_releases_the_mean_of_norm_clipped_updates(
    tmp_path: Path,
) -> None:
    args = ["--secure-clip", str(CLIP), "--dp-clip", str(DP_CLIP), "--dp-noise", "0"]
    with secure_round(tmp_path, DEVICES, DEVICES, args) as setup:
        # Norms far over DP_CLIP: each device must scale its update down.
        deltas = uniform_deltas(setup, DEVICES, 0.04, seed=3)
        join(setup.run(deltas))
        record = setup.closed()
        base, names = setup.base, setup.names

        assert setup.tasks[0]["secure_aggregation"]["l2_clip"] == DP_CLIP
        assert record["state"] == "closed", record
        assert record["metrics"]["dp_clip_norm"] == DP_CLIP
        assert record["metrics"]["num_updates"] == DEVICES
        new = result_weights(setup.server, record)
        clipped = []
        for delta in deltas:
            flat = np.concatenate([delta[n].astype(np.float64).reshape(-1) for n in names])
            assert np.linalg.norm(flat) > 2 * DP_CLIP
            clipped.append(flat * (0.999 * DP_CLIP / np.linalg.norm(flat)))
        mean = np.mean(clipped, axis=0)
        got = np.concatenate([(new[n].astype(np.float64) - base[n]).reshape(-1) for n in names])
        step = 2 * CLIP / ((1 << record["metrics"]["secure_params"]["bits"]) - 1)
        np.testing.assert_allclose(got, mean, rtol=0, atol=step + 1e-6)
