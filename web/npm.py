"""``fedge setup-node``: install the npm packages that the wheel does not carry.

It runs ``npm ci`` on a copy of the packaged ``package.json`` and
``package-lock.json``, so a normal install gets exactly the packages (and
integrity hashes) that the git checkout's ``web/`` pins. npm's own cache
and registry settings apply; nothing else is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fedge.web import (
    NODE_MODULES_ENV,
    PACKAGE_JSON,
    PACKAGE_LOCK,
    NodePackagesError,
    find_node_modules,
    has_tfjs,
    tfjs_version,
)

MIN_NODE_MAJOR = 18  # package.json's "engines"
NODE_HINT = (
    "install Node.js >= 18 with npm (https://nodejs.org, or your system's packages: "
    "`apt install nodejs npm` on Debian), then run `fedge setup-node` again"
)


def tools() -> tuple[str, str]:
    """Paths of ``node`` and ``npm``; a clear error when either is missing or too old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise NodePackagesError(f"{missing} not found on PATH; {NODE_HINT}")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        raise NodePackagesError(f"node {version or '(unknown version)'} is too old; {NODE_HINT}")
    return node, npm


def _stderr_fd() -> int | None:
    """This process's stderr for a child, or None (inherit) where it has no
    file descriptor (click's test runner)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def install(prefix: Path, say: Callable[[str], None]) -> Path:
    """``npm ci`` into ``prefix`` (which gets ``node_modules/``); returns that directory.

    npm's output goes to this process's stderr, as its progress, so that
    stdout carries only what the caller prints (``fedge setup-node``: the path).
    """
    _, npm = tools()
    prefix.mkdir(parents=True, exist_ok=True)
    for source in (PACKAGE_JSON, PACKAGE_LOCK):
        target = prefix / source.name
        if not (target.exists() and target.samefile(source)):
            shutil.copyfile(source, target)
    modules = prefix.resolve() / "node_modules"
    say(
        f"installing @tensorflow/tfjs {tfjs_version()} and its dependencies into {modules} "
        "(npm ci, from fedge's package-lock.json)"
    )
    started = time.monotonic()
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=prefix,
        stdin=subprocess.DEVNULL,
        stdout=_stderr_fd(),
    )
    if done.returncode != 0:
        raise NodePackagesError(
            f"npm ci exited {done.returncode} in {prefix}; npm's messages above say why"
        )
    if not has_tfjs(modules):
        raise NodePackagesError(f"npm ci finished, but {modules} has no @tensorflow/tfjs")
    say(f"installed in {time.monotonic() - started:.0f} s")
    try:
        used = find_node_modules()
    except NodePackagesError:
        used = None
    if used is None:
        say(f"note: fedge does not look there; set {NODE_MODULES_ENV}={modules} so it does")
    elif used.resolve() != modules:
        say(f"note: fedge finds {used} first; set {NODE_MODULES_ENV}={modules} to use this one")
    return modules
