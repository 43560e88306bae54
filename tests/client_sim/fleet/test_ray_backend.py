"""The Ray backend: the devices in Ray actors, still speaking HTTP to the server.

Each test runs a local Ray (2 CPUs, no dashboard) and stops it, and
checks that none of its processes (``gcs_server``, ``raylet``, workers)
outlives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import ray
import requests
from click.testing import CliRunner

from fedge.cli.main import main
from fedge.client_sim.device.profiles import fleet_profiles
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.ray.backend import run_ray_fleet
from fedge.client_sim.fleet.ray.cluster import Cluster, ray_cluster
from fedge.client_sim.fleet.ray.hosts import HostPlan
from fedge.client_sim.fleet.run import run_fleet
from fedge.wire.update_codec import decode_checkpoint, decode_update
from tests.helpers.live_server import running
from tests.helpers.stored_updates import stored_records

FEDGE = Path(sys.executable).parent / "fedge"
ADMIN = "admin-secret"  # tests.helpers.live_server's

# A local Ray of 2 CPUs is the whole of a 2-core machine, and the killed-actor
# test races a device's 60 s sleep against the other devices' training: with
# parallel workers beside it the sleep ended first (4 updates, not 3). These
# run alone (scripts/test.sh's serial run).
pytestmark = pytest.mark.serial


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp,
    session, ...), or None for a process that is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _processes() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = fields
    return found


def _is_ray(pid: int) -> bool:
    command = _command(pid)
    return command.startswith("ray::") or "/site-packages/ray/" in command


def _ray_descendants(root: int) -> set[int]:
    """Ray's processes under ``root`` (gcs_server, raylet, workers, agents)."""
    children: dict[int, list[int]] = {}
    for pid, fields in _processes().items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if _is_ray(child):
                found.add(child)
    return found


def _wait_gone(pids: set[int], timeout_s: float = 30.0) -> set[int]:
    """The ones of ``pids`` still running after up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    alive = {pid for pid in pids if _stat(pid) is not None}
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {pid for pid in alive if _stat(pid) is not None}
    return alive


@pytest.fixture
def local_ray() -> Iterator[None]:
    """A local Ray of 2 CPUs for the test; afterwards none of its processes is left."""
    with ray_cluster(num_cpus=2) as cluster:
        assert cluster.cpus == 2
        try:
            yield
        finally:
            started = _ray_descendants(os.getpid())
    assert started, "a running local Ray has processes"
    assert not _wait_gone(started), {pid: _command(pid) for pid in started}


def test_ray_gives_the_thread_backends_global_weights(local_ray: None) -> None:
    # Every device in every round (target = number of devices): which
    # devices a round gets does not depend on timing, and each device trains
    # from the same base on the same batches in either backend.
    config = FleetConfig(
        devices=4,
        per_round=4,
        rounds=2,
        seed=3,
        workers=4,
        public_fraction=0.0,
        deadline_s=300.0,
    )

    threads = run_fleet(config)
    on_ray = run_fleet(replace(config, backend="ray", ray_hosts=2))

    assert on_ray.config["backend"] == "ray"
    assert [r.state for r in on_ray.rounds] == ["closed", "closed"]
    assert on_ray.selected == threads.selected == {1: [0, 1, 2, 3], 2: [0, 1, 2, 3]}
    assert on_ray.participation == threads.participation == [2, 2, 2, 2]
    assert set(on_ray.final_weights) == set(threads.final_weights)
    for name, value in threads.final_weights.items():
        # The devices' deltas are bit-identical (same runtime, data, batches,
        # base); the server sums them in float64 in arrival order, which
        # timing decides in both backends, and rounds the mean to float32:
        # at most an ulp apart, carried through one more round of training.
        np.testing.assert_allclose(on_ray.final_weights[name], value, rtol=0, atol=1e-6)
    # The rounds moved the model: equal weights are not the deployed ones twice.
    assert on_ray.scores["final"].global_test != on_ray.scores["deployed"].global_test
    for which in ("deployed", "final", "personalised"):
        for key, score in threads.scores[which].devices.items():
            assert on_ray.scores[which].devices[key] == pytest.approx(score, abs=1e-6)


def _kill_host_of_device_3_after(url: str, updates: int, errors: list[BaseException]) -> None:
    """Once the open round has ``updates`` updates: kill the actor that hosts
    device 3 (it is sleeping before its upload), then end the round as its
    deadline would (the quorum rule decides)."""
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            current = requests.get(f"{url}/v1/rounds/current", timeout=10).json()
            if current["updates"] >= updates:
                break
            time.sleep(0.1)
        assert current["updates"] == updates and current["state"] == "open", current
        names = [n for n in ray.util.list_named_actors() if n.endswith("-host-3")]
        assert len(names) == 1, names
        ray.kill(ray.get_actor(names[0]), no_restart=True)
        reply = requests.post(
            f"{url}/v1/admin/rounds/current/end",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
    except BaseException as exc:
        errors.append(exc)


def test_a_killed_device_actor_is_a_crash_and_the_round_closes_without_it(
    local_ray: None, tmp_path: Path
) -> None:
    # 4 devices, one per actor, against a real `fedge serve`: a round wants 4
    # updates, 3 make a quorum. Device 3 sleeps a minute between training and
    # upload; its actor is killed while the other three's updates are in.
    data_dir = tmp_path / "server"
    args = ["--rounds-target", "4", "--rounds-min", "3", "--deadline", "600"]
    # Plain FedAvg, as the check below computes it: example weights uncapped,
    # no share cap, no norm bound (issue 22's defaults; tested in tests/server/abuse).
    args += ["--max-example-weight", "10000000", "--max-share-multiple", "1000"]
    environ = {**os.environ, "FEDGE_MAX_UPDATE_NORM": "0"}  # the flag takes only a bound
    with running(data_dir, args, tmp_path / "server.log", environ=environ) as server:
        config = FleetConfig(
            devices=4,
            per_round=4,
            rounds=1,
            seed=0,
            workers=4,
            server_url=server.url,
            backend="ray",
            ray_hosts=4,
            work_dir=tmp_path / "fleet",
        )
        profiles = fleet_profiles(4)
        profiles[3] = replace(profiles[3], latency_s=60.0)
        errors: list[BaseException] = []
        killer = threading.Thread(target=_kill_host_of_device_3_after, args=(server.url, 3, errors))
        killer.start()
        try:
            report = run_ray_fleet(config, profiles=profiles)
        finally:
            killer.join()
        assert not errors, errors
        shown = requests.get(f"{server.url}/v1/rounds/{report.rounds[0].round_id}").json()

    (round_report,) = report.rounds
    assert round_report.state == shown["state"] == "closed"
    # The round holds exactly the three updates it received, once each.
    assert round_report.participants == shown["updates"] == shown["metrics"]["updates"] == 3
    assert report.selected == {round_report.round_id: [0, 1, 2]}
    assert report.participation == [1, 1, 1, 0]
    assert report.crashes == 1  # device 3, lost with its actor
    stored = stored_records(data_dir / "updates", round_report.round_id)
    updates = [decode_update(record) for record in stored]
    assert len(updates) == 3
    assert sum(u.meta.num_examples for u in updates) == shown["metrics"]["examples"]
    # FedAvg: the new model is the base plus the example-weighted mean of those three.
    (base_file,) = data_dir.rglob(f"{shown['base_checkpoint']}.safetensors")
    base = decode_checkpoint(base_file.read_bytes()).weights
    total = sum(u.meta.num_examples for u in updates)
    for name, value in base.items():
        mean = sum(u.meta.num_examples * u.deltas[name].astype(np.float64) for u in updates)
        expected = value + mean / total
        np.testing.assert_allclose(report.final_weights[name], expected, rtol=0, atol=1e-6)


def test_simulate_cli_runs_a_fleet_on_a_local_ray_and_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    # Its own session: every process it starts (Ray's included) is in it.
    process = subprocess.Popen(
        [
            str(FEDGE),
            "simulate",
            "--backend",
            "ray",
            "--devices",
            "4",
            "--per-round",
            "2",
            "--rounds",
            "2",
            "--public-fraction",
            "0",
            # Round 1 opens with the server: long enough for Ray to start.
            "--deadline",
            "300",
            "--report",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=420)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    left = {pid for pid, fields in _processes().items() if int(fields[3]) == process.pid}

    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    report = json.loads(out.read_text())
    assert report["config"]["backend"] == "ray"
    assert [r["state"] for r in report["rounds"]] == ["closed", "closed"]
    assert all(r["participants"] >= 2 for r in report["rounds"])
    assert sum(report["participation"]) >= 4
    assert not _wait_gone(left), {pid: _command(pid) for pid in left}


def test_hosts_default_to_one_per_cpu_and_share_the_cpus_when_more() -> None:
    two_cpus = Cluster(cpus=2.0, local=True)

    default = HostPlan.of(devices=10, cluster=two_cpus, hosts=None, workers=8)
    four = HostPlan.of(devices=10, cluster=two_cpus, hosts=4, workers=8)
    one_device = HostPlan.of(devices=1, cluster=two_cpus, hosts=None, workers=8)

    assert default == HostPlan(hosts=2, cpus_per_host=1.0, threads_per_host=4)
    assert four == HostPlan(hosts=4, cpus_per_host=0.5, threads_per_host=2)
    assert one_device == HostPlan(hosts=1, cpus_per_host=1.0, threads_per_host=8)


def test_without_ray_installed_the_backend_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed

    result = CliRunner().invoke(
        main, ["simulate", "--backend", "ray", "--devices", "2", "--per-round", "2"]
    )

    assert result.exit_code == 1
    assert "pip install 'fedge[ray]'" in result.output


def test_address_without_the_ray_backend_is_refused() -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--address", "auto", "--devices", "2", "--per-round", "2"]
    )

    assert result.exit_code != 0
    assert "--backend ray" in result.output
