"""fedge.web: where the npm packages are found, and ``fedge setup-node``.

npm itself is replaced by small scripts on PATH here (the real install is in
tests/test_wheel.py), so these tests need no network and no Node.js.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedge import web
from fedge.cli.main import main
from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError


def fake_install(node_modules: Path) -> Path:
    package = node_modules.joinpath(*web.TFJS_PACKAGE)
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@tensorflow/tfjs"}')
    return node_modules


def test_the_named_directory_is_the_only_place_looked_at(tmp_path: Path) -> None:
    root = tmp_path / "web"
    fake_install(root / "node_modules")
    named = tmp_path / "elsewhere" / "node_modules"
    environ = {web.NODE_MODULES_ENV: str(named), "XDG_DATA_HOME": str(tmp_path / "data")}

    with pytest.raises(web.NodePackagesError, match=r"named by FEDGE_NODE_MODULES"):
        web.find_node_modules(environ, root)
    fake_install(named)
    assert web.find_node_modules(environ, root) == named


def test_the_checkout_comes_before_the_per_user_install(tmp_path: Path) -> None:
    root = tmp_path / "web"
    environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
    user = tmp_path / "data" / "fedge" / "node" / web.lock_digest() / "node_modules"
    fake_install(user)
    assert web.user_prefix(environ) / "node_modules" == user

    assert web.find_node_modules(environ, root) == user
    fake_install(root / "node_modules")
    assert web.find_node_modules(environ, root) == root / "node_modules"


def test_nothing_installed_names_the_places_and_the_fix(tmp_path: Path) -> None:
    environ = {"XDG_DATA_HOME": str(tmp_path / "data")}

    with pytest.raises(web.NodePackagesError) as caught:
        web.find_node_modules(environ, tmp_path / "web")

    message = str(caught.value)
    assert str(tmp_path / "web" / "node_modules") in message
    assert str(web.user_prefix(environ) / "node_modules") in message
    assert "run `fedge setup-node`" in message


def test_the_server_config_accepts_the_variable_but_not_a_misspelling() -> None:
    config = load_config(environ={web.NODE_MODULES_ENV: "/x/node_modules", "FEDGE_PORT": "9100"})

    assert config.port == 9100
    with pytest.raises(ConfigurationError, match="FEDGE_NODE_MODULE"):
        load_config(environ={"FEDGE_NODE_MODULE": "/x"})


def script(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``node`` (v20) and an ``npm`` that records its arguments and, for
    ``ci``, makes node_modules/@tensorflow/tfjs in its working directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script(bin_dir, "node", "echo v20.1.0")
    script(
        bin_dir,
        "npm",
        'echo "$@" > npm-args && mkdir -p node_modules/@tensorflow/tfjs && '
        "echo '{}' > node_modules/@tensorflow/tfjs/package.json",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv(web.NODE_MODULES_ENV, raising=False)
    return bin_dir


def test_setup_node_runs_npm_ci_on_the_packaged_lock_file(fake_tools: Path) -> None:
    result = CliRunner().invoke(main, ["setup-node"])

    assert result.exit_code == 0, result.output
    prefix = web.user_prefix()
    assert (prefix / "npm-args").read_text().split() == ["ci", "--no-audit", "--no-fund"]
    assert (prefix / "package-lock.json").read_bytes() == web.PACKAGE_LOCK.read_bytes()
    assert json.loads((prefix / "package.json").read_text()) == json.loads(
        web.PACKAGE_JSON.read_text()
    )
    assert f"installing @tensorflow/tfjs {web.tfjs_version()}" in result.output
    assert result.output.strip().splitlines()[-1] == str(prefix / "node_modules")


def test_setup_node_into_another_prefix_says_how_to_use_it(
    fake_tools: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["setup-node", "--prefix", str(tmp_path / "mine")])

    assert result.exit_code == 0, result.output
    assert f"set FEDGE_NODE_MODULES={tmp_path / 'mine' / 'node_modules'}" in result.output


def test_setup_node_reports_a_failing_npm(fake_tools: Path) -> None:
    script(fake_tools, "npm", "exit 3")

    result = CliRunner().invoke(main, ["setup-node"])

    assert result.exit_code == 1
    assert "npm ci exited 3" in result.output


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (None, "node and npm not found on PATH; install Node.js >= 18 with npm"),
        ("echo v16.20.0", "node v16.20.0 is too old; install Node.js >= 18 with npm"),
    ],
)
def test_setup_node_without_a_usable_node_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node: str | None, message: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if node is not None:
        script(bin_dir, "node", node)
        script(bin_dir, "npm", "exit 0")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    result = CliRunner().invoke(main, ["setup-node"])

    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "data").exists()


def test_the_sdk_package_speaks_the_servers_api_version() -> None:
    """web/sdk/package.json's major version, its fedge.apiVersion and the
    module's API_VERSION are openapi.yaml's info.version."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    api = str(yaml.safe_load((root / "server" / "openapi.yaml").read_text())["info"]["version"])
    package = json.loads((root / "web" / "sdk" / "package.json").read_text())
    module = (root / "web" / "sdk" / "fedge.js").read_text()
    assert package["fedge"]["apiVersion"] == api
    assert package["version"].split(".")[0] == api
    assert re.search(r'export const API_VERSION = "(\d+)";', module)[1] == api  # type: ignore[index]
    assert re.search(r'export const SDK_VERSION = "([\d.]+)";', module)[1] == package["version"]  # type: ignore[index]


def test_the_demo_page_is_built_on_the_sdk_and_its_modules_stay_small() -> None:
    """The demo page reaches the server through FedgeClient (web/sdk/fedge.js):
    it enrols, loads, predicts and swaps releases with it, and its federated
    part adds examples, joins rounds and evaluates canaries with it. Every
    browser module stays under the 400 lines the Python modules keep to."""
    import re

    root = Path(__file__).resolve().parents[1] / "web"
    demo = (root / "static" / "js" / "demo" / "demo.js").read_text()
    federated = (root / "static" / "js" / "demo" / "federated_ui.js").read_text()
    assert 'import { FedgeClient } from "/sdk/fedge.js";' in demo
    for call in ("FedgeClient.connect(", "client.predict(", 'client.on("release"'):
        assert call in demo, call
    for call in ("client.addExample(", "client.joinRound(", "client.evaluateCanary("):
        assert call in federated, call
    # Not the SDK's internals beside it: no second enrolment, loader, watcher or round.
    internals = r"\b(Device|ReleaseWatcher|buildModel|bundleFiles|contribute|evaluateCandidate)\b"
    for source in (demo, federated):
        imports = "\n".join(line for line in source.splitlines() if line.startswith("import "))
        assert re.search(internals, imports) is None, imports
    modules = [*root.glob("static/js/**/*.js"), *root.glob("sdk/*.js")]
    assert len(modules) > 10
    too_long = {m.name: n for m in modules if (n := len(m.read_text().splitlines())) > 400}
    assert too_long == {}
