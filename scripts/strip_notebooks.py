"""Strip notebooks for git: no outputs, no execution counts, no run metadata.

    .venv/bin/python scripts/strip_notebooks.py              # every notebooks/*.ipynb, in place
    .venv/bin/python scripts/strip_notebooks.py --check      # exit 1 if any is not stripped
    .venv/bin/python scripts/strip_notebooks.py PATH.ipynb   # only these

The notebooks are executed by the test suite (``tests/test_notebooks.py``),
so committed outputs would only go stale and bloat the history. Stripping
keeps the sources, the cell ids and the notebook's kernel and language
metadata, and drops everything a run adds: outputs, execution counts, and
cell or notebook metadata that records the run (timings, widget state,
collapsed/scrolled views).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Notebook-level metadata worth keeping; everything else is from a run.
KEPT_METADATA = ("kernelspec", "language_info")
KEPT_LANGUAGE_INFO = ("name",)


def strip(notebook: Any) -> Any:
    """The notebook without outputs, execution counts and run metadata (modified in place)."""
    for cell in notebook.cells:
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    metadata = {k: notebook.metadata[k] for k in KEPT_METADATA if k in notebook.metadata}
    if "language_info" in metadata:
        info = metadata["language_info"]
        metadata["language_info"] = {k: info[k] for k in KEPT_LANGUAGE_INFO if k in info}
    notebook.metadata = metadata
    return notebook


def stripped_text(path: Path) -> str:
    """The file's text as it should be committed."""
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    return nbformat.writes(strip(notebook)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if dirty")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    dirty = []
    for path in paths:
        text = stripped_text(path)
        if path.read_text() == text:
            continue
        dirty.append(path)
        if not args.check:
            path.write_text(text)
    for path in dirty:
        print(f"{'not stripped' if args.check else 'stripped'}: {path}")
    return 1 if dirty and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
