"""fedge as a user installs it: the wheel, in a fresh environment outside the checkout.

The wheel is built the way an index would build it (sdist first, then the
wheel from the unpacked sdist), installed with the locked dependencies into a
virtual environment under a temporary directory, and every command runs with
that directory as its working directory, so nothing can import from the
checkout. The npm packages come from the installed ``fedge setup-node``
(npm ci from the packaged lock file, through npm's cache) into a per-user
directory that is private to this test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers.live_server import running

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"


def uv() -> Path:
    """The uv that scripts/setup.sh uses: .tools/bin/uv, else the one on PATH."""
    local = ROOT / ".tools" / "bin" / "uv"
    if local.is_file():
        return local
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build the wheel; scripts/setup.sh installs it")
    return Path(found)


def run(
    command: Sequence[str | Path], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run to completion in its own process group; the whole group is killed on
    a timeout or an interrupt, so nothing it started outlives the test."""
    process = subprocess.Popen(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    with contextlib.suppress(ProcessLookupError):  # anything it left behind
        os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def outside_env(home: Path) -> dict[str, str]:
    """This environment minus anything that points into the checkout or at a
    server setting; the per-user data directory moved under ``home``."""
    leaks = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    env = {k: v for k, v in os.environ.items() if k not in leaks and not k.startswith("FEDGE_")}
    env["XDG_DATA_HOME"] = str(home / "data")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Installed:
    work: Path  # working directory of every command, outside the checkout
    python: Path
    fedge: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    built = run([uv(), "build", "--out-dir", out], cwd=ROOT, env=dict(os.environ))
    assert built.returncode == 0, built.stderr
    return Dist(
        wheel=out / f"fedge-{VERSION}-py3-none-any.whl", sdist=out / f"fedge-{VERSION}.tar.gz"
    )


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("outside")
    env = outside_env(work)
    requirements = work / "requirements.txt"
    export = ["export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"]
    exported = run([uv(), *export, "--output-file", requirements], cwd=ROOT, env=env)
    assert exported.returncode == 0, exported.stderr
    made = run([uv(), "venv", "--python", sys.executable, work / "venv"], cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    python = work / "venv" / "bin" / "python"
    # --no-deps: the lock already resolved the stack (with its overrides), and
    # the requirements pin every package of it.
    added = run(
        [uv(), "pip", "install", "--python", python, "--no-deps", "-r", requirements, dist.wheel],
        cwd=work,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    return Installed(work=work, python=python, fedge=python.with_name("fedge"), env=env)


def test_the_wheel_ships_the_runtime_files_and_no_tests(dist: Dist) -> None:
    names = set(zipfile.ZipFile(dist.wheel).namelist())

    info = f"fedge-{VERSION}.dist-info"
    for needed in (
        "fedge/server/openapi.yaml",
        "fedge/web/__init__.py",
        "fedge/web/node/tfjs_run.mjs",
        "fedge/web/package.json",
        "fedge/web/package-lock.json",
        f"{info}/licenses/LICENSE",
    ):
        assert needed in names, needed
    assert "fedge/server/process.py" not in names
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n]
    assert {n.split("/")[0] for n in names} == {"fedge", info}
    metadata = zipfile.ZipFile(dist.wheel).read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata


def test_the_sdist_has_the_tests_licence_scripts_and_web_files(dist: Dist) -> None:
    prefix = f"fedge-{VERSION}/"
    with tarfile.open(dist.sdist) as archive:
        names = {m.name.removeprefix(prefix) for m in archive.getmembers() if m.isfile()}

    tests_here = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tests").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert tests_here <= names, sorted(tests_here - names)
    for needed in (
        "LICENSE",
        "README.md",
        "docs/index.md",
        "pyproject.toml",
        "uv.lock",
        "scripts/setup.sh",
        "scripts/test.sh",
        "web/node/tfjs_run.mjs",
        "web/package.json",
        "web/package-lock.json",
        "server/openapi.yaml",
    ):
        assert needed in names, needed
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n]
    # A build output (npm pack writes it, in another test, maybe while this builds).
    assert not [n for n in names if n.startswith("web/sdk/dist/")]


def test_installed_fedge_imports_from_its_own_environment(installed: Installed) -> None:
    code = "import fedge.server, fedge.web; print(fedge.server.__file__); print(fedge.web.RUNNER)"

    shown = run([installed.python, "-c", code], cwd=installed.work, env=installed.env, timeout=120)

    assert shown.returncode == 0, shown.stderr
    site = installed.work.resolve() / "venv" / "lib" / "python3.11" / "site-packages" / "fedge"
    paths = [Path(line) for line in shown.stdout.split()]
    assert paths == [site / "server" / "__init__.py", site / "web" / "node" / "tfjs_run.mjs"]


@pytest.mark.long(50)
def test_installed_fedge_converts_to_all_three_targets(installed: Installed) -> None:
    work, fedge, env = installed.work, installed.fedge, installed.env
    probe = "from fedge.converters.targets.tfjs_node import runner_command; runner_command()"

    missing = run([installed.python, "-c", probe], cwd=work, env=env, timeout=120)
    setup = run([fedge, "setup-node"], cwd=work, env=env)
    trained = run([fedge, "train", "--out", "model.keras", "--epochs", "5"], cwd=work, env=env)
    converted = run([fedge, "convert", "model.keras", "--out", "bundle"], cwd=work, env=env)

    # Before setup-node, the checkout's web/node_modules is out of reach.
    assert missing.returncode != 0
    assert "@tensorflow/tfjs is not installed" in missing.stderr
    assert "fedge setup-node" in missing.stderr
    assert setup.returncode == 0, setup.stderr
    assert "installing @tensorflow/tfjs 4.22.0" in setup.stderr
    node_modules = Path(setup.stdout.strip())  # npm's own output went to stderr
    assert node_modules.is_relative_to(work / "data" / "fedge" / "node")
    assert (node_modules / "@tensorflow" / "tfjs" / "package.json").is_file()
    assert trained.returncode == 0, trained.stderr
    assert converted.returncode == 0, converted.stderr
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    assert {"tflite", "tfjs", "coreml"} <= set(manifest["artifacts"])
    for target in ("tflite", "tfjs", "coreml"):
        record = manifest["parity"][target]
        assert record["status"] == "pass", (target, record)
        assert record["top1_agreement"] >= 0.99, (target, record)


def test_installed_fedge_serves_until_stopped(installed: Installed) -> None:
    log = installed.work / "serve.log"

    with running(
        installed.work / "serve-data",
        [],
        log,
        fedge=installed.fedge,
        cwd=installed.work,
        environ=installed.env,
    ) as server:
        health = requests.get(f"{server.url}/healthz", timeout=30)
        process = server.process

    assert health.status_code == 200, health.text
    assert process.poll() is not None
