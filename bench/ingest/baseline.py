"""An older commit's ``fedge`` command, to run its server side by side with
this tree's in one benchmark run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The folders pyproject's package-dir maps under fedge.
MAPPED = ("server", "client_sim", "converters", "web")


@contextmanager
def baseline_fedge(rev: str, work: Path) -> Iterator[Path]:
    """A ``fedge`` command running commit ``rev``'s code: a detached git
    worktree of it, its mapped folders put in place as package-dir would,
    ahead of this tree's editable install on the path (so on this virtual
    environment's dependencies)."""
    tree = work / "baseline-tree"
    added = subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), rev],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if added.returncode != 0:
        raise SystemExit(f"--baseline {rev}: {added.stderr.strip()}")
    try:
        view = work / "baseline-view" / "fedge"
        view.mkdir(parents=True)
        for entry in (tree / "fedge").iterdir():
            (view / entry.name).symlink_to(entry)
        for folder in MAPPED:
            if (tree / folder).exists():
                (view / folder).symlink_to(tree / folder)
        script = work / "fedge-baseline"
        script.write_text(
            f"#!/bin/sh\nPYTHONPATH={view.parent} exec {sys.executable} -c "
            '"import sys; from fedge.cli.main import main; sys.exit(main())" "$@"\n'
        )
        script.chmod(0o755)
        yield script
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True
        )


def serves_database(fedge: Path) -> bool:
    """Whether this ``fedge serve`` takes ``--database`` (PostgreSQL)."""
    helped = subprocess.run(
        [str(fedge), "serve", "--help"], capture_output=True, text=True, timeout=300
    )
    return helped.returncode == 0 and "--database" in helped.stdout
