"""Writes ``data/`` here: a data directory as fedge's release 3 leaves it
(schema version 3 in PRAGMA user_version, no schema_version table), for
tests/server/storage/test_migrations.py. Run it with a checkout of that
release installed (its ``fedge``), from this repository's root:

    git archive base4 | tar -x -C /tmp/release3 && (cd /tmp/release3 && bash scripts/setup.sh)
    .venv/bin/python -m tests.server.storage.release3.make /tmp/release3/.venv/bin/fedge

Release 3's server runs one round of three devices to its close and takes
one update of round 2; then it stops. The SQLite file is kept as its SQL
text (``fedge.sql``, with the user_version line SQLite's dump leaves out),
the devices' tokens and the model file it was started with (the data
directory names it: a test starting a server on the copy puts its own
model's path in its place) in ``made.json``; the blobs are kept as they are.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.helpers.live_server import running
from tests.server.helpers import constant_update, json_at, settled
from tests.server.http.test_http import ROUND_FLAGS, Device

HERE = Path(__file__).resolve().parent


def tiny_keras(path: Path) -> Path:
    import tensorflow as tf

    inputs = tf.keras.Input((2,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="dense")(inputs), name="tiny")
    model.set_weights([np.zeros((2, 2), np.float32), np.zeros(2, np.float32)])
    model.save(path)
    return path


def main(fedge: Path) -> None:
    out = HERE / "data"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = root / "data"
        model = tiny_keras(root / "tiny.keras")
        args = ["--model", str(model), *ROUND_FLAGS]
        with running(data, args, root / "log", fedge=fedge) as server:
            devices = [Device(server.url) for _ in range(3)]
            tasks = [d.task() for d in devices]  # every device takes its seat
            base = tasks[0]["base_checkpoint"]
            for device, value in zip(devices, (1.0, 2.0, 6.0), strict=True):
                assert device.upload(server.url, 1, constant_update(1, base, value)).ok
            closed = settled(json_at(server.url), 1)
            assert closed["state"] == "closed"
            base = devices[0].task()["base_checkpoint"]
            assert devices[0].upload(server.url, 2, constant_update(2, base, 3.0)).ok
        with contextlib.closing(sqlite3.connect(data / "fedge.sqlite3")) as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            dump = "\n".join(conn.iterdump())
        for name in ("fedge.sqlite3", "fedge.sqlite3-wal", "fedge.sqlite3-shm", "lock"):
            (data / name).unlink(missing_ok=True)
        shutil.copytree(data, out)
        (out / "fedge.sql").write_text(f"{dump}\nPRAGMA user_version = {version};\n")
        made = {
            "model": str(model),
            "devices": [{"device_id": d.id, "token": d.token} for d in devices],
        }
        (HERE / "made.json").write_text(json.dumps(made, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
