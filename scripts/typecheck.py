"""Type-check fedge as it is installed: ``fedge.server`` is ``server/``.

mypy cannot follow the build's package-dir mapping, so this builds a view of
the package in ``.typecheck/fedge`` (links to ``fedge/*`` and to the mapped
top-level folders; copies where links are not allowed), runs mypy on it, and
prints paths as they are in the checkout. Arguments go to mypy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIEW = ROOT / ".typecheck"


def mapped_folders() -> dict[str, str]:
    """``{"fedge.server": "server", ...}`` from pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {k: v for k, v in mapping.items() if k != "fedge"}


def place(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source, target_is_directory=source.is_dir())
    except OSError:  # no symlinks here (Windows without developer mode)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)


def build_view(view: Path = VIEW) -> dict[str, str]:
    """Builds the view; returns {path in the view: path in the checkout}.

    ``view`` elsewhere than ``.typecheck`` lets a test build its own, so that it
    never pulls the folder from under a mypy run.
    """
    shutil.rmtree(view, ignore_errors=True)
    package = view / "fedge"
    package.mkdir(parents=True)
    back = {}
    for entry in (ROOT / "fedge").iterdir():
        if entry.name != "__pycache__":
            place(entry, package / entry.name)
    for dotted, folder in mapped_folders().items():
        sub = dotted.split(".", 1)[1]
        place(ROOT / folder, package / sub)
        back[f".typecheck/fedge/{sub}/"] = f"{folder}/"
    back[".typecheck/fedge/"] = "fedge/"
    return back


def main() -> int:
    back = build_view()
    mypy = Path(sys.executable).with_name("mypy")
    result = subprocess.run(
        [str(mypy), *sys.argv[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(VIEW)},
    )
    for stream, text in ((sys.stdout, result.stdout), (sys.stderr, result.stderr)):
        for line in text.splitlines(keepends=True):
            stream.write(in_checkout(line, back))
    return result.returncode


def in_checkout(line: str, back: dict[str, str]) -> str:
    for view_path, checkout_path in back.items():
        if line.startswith(view_path):
            return checkout_path + line[len(view_path) :]
    return line


if __name__ == "__main__":
    sys.exit(main())
