"""The stages of the whole loop for one model kind, each a table cell.

convert   ``fedge.converters.bundle.convert`` with every target; the cell
          is each target's parity status (and ``tflite_train``'s)
serve     a real ``fedge serve --model BUNDLE`` process answers ``/v1/models``
federate  ``run_fleet`` against that server on the kind's own per-device
          data: the devices' mean metric of the deployed model, the final
          global one and their personalised ones
release   ``POST /v1/admin/releases`` (the current checkpoint) until the
          release is built (``canary``) or ``failed``
predict   ``POST /v1/models/{name}/predict`` against a local TFLite run of
          the served bundle, on the same rows

A stage that fails makes its cell say why (shortly), and the stages after
it that need it say so; the benchmark goes on with the next kind.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.model_kinds_zoo import Arrays

FEDGE = Path(sys.executable).parent / "fedge"
READY = "fedge serving on "
ADMIN_TOKEN = "bench-admin"
PER_ROUND = 3
NOTE_CHARS = 70


@dataclass(frozen=True)
class Cell:
    ok: bool
    text: str

    def __str__(self) -> str:
        return self.text if self.ok else f"FAIL: {self.text}"


def failed(exc: BaseException) -> Cell:
    message = " ".join(str(exc).split())
    return Cell(False, f"{type(exc).__name__}: {message}"[:NOTE_CHARS])


def convert_cell(manifest: Any) -> Cell:
    """Each target's parity status; why, where it is not ``pass``. A target
    that failed fails the cell; one unverified (parity could not be judged)
    does not, but says why."""
    parts, ok = [], True
    for target in ("tflite", "tflite_train", "tfjs", "coreml"):
        parity = manifest.parity.get(target) or {}
        reason = manifest.failures.get(target) or parity.get("reason")
        if not parity and target not in manifest.failures:
            continue
        status = str(parity.get("status", "failed"))
        ok = ok and status in ("pass", "unverified")
        if status != "pass" and reason:
            reason = str(reason).split("parity FAILED: ")[-1].split("parity unverified: ")[-1]
            status += f" ({' '.join(reason.split())[:60]})"
        parts.append(f"{target} {status}")
    skipped = manifest.artifacts.get("tflite", {}).get("training_skipped")
    if skipped:
        parts.append(f"no training artifact ({str(skipped)[:60]})")
    return Cell(ok and bool(parts), "; ".join(parts))


@contextmanager
def serving(bundle: Path, data_dir: Path, log: Path, timeout: float = 180) -> Iterator[str]:
    """``fedge serve --model BUNDLE`` on a free port; yields its URL, then stops it."""
    env = {**os.environ, "FEDGE_ADMIN_TOKEN": ADMIN_TOKEN, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["serve", "--data-dir", str(data_dir), "--port", "0", "--model", str(bundle)]
    args += ["--per-round", str(PER_ROUND), "--rounds-min", str(PER_ROUND)]
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            [str(FEDGE), *args], stdout=subprocess.PIPE, stderr=log_file, env=env
        )
    try:
        yield _wait_ready(process, log, timeout)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline, buffer = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"fedge serve exited {process.returncode}: {tail[0]}")
        if selector.select(timeout=0.5):
            buffer += os.read(process.stdout.fileno(), 4096)
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith(READY):
                    return line.removeprefix(READY).split()[0].rstrip("/")
    raise RuntimeError(f"fedge serve did not start in {timeout:g} s")


def serve_cell(url: str) -> tuple[Cell, str]:
    models = requests.get(f"{url}/v1/models", timeout=30).json()["models"]
    name = str(models[0]["name"])
    return Cell(True, f"/v1/models: {name}"), name


def federate_cell(url: str, data: Path, rounds: int, work: Path) -> Cell:
    from fedge.client_sim.fleet.config import FleetConfig
    from fedge.client_sim.fleet.run import run_fleet

    config = FleetConfig(
        server_url=url,
        data=data,
        rounds=rounds,
        per_round=PER_ROUND,
        local_epochs=2,
        work_dir=work,
        workers=2,
    )
    report = run_fleet(config)
    metric = report.metric
    values = [report.scores[k].devices.get(metric) for k in ("deployed", "final", "personalised")]
    shown = " -> ".join("?" if v is None else f"{v:.3f}" for v in values)
    return Cell(True, f"{metric} {shown}")


def release_cell(url: str, timeout: float = 900) -> Cell:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    reply = requests.post(
        f"{url}/v1/admin/releases",
        json={"notes": "bench", "rollout": 50},
        headers=admin,
        timeout=30,
    )
    if reply.status_code != 202:
        return Cell(False, f"cut answered {reply.status_code}: {reply.text[:50]}")
    version = reply.json()["version"]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        release = requests.get(f"{url}/v1/releases/{version}", headers=admin, timeout=30).json()
        if release["state"] == "failed":
            return Cell(False, " ".join(str(release.get("error")).split())[:NOTE_CHARS])
        if release["state"] != "building":
            seconds = time.monotonic() - started
            return Cell(True, f"v{version} {release['state']} ({seconds:.0f} s)")
        time.sleep(1.0)
    return Cell(False, f"still building after {timeout:g} s")


def predict_cell(url: str, name: str, bundle: Path, rows: Arrays) -> Cell:
    rows = named_inputs(bundle, rows)
    token = requests.post(f"{url}/v1/devices", json={"platform": "bench"}, timeout=30).json()[
        "token"
    ]
    body = {"inputs": {k: v.tolist() for k, v in rows.items()}}
    reply = requests.post(
        f"{url}/v1/models/{name}/predict",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    if reply.status_code != 200:
        return Cell(False, f"predict answered {reply.status_code}: {reply.json().get('code')}")
    served = {k: np.asarray(v, np.float32) for k, v in reply.json()["outputs"].items()}
    local = local_tflite(bundle, rows)
    if sorted(served) != sorted(local):
        if len(served) != len(local):
            return Cell(False, f"outputs {sorted(served)} vs local {sorted(local)}")
        served = dict(zip(sorted(local), (served[k] for k in sorted(served)), strict=True))
    diff = max(float(np.max(np.abs(served[k] - local[k]))) for k in local)
    return Cell(diff <= 1e-5, f"{'equal' if diff <= 1e-5 else 'differs'} (max diff {diff:.1e})")


def named_inputs(bundle: Path, rows: Arrays) -> Arrays:
    """``rows`` by the bundle's input names (``x``: its one input), in their dtypes."""
    from fedge.bundle.manifest import open_bundle

    specs = open_bundle(bundle).manifest.inputs
    return {
        s.name: np.asarray(rows[s.name] if s.name in rows else rows["x"], s.dtype) for s in specs
    }


def local_tflite(bundle: Path, rows: Arrays) -> dict[str, Any]:
    """The bundle's TFLite model run here, on the same rows."""
    import tensorflow as tf

    from fedge.bundle.manifest import open_bundle

    manifest = open_bundle(bundle).manifest
    entry = bundle / manifest.artifact("tflite")["entry"]
    runner = tf.lite.Interpreter(model_path=str(entry)).get_signature_runner()
    return {k: np.asarray(v, np.float32) for k, v in runner(**rows).items()}
