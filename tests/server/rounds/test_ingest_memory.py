"""An open round's memory stays O(model) + O(devices) over HTTP uploads:
nothing of an accepted update (its body, its tensors) is kept after its
receipt. The server's RSS still rises while updates arrive; that is
malloc keeping freed buffers (bench/reports/ingest.md), which tracemalloc
does not count and this test does not measure."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np

from fedge.server.http.app import InitialModel, create_app, shutdown
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from fedge.wire.weight_spec import ModelSpec, WeightSpec
from tests.server.helpers import OCTET, auth

SHAPES = {"dense/kernel": (64, 1000), "dense/bias": (1000,)}  # 260 KB updates
UPLOADS = 120
WARM = 20
# Each device's entries (the round's sum, the rate limits): about 0.5 KiB
# measured; one update kept would be 260 KiB.
BOUND_PER_UPDATE = 8 * 1024


def test_uploads_keep_no_per_update_memory(tmp_path: Path) -> None:
    spec = ModelSpec(tuple(WeightSpec(name, shape, "float32") for name, shape in SHAPES.items()))
    app = create_app(
        test_config={
            "data_dir": tmp_path / "data",
            "admin_token": "admin-secret",
            "port": 0,
            "rounds": {
                "target_participants": UPLOADS + 1,
                "min_participants": 1,
                "deadline_s": 3600.0,
                "over_selection": 1.0,
            },
        },
        initial=InitialModel(
            name="wide",
            specs=spec,
            weights={name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()},
        ),
    )
    try:
        client = app.test_client()
        rng = np.random.default_rng(0)
        deltas = {n: rng.normal(0, 0.01, s).astype(np.float32) for n, s in SHAPES.items()}
        uploads = []
        for index in range(UPLOADS):
            token = client.post("/v1/devices", json={}).get_json()["token"]
            task = client.post("/v1/tasks", json={}, headers=auth(token)).get_json()["task"]
            meta = UpdateMeta(task["round_id"], task["base_checkpoint"], 10 + index)
            uploads.append((token, task["upload_url"], encode_update(Update(meta, deltas))))

        def upload(index: int) -> None:
            token, url, body = uploads[index]
            reply = client.post(url, data=body, content_type=OCTET, headers=auth(token))
            assert reply.status_code == 201, reply.get_data()

        for index in range(WARM):
            upload(index)
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for index in range(WARM, UPLOADS):
                upload(index)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert client.get("/v1/rounds/1").get_json()["updates"] == UPLOADS

        # The encoded bodies are the test's own, allocated before tracing began.
        assert (after - before) / (UPLOADS - WARM) < BOUND_PER_UPDATE
    finally:
        shutdown(app)
