"""Expensive test inputs (trained models, converted bundles) built once per
test run and shared by every pytest-xdist worker.

Each xdist worker is a process of its own with session fixtures of its own,
so a session fixture that trains a model would train it once per worker.
:func:`build_once` builds it once per run instead: in a directory under the
run's shared temporary root (the parent of the workers' base temporary
directories; the base directory itself without xdist), named by what it is
and a digest of the inputs that make it, under a file lock. The first worker
to ask builds it in place (files may record their own paths) and marks it
finished last; the others wait on the lock, then use the finished directory. A build that fails
leaves nothing behind, so the next worker tries again and fails the same way.

The directory is fresh for every run (pytest's numbered base temporary
directory), so nothing is ever reused from an older checkout.

Consumers read what it holds and never write into it: another worker may be
reading it at the same time. Test scaffolding, not part of the installed
package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

DONE = ".built"


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary directory that every worker of this run sees."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = root / "shared-inputs"
    out.mkdir(exist_ok=True)
    return out


def digest(inputs: object) -> str:
    """A short content digest of ``inputs`` (JSON-able: names, configs, versions)."""
    text = json.dumps(inputs, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_once(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    inputs: object,
    build: Callable[[Path], None],
    timeout_s: float = 1200,
) -> Path:
    """The directory that ``build(directory)`` fills for ``inputs``, built by
    the first worker that asks and reused by the others."""
    out = shared_root(tmp_path_factory) / f"{name}-{digest([name, inputs])}"
    with FileLock(str(out) + ".lock", timeout=timeout_s):
        if (out / DONE).is_file():
            return out
        shutil.rmtree(out, ignore_errors=True)  # a build that died with its worker
        out.mkdir()
        try:
            build(out)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
        (out / DONE).write_text("")
    return out
