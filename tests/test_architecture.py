"""The shape of the product (issue 20): no import cycles, small folders, small modules.

The layering is written as import-linter contracts in pyproject.toml, which
scripts/test.sh checks (scripts/check_imports.py). import-linter has no
contract for cycles between single modules, so this builds the module graph
with grimp, through the same view of the installed package, and looks here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULES_PER_FOLDER = 15
MAX_LINES_PER_MODULE = 400

# {importer: {imported: [line numbers]}}, as scripts/check_imports.py writes it.
Graph = dict[str, dict[str, list[int]]]


def package_folders() -> dict[str, Path]:
    """``{"fedge.server": ROOT / "server", ...}``: the build's package-dir."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in mapping.items()}


def product_files() -> dict[str, Path]:
    """Every product module by its dotted name, read from the folders."""
    found: dict[str, Path] = {}
    for package, folder in package_folders().items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if "node_modules" in parts:  # npm's, under web/
                continue
            dotted = [package, *parts]
            if dotted[-1] == "__init__":
                dotted.pop()
            found[".".join(dotted)] = path
    return found


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    work = tmp_path_factory.mktemp("imports")
    out = work / "graph.json"
    script = ROOT / "scripts" / "check_imports.py"
    command = [sys.executable, str(script), "--graph", str(out), "--view", str(work / "view")]

    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    loaded: Graph = json.loads(out.read_text())
    return loaded


def cycles(graph: Graph) -> list[list[str]]:
    """The modules that import each other, directly or around a loop, by group.

    Two modules are in one group when each reaches the other; the graph has a
    few hundred modules, so a walk from each of them is quick enough.
    """
    reach = {module: set(walk(graph, module)) for module in graph}
    groups: list[list[str]] = []
    seen: set[str] = set()
    for module in sorted(graph):
        if module in seen:
            continue
        group = sorted(other for other in reach[module] if module in reach[other])
        if group:
            groups.append(group)
            seen.update(group)
    return groups


def walk(graph: Graph, start: str) -> Iterator[str]:
    """The modules ``start`` imports, directly or not (itself only via a loop)."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module in seen or module not in graph:
            continue
        seen.add(module)
        yield module
        todo.extend(graph[module])


def describe(group: list[str], graph: Graph, files: dict[str, Path]) -> str:
    lines = [" <-> ".join(group)]
    for importer in group:
        for imported, line_numbers in graph[importer].items():
            if imported in group:
                where = ", ".join(f"{files[importer].relative_to(ROOT)}:{n}" for n in line_numbers)
                lines.append(f"    {importer} -> {imported}  ({where})")
    return "\n".join(lines)


def test_the_graph_has_every_product_module(graph: Graph) -> None:
    # Without the view grimp would see fedge/ alone, and find no cycle in
    # what it did not see.
    assert set(graph) == set(product_files())


def test_no_import_cycles_between_modules(graph: Graph) -> None:
    files = product_files()

    found = cycles(graph)

    report = "\n".join(describe(group, graph, files) for group in found)
    assert not found, f"{len(found)} import cycle(s):\n{report}"


def test_cycles_names_every_module_of_each_loop() -> None:
    toy: Graph = {
        "a": {"b": [1]},
        "b": {"c": [1], "d": [2]},
        "c": {"a": [3]},
        "d": {"external": [1]},
        "e": {"e": [1]},
        "f": {"a": [1]},
    }

    assert cycles(toy) == [["a", "b", "c"], ["e"]]


def test_no_package_folder_holds_more_than_15_modules() -> None:
    counts: dict[Path, int] = {}
    for path in product_files().values():
        if path.name != "__init__.py":
            counts[path.parent] = counts.get(path.parent, 0) + 1

    crowded = {
        str(folder.relative_to(ROOT)): n
        for folder, n in sorted(counts.items())
        if n > MAX_MODULES_PER_FOLDER
    }

    assert counts, "no product modules found"
    assert not crowded, crowded


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in product_files().values()
    }

    long = {path: n for path, n in sorted(sizes.items()) if n > MAX_LINES_PER_MODULE}

    assert not long, long


def test_every_package_folder_is_built_into_the_wheel() -> None:
    # setuptools builds exactly the packages pyproject lists (package-dir maps
    # the folders): a new folder missing from the list is missing from the
    # wheel, while the editable install of the checkout still imports it.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    packages = {name for name, path in product_files().items() if path.name == "__init__.py"}

    assert packages - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - packages == set(), "these listed packages have no folder"


def test_only_the_session_fixture_opens_a_chromium() -> None:
    """Playwright's sync API keeps its event loop running in the process while
    a browser is open, so a test module that opens a Chromium of its own fails
    ("Sync API inside the asyncio loop") whenever an earlier module on the same
    test worker left the session's ``browser`` open: every test takes that."""
    openers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("*.py")
        if path != Path(__file__).resolve()
        and "with chromium()" in path.read_text(encoding="utf-8")
    )
    assert openers == ["tests/conftest.py"]
