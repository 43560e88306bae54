"""The web SDK as an npm package: ``npm pack`` in ``web/sdk/`` builds it
(``build.mjs``, package.json's prepack) into a tarball that carries every
module ``fedge.js`` imports, and an app that installs that tarball imports
the SDK by its name under Node and predicts what Keras predicts against a
real ``fedge serve``, refusing bad input with typed errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

from tests.helpers.live_server import LiveServer, running
from tests.web.any_models import Built

SDK_DIR = Path(__file__).resolve().parents[2] / "web" / "sdk"
SCRIPT = Path(__file__).parent / "node" / "sdk_node.mjs"
# A static import's or re-export's specifier (the modules use no dynamic import()).
IMPORT = re.compile(
    r"""^\s*(?:(?:import|export)\b.*?\bfrom|\}\s*from|import)\s*["']([^"']+)["']""", re.M
)


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """``npm pack`` of web/sdk (its prepack builds dist/): the listing and the tarball."""
    npm = shutil.which("npm")
    assert npm, "npm is needed to pack the SDK (scripts/setup.sh installs Node)"
    out = tmp_path_factory.mktemp("sdk-pack")
    done = subprocess.run(
        [npm, "pack", "--json", "--pack-destination", str(out)],
        cwd=SDK_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The prepack script's own lines come first; the JSON listing follows.
    (listing,) = json.loads(done.stdout[done.stdout.index("[\n") :])
    return listing, out / listing["filename"]


def imported_files(root: Path, entry: str) -> set[str]:
    """Every file reachable from ``entry`` by relative imports, as package paths."""
    seen: set[str] = set()
    pending = [entry]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        source = (root / name).read_text()
        for spec in IMPORT.findall(source):
            assert spec.startswith("./"), f"{name} imports {spec}, outside the package"
            pending.append(str(PurePosixPath(name).parent / spec[2:]))
    return seen


def test_the_tarball_carries_every_module_fedge_js_imports(
    packed: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    listing, tarball = packed
    files = {f["path"] for f in listing["files"]}
    package = json.loads((SDK_DIR / "package.json").read_text())

    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "package"
    main = package["exports"]["."]["default"].removeprefix("./")
    needed = imported_files(root, main)

    assert needed <= files, needed - files
    assert {"dist/fedge.js", "dist/shared/normalization_layer.js", "fedge.d.ts"} <= files
    assert package["exports"]["."]["types"].removeprefix("./") in files
    # Nothing from the checkout's tests, sources or build tools rides along.
    top = {"README.md", "fedge.d.ts", "package.json"}
    assert all(f.startswith("dist/") or f in top for f in files)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, any_model: Any
) -> Iterator[tuple[Built, LiveServer]]:
    built = any_model("tabular_classifier")
    root = tmp_path_factory.mktemp("sdk-package")
    args = ["--model", str(built.bundle), "--rounds-target", "1", "--rounds-min", "1"]
    with running(root / "data", args, root / "server.log") as server:
        yield built, server


def test_an_app_installs_the_tarball_and_predicts_under_node(
    packed: tuple[dict[str, Any], Path], served: tuple[Built, LiveServer], tmp_path: Path
) -> None:
    import tensorflow as tf

    _, tarball = packed
    built, server = served
    app = tmp_path / "app"
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    installed = app / "node_modules" / "@fedge" / "web-sdk"
    installed.parent.mkdir(parents=True)
    shutil.move(tmp_path / "unpacked" / "package", installed)
    (app / "package.json").write_text(json.dumps({"name": "app", "type": "module"}))
    rows = built.rows["features"]
    request = {
        "inputs": {"features": rows[:3].tolist()},
        "examples": [{"inputs": {"features": rows[0].tolist()}, "label": 1}],
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    node = shutil.which("node")
    assert node, "Node is needed for the SDK under Node"

    done = subprocess.run(
        [node, str(SCRIPT), server.url, str(path), str(app)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["sdk"]) == installed / "dist" / "fedge.js"
    model = tf.keras.models.load_model(built.keras)
    expected = model.predict(rows[:3], verbose=0)
    assert np.abs(np.asarray(result["predicted"]["tier"]) - expected).max() < 1e-4
    assert result["down"] == "server_unreachable"
    assert set(result["bad"].values()) == {"unknown_input", "bad_shape", "not_finite", "bad_label"}
    assert result["storedAfterBad"] == 0
    assert result["outcome"]["status"] == "contributed", result["outcome"]
