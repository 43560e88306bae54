"""``fedge demo``: the whole loop in one command, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.live_server import FEDGE

SERVING = "serving until Ctrl-C"


def _read_until(process: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and marker.encode() not in out:
            if process.poll() is not None:
                break
            if selector.select(timeout=1):
                out += os.read(process.stdout.fileno(), 65536)
    finally:
        selector.close()
    text = out.decode(errors="replace")
    assert marker in text, f"no {marker!r} in the demo's output:\n{text}"
    return text


def _address(output: str, label: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith(f"{label}: "))
    return line.split(": ", 1)[1].strip()


def _refuses(url: str) -> bool:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.socket() as probe:
        probe.settimeout(5)
        return probe.connect_ex((host, int(port))) != 0


@pytest.mark.long(26)
def test_demo_federates_releases_serves_the_pages_and_stops_on_ctrl_c(
    tmp_path: Path, digits_keras: Path, digits_bundle: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(digits_keras, work / "model.keras")  # reused, not trained again
    shutil.copytree(digits_bundle, work / "bundle")  # reused: it verifies and has TF.js
    command = [str(FEDGE), "demo", "--no-browser", "--rounds", "2", "--devices", "4"]
    command += ["--per-round", "4", "--port", "0", "--work", str(work)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(tmp_path / "stderr", "wb") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env
        )
    try:
        output = _read_until(process, SERVING, timeout=600)
        assert "model: reusing" in output and "bundle: reusing" in output
        demo_page, dashboard = _address(output, "demo page"), _address(output, "dashboard")
        base = demo_page.rstrip("/")
        for page in (demo_page, dashboard):
            reply = requests.get(page, timeout=30)
            assert reply.status_code == 200 and "text/html" in reply.headers["Content-Type"]
        rounds = requests.get(f"{base}/v1/rounds", timeout=30).json()["rounds"]
        assert sorted(r["round_id"] for r in rounds if r["state"] == "closed")[:2] == [1, 2]
        releases = requests.get(f"{base}/v1/releases", timeout=30).json()["releases"]
        cut = [r for r in releases if r["source"] == "round:2"]
        # 4 devices rarely give the sequential test enough evidence: the demo
        # says so rather than presenting a coin toss as a verdict.
        assert len(cut) == 1 and cut[0]["state"] in ("live", "rolled_back", "canary"), releases
        assert "releases: 1 made" in output
        said = f"release {cut[0]['version']}: "
        assert said in output
        if cut[0]["state"] == "canary":
            assert f"{said}not enough evidence yet" in output

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert _refuses(base)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(work)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
