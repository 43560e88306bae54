"""The notebooks run, say what they claim, and are committed without outputs.

Each notebook is executed top to bottom with nbclient in a fresh IPython
kernel on this environment's Python (a kernel spec written for the test,
so no kernel installed elsewhere on the machine is picked up), with its
working directory and ``TMPDIR`` in the test's own temporary directory.
A notebook ends by printing one ``SUMMARY {json}`` line; the test reads it
and checks the numbers the notebook's text relies on. After the run, no
process of the kernel's session may be left (its servers, release-build
workers and Node runners included), and the notebook must have removed
everything it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STRIP = ROOT / "scripts" / "strip_notebooks.py"
CELL_TIMEOUT_S = 540
KERNEL = "fedge-test-venv"
SUMMARY = "SUMMARY "
AUTOGRAPH_FILES = "__autograph_generated_file"


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def _stream(text: str) -> Any:
    return nbformat.v4.new_output("stream", name="stdout", text=text)  # type: ignore[no-untyped-call]


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _kernel_spec(kernels: Path, tmpdir: Path) -> None:
    """A kernel spec that runs ipykernel on this interpreter."""
    spec = kernels / KERNEL
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fedge test (this .venv)",
        "language": "python",
        "env": {"TMPDIR": str(tmpdir), "TF_CPP_MIN_LOG_LEVEL": "3"},
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))


def _session_processes(session: int) -> list[str]:
    """Processes still running in the given session (the kernel's, which it
    leads), as ``pid: command line``; zombies (exited, not yet reaped) are not."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ProcessLookupError):
            continue
        if state != "Z":
            alive.append(f"{entry.name}: {command.strip()}")
    return alive


def _wait_for_session_end(session: int, timeout_s: float = 20.0) -> list[str]:
    """What is still running in the session once it had ``timeout_s`` to end."""
    deadline = time.monotonic() + timeout_s
    while (alive := _session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def execute(path: Path, work: Path) -> tuple[Any, dict[str, Any]]:
    """Run the notebook; return it executed, and its summary."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    kernels, tmpdir, cwd = work / "kernels", work / "tmp", work / "cwd"
    tmpdir.mkdir()
    cwd.mkdir()
    _kernel_spec(kernels, tmpdir)
    notebook = _read(path)
    manager = KernelManager(
        kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    sessions: list[int] = []

    def note_session(**_: Any) -> None:
        provisioner = manager.provisioner
        pid = getattr(provisioner, "pid", None)
        if pid is not None:
            sessions.append(os.getsid(pid))

    client = NotebookClient(
        notebook,
        km=manager,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(cwd)}},
        on_notebook_start=note_session,
    )
    try:
        # cleanup_kc: shut the kernel down at the end even though the test made
        # its manager. Raises CellExecutionError on the first failing cell.
        client.execute(cleanup_kc=True)
    finally:
        if manager.has_kernel:  # the run failed before nbclient could shut it down
            manager.shutdown_kernel(now=True)
    assert sessions, "the kernel's process was not seen"
    assert _wait_for_session_end(sessions[0]) == [], "the notebook left processes behind"
    # TensorFlow's autograph writes the code it generates as modules in TMPDIR
    # and never removes them (tf 2.14); anything else the notebook must remove.
    left = [p for p in tmpdir.iterdir() if not p.name.startswith(AUTOGRAPH_FILES)]
    assert left == [], "the notebook left files in its temporary directory"
    assert list(cwd.iterdir()) == [], "the notebook wrote into its working directory"
    return notebook, _summary(notebook)


def _summary(notebook: Any) -> dict[str, Any]:
    lines = [
        line[len(SUMMARY) :]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
        for line in output.text.splitlines()
        if line.startswith(SUMMARY)
    ]
    assert len(lines) == 1, f"expected one summary line, found {len(lines)}"
    summary: dict[str, Any] = json.loads(lines[0])
    return summary


def _figures(notebook: Any) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def _is_stripped(notebook: Any) -> bool:
    return all(
        cell.outputs == [] and cell.execution_count is None
        for cell in notebook.cells
        if cell.cell_type == "code"
    )


def test_there_are_the_three_walkthroughs() -> None:
    names = [p.name for p in notebook_paths()]

    assert names == [
        "01_convert_and_compare.ipynb",
        "02_federated_simulation.ipynb",
        "03_robust_and_private.ipynb",
    ]


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_committed_notebook_is_stripped(path: Path) -> None:
    notebook = _read(path)

    nbformat.validate(notebook)
    assert _is_stripped(notebook), f"{path.name} has outputs: run scripts/strip_notebooks.py"
    assert subprocess.run([sys.executable, str(STRIP), "--check", str(path)]).returncode == 0


def test_strip_script_strips_an_executed_notebook(tmp_path: Path) -> None:
    original = NOTEBOOKS / "01_convert_and_compare.ipynb"
    dirty = _read(original)
    first = next(c for c in dirty.cells if c.cell_type == "code")
    first.execution_count = 3
    first.outputs = [_stream("hello\n")]
    first.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
    copy = tmp_path / original.name
    nbformat.write(dirty, copy)  # type: ignore[no-untyped-call]

    check = subprocess.run([sys.executable, str(STRIP), "--check", str(copy)])
    strip = subprocess.run([sys.executable, str(STRIP), str(copy)])

    assert check.returncode == 1
    assert strip.returncode == 0
    assert copy.read_text() == original.read_text()


@pytest.mark.long(51)
def test_01_convert_and_compare(tmp_path: Path) -> None:
    notebook, summary = execute(NOTEBOOKS / "01_convert_and_compare.ipynb", tmp_path)

    assert _figures(notebook) == 1
    assert summary["parity"] == {
        "tflite": "pass",
        "tfjs": "pass",
        "coreml": "pass",
        "tflite_train": "pass",
    }
    assert summary["max_abs_err"]["tflite"] < 1e-4
    assert summary["max_abs_err"]["tfjs"] < 1e-4
    assert all(summary["bytes"][t] > 10_000 for t in ("keras", "tflite", "tfjs", "coreml"))
    latency = summary["latency_us"]
    assert latency["coreml"] is None  # Core ML predicts on macOS only
    assert all(0 < latency[t] < 1e6 for t in ("keras", "tflite", "tfjs"))
    assert summary["test_accuracy"] > 0.8


@pytest.mark.long(170)
def test_02_federated_simulation(tmp_path: Path) -> None:
    notebook, summary = execute(NOTEBOOKS / "02_federated_simulation.ipynb", tmp_path)

    assert _figures(notebook) == 1
    rounds = summary["rounds"]
    assert len(rounds) == 4
    assert all(r["participants"] == 6 for r in rounds)
    assert all(0 < r["accuracy"] <= 1 for r in rounds)
    devices = {name: row["devices' data"] for name, row in summary["scores"].items()}
    # Four rounds of six move the global model towards the devices' own data
    # only a little, by how much depending on which six of the eight devices
    # land first in each round (timing): over 18 runs of this configuration
    # and close variants (one device thread, learning rate 0.1, 3 local
    # epochs), by -0.003 to +0.046 (mean +0.02). So the global model must not lose
    # more than that noise; personalisation must gain far beyond it.
    assert devices["final"] > devices["deployed"] - 0.02
    assert devices["personalised"] > devices["final"] + 0.1
    assert devices["personalised"] > devices["deployed"] + 0.1
    assert sum(summary["participation"]) == 4 * 6
    releases = summary["releases"]
    assert len(releases) == 2  # one after every 2 of the 4 rounds
    # The canary slice is keyed by the server's random secret: 50 % of 8
    # devices may be one device. Devices reported; a decision needs at least
    # the notebook's CANARY_MIN_REPORTS (2) of them.
    assert sum(release["reports"] for release in releases) >= 1
    for release in releases:
        # The canary's sequential test decides only on enough evidence; six
        # devices may leave it collecting (decision None), which is shown.
        assert release["decision"] in ("promote", "rollback", None)
        if release["decision"] is not None:
            assert release["reports"] >= 2
        if release["decision"] == "promote":  # not worse by the margin (0.05)
            assert release["candidate"] >= release["live"] - 0.05
        if release["decision"] == "rollback":
            assert release["candidate"] < release["live"]


@pytest.mark.long(53)
def test_03_robust_and_private(tmp_path: Path) -> None:
    notebook, summary = execute(NOTEBOOKS / "03_robust_and_private.ipynb", tmp_path)

    assert _figures(notebook) == 2
    robust = summary["robust"]
    clean = robust["clean"]["fedavg"]
    boosted = robust["boosted"]
    # Boosted updates break the mean; the median and the trimmed mean hold.
    assert boosted["fedavg"] < clean - 0.15
    assert boosted["median"] > boosted["fedavg"] + 0.15
    assert boosted["trimmed_mean"] > boosted["fedavg"] + 0.15
    assert all(0 < a <= 1 for a in robust["wrong labels"].values())
    dp = summary["dp"]
    noise = [row["noise_multiplier"] for row in dp]
    epsilons = [row["epsilon"] for row in dp]
    assert noise == sorted(noise)
    # More noise, less privacy spent: epsilon finite and strictly decreasing.
    assert all(0 < e < float("inf") for e in epsilons)
    assert epsilons == sorted(epsilons, reverse=True) and len(set(epsilons)) == len(epsilons)
    for row in dp:
        assert row["epsilon"] == pytest.approx(row["expected_epsilon"], rel=1e-9)
    # The most noise costs accuracy against the least.
    assert dp[-1]["accuracy"] < dp[0]["accuracy"]
