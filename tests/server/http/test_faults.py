"""A full disk while a round closes, and kill -9 between commit and close,
on a real ``fedge serve`` process whose data directory is on a small tmpfs.

The tmpfs lives in a private mount namespace (``unshare --user
--map-root-user --mount``, no privileges needed), held open by a sleeping
process; servers are started inside it with ``nsenter``, and the test fills
and frees the disk through ``/proc/<holder>/root``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.live_server import running
from tests.server.helpers import auth, constant_update, json_at, settled
from tests.server.http.test_http import ROUND_FLAGS, Device

MOUNT = Path("/tmp/fedge-small-disk")


@dataclass
class SmallDisk:
    holder: subprocess.Popen[bytes]

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-U", "-m", "--preserve-credentials"]

    @property
    def outside(self) -> Path:
        """The tmpfs as this process reaches it."""
        return Path(f"/proc/{self.holder.pid}/root") / MOUNT.relative_to("/")

    def fill(self) -> None:
        chunk = b"\0" * (1 << 16)
        with open(self.outside / "filler", "wb", buffering=0) as filler:
            while True:
                try:
                    filler.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
        # Smaller writes take the last partial pages too.
        with (
            open(self.outside / "filler", "ab", buffering=0) as filler,
            contextlib.suppress(OSError),
        ):
            while filler.write(b"\0" * 512):
                pass

    def free(self) -> None:
        (self.outside / "filler").unlink()


def quorum_of_two(model: Path) -> list[str]:
    """Server flags: the tiny model, rounds of 3 that may end with 2."""
    args = ["--model", str(model), *ROUND_FLAGS]
    args[args.index("--rounds-min") + 1] = "2"
    return args


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    MOUNT.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f"mount -t tmpfs -o size=4m tmpfs {MOUNT} && echo ready && exec sleep 3600",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n", "could not mount a tmpfs in a namespace"
        yield SmallDisk(holder)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_full_disk_during_close_then_kill_9_loses_nothing(
    tiny_keras: Path, tmp_path: Path, small_disk: SmallDisk
) -> None:
    data = MOUNT / "data"
    args = quorum_of_two(tiny_keras)
    log = tmp_path / "server.log"
    with running(data, args, log, prefix=small_disk.prefix) as server:
        devices = [Device(server.url) for _ in range(3)]
        tasks = [d.task() for d in devices]
        base = tasks[0]["base_checkpoint"]
        acknowledged = [
            d.upload(server.url, 1, constant_update(1, base, v))
            for d, v in zip(devices[:2], (1.0, 2.0), strict=True)
        ]
        assert [r.status_code for r in acknowledged] == [201, 201]

        small_disk.fill()
        end = requests.post(
            f"{server.url}/v1/admin/rounds/current/end", headers=auth("admin-secret"), timeout=30
        )
        late = devices[2].upload(server.url, 1, constant_update(1, base, 6.0))

        assert end.status_code == 507 and end.json()["code"] == "insufficient_storage"
        assert late.status_code in (409, 507), late.text  # never a 500
        for device, value, first in zip(devices, (1.0, 2.0), acknowledged, strict=False):
            retry = device.upload(server.url, 1, constant_update(1, base, value))
            assert retry.status_code == 200 and retry.json() == first.json()
        current = requests.get(f"{server.url}/v1/rounds/current", timeout=10)
        assert current.status_code == 200 and current.json()["round_id"] == 1
        assert current.json()["close_error"]["attempts"] >= 1
        health = requests.get(f"{server.url}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "failing"
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        assert "fedge_round_close_failing 1" in metrics

        server.kill_hard()  # between the commits and the close

    small_disk.free()
    with running(data, args, log, prefix=small_disk.prefix) as restarted:
        resumed = requests.get(f"{restarted.url}/v1/rounds/current", timeout=10).json()
        assert (resumed["round_id"], resumed["state"], resumed["updates"]) == (1, "open", 2)
        end = requests.post(
            f"{restarted.url}/v1/admin/rounds/current/end",
            headers=auth("admin-secret"),
            timeout=30,
        )
        assert end.status_code == 200
        round_one = settled(json_at(restarted.url), 1)

        assert round_one["state"] == "closed" and round_one["metrics"]["updates"] == 2
        body = requests.get(
            f"{restarted.url}/v1/checkpoints/{round_one['result_checkpoint']}",
            headers=auth(devices[0].token),
            timeout=10,
        ).content
        np.testing.assert_allclose(decode_checkpoint(body).weights["dense/bias"], [1.5, 1.5])
        assert requests.get(f"{restarted.url}/healthz", timeout=10).status_code == 200


def test_the_round_closes_once_the_disk_has_room_again(
    tiny_keras: Path, tmp_path: Path, small_disk: SmallDisk
) -> None:
    data = MOUNT / "data"
    args = quorum_of_two(tiny_keras)
    with running(data, args, tmp_path / "server.log", prefix=small_disk.prefix) as server:
        devices = [Device(server.url) for _ in range(2)]
        tasks = [d.task() for d in devices]
        base = tasks[0]["base_checkpoint"]
        for device, value in zip(devices, (1.0, 3.0), strict=True):
            assert device.upload(server.url, 1, constant_update(1, base, value)).status_code == 201
        small_disk.fill()
        end = requests.post(
            f"{server.url}/v1/admin/rounds/current/end", headers=auth("admin-secret"), timeout=30
        )
        assert end.status_code == 507

        small_disk.free()

        round_one = settled(json_at(server.url), 1, timeout=60)
        assert round_one["state"] == "closed" and round_one["metrics"]["updates"] == 2
        assert "close_error" not in round_one
        assert requests.get(f"{server.url}/healthz", timeout=10).json()["status"] == "ok"
