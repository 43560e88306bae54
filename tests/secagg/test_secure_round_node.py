"""Python devices and the page's WebCrypto module (under Node) mask each
other in one secure round of a real ``fedge serve --secure-aggregation``:
the same wire format, and the new model is plain FedAvg of everyone's
clipped deltas within the quantisation error."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.secagg.live_round import join, secure_round, uniform_deltas
from tests.secagg.test_secure_round_http import (
    CLIP,
    assert_fedavg_within_quantisation,
    expected_fedavg,
    result_weights,
)

SCRIPT = Path(__file__).parents[1] / "web" / "node" / "secagg_node.mjs"
PYTHON_DEVICES = 4


def test_python_devices_and_a_webcrypto_device_complete_one_secure_round(
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    assert node, "Node is needed (scripts/setup.sh installs it)"
    args = ["--secure-clip", str(CLIP), "--secure-stage-s", "5"]
    with secure_round(tmp_path, PYTHON_DEVICES + 1, PYTHON_DEVICES, args) as setup:
        names = setup.names
        deltas = uniform_deltas(setup, PYTHON_DEVICES + 1, 2 * CLIP, seed=27)
        given = tmp_path / "deltas.json"
        given.write_text(json.dumps({n: deltas[-1][n].reshape(-1).tolist() for n in names}))
        browser_like = subprocess.Popen(
            [node, str(SCRIPT), setup.server.url, str(given)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            threads = setup.run(deltas)
            out, err = browser_like.communicate(timeout=120)
            join(threads)
        finally:
            if browser_like.poll() is None:
                browser_like.kill()
                browser_like.wait()
        assert browser_like.returncode == 0, err[-2000:]
        webcrypto = json.loads(out.strip().splitlines()[-1])
        record = setup.closed()

        assert webcrypto["steps"] == ["keys", "shares", "masked", "unmask"]
        assert record["state"] == "closed", record
        assert record["metrics"]["updates"] == PYTHON_DEVICES + 1
        assert_fedavg_within_quantisation(
            result_weights(setup.server, record), expected_fedavg(setup.base, deltas), record
        )


pytestmark = pytest.mark.timeout(300)
