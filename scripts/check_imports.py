"""Check fedge's import contracts (``[tool.importlinter]`` in pyproject.toml).

lint-imports, like mypy, finds packages by import, and in the checkout
``fedge`` is only ``fedge/``: ``fedge.server`` and the other mapped folders
exist only once installed. So this runs it on the view of the package that
``scripts/typecheck.py`` builds, where every mapped folder is in place.

    check_imports.py [lint-imports options]      the contracts; exits 1 if broken
    check_imports.py --graph OUT.json [--view D]  the module import graph, as JSON
                                                  (for tests/test_architecture.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import grimp
from typecheck import ROOT, VIEW, build_view

# {importer: {imported: [line numbers]}}, product modules only.
Graph = dict[str, dict[str, list[int]]]


def lint_imports(view: Path, options: list[str]) -> int:
    lint = Path(sys.executable).with_name("lint-imports")
    # lint-imports puts its working directory first on sys.path: run it in the
    # view, or it would find the checkout's fedge/ (no server, no client_sim).
    command = [str(lint), str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo", *options]
    return subprocess.run(command, cwd=view, check=False).returncode


def import_graph(view: Path) -> Graph:
    """Every import grimp sees, function-local and TYPE_CHECKING ones included."""
    sys.path.insert(0, str(view))
    spec = importlib.util.find_spec("fedge")
    found = list(spec.submodule_search_locations or []) if spec else []
    if found != [str(view / "fedge")]:
        raise SystemExit(f"fedge was found at {found}, not in the view {view}")
    graph = grimp.build_graph("fedge", cache_dir=None)
    return {
        importer: {
            imported: sorted(
                detail["line_number"]
                for detail in graph.get_import_details(importer=importer, imported=imported)
            )
            for imported in sorted(graph.find_modules_directly_imported_by(importer))
        }
        for importer in sorted(graph.modules)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", type=Path, help="write the import graph here, as JSON")
    parser.add_argument("--view", type=Path, default=VIEW, help="where to build the view")
    args, options = parser.parse_known_args()
    view = args.view.resolve()
    build_view(view)
    if args.graph is None:
        return lint_imports(view, options)
    args.graph.write_text(json.dumps(import_graph(view), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
