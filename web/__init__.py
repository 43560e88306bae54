"""fedge's JavaScript side, shipped as package data of ``fedge.web``.

The wheel carries the Node parity runner (``node/tfjs_run.mjs``), the npm
manifest and lock file, and the browser pages; it does not carry the npm
packages themselves (``@tensorflow/tfjs`` and its dependencies). Those are
looked for, in this order:

1. ``$FEDGE_NODE_MODULES``: a ``node_modules`` directory named by the user;
   when set, it is the only place looked at;
2. ``node_modules`` beside this file: ``web/node_modules`` in a git checkout,
   installed there by ``scripts/setup.sh``;
3. the per-user install made by ``fedge setup-node``
   (``$XDG_DATA_HOME/fedge/node/<lock hash>/node_modules``, by default under
   ``~/.local/share``). The lock file's hash is part of the path, so fedge
   versions that pin different packages do not share one install.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from fedge.errors import FedgeError

ROOT = Path(__file__).resolve().parent
RUNNER = ROOT / "node" / "tfjs_run.mjs"
PACKAGE_JSON = ROOT / "package.json"
PACKAGE_LOCK = ROOT / "package-lock.json"
NODE_MODULES_ENV = "FEDGE_NODE_MODULES"
TFJS_PACKAGE = ("@tensorflow", "tfjs")
SETUP_HINT = "run `fedge setup-node` (in a git checkout, scripts/setup.sh does it)"


class NodePackagesError(FedgeError):
    """The npm packages are missing, or cannot be installed."""


def tfjs_version() -> str:
    """The ``@tensorflow/tfjs`` version that ``package.json`` asks for."""
    manifest = json.loads(PACKAGE_JSON.read_text())
    return str(manifest["dependencies"]["/".join(TFJS_PACKAGE)])


def lock_digest() -> str:
    """A short sha256 of the lock file: it names the per-user install."""
    return hashlib.sha256(PACKAGE_LOCK.read_bytes()).hexdigest()[:12]


def user_prefix(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``fedge setup-node`` installs by default (the npm prefix)."""
    env = os.environ if environ is None else environ
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "fedge" / "node" / lock_digest()


def has_tfjs(node_modules: Path) -> bool:
    return node_modules.joinpath(*TFJS_PACKAGE, "package.json").is_file()


def candidates(environ: Mapping[str, str] | None = None, root: Path = ROOT) -> list[Path]:
    """The ``node_modules`` directories looked at, in order (see the module docstring)."""
    env = os.environ if environ is None else environ
    named = env.get(NODE_MODULES_ENV)
    if named:
        return [Path(named).expanduser().resolve()]
    return [root / "node_modules", user_prefix(env) / "node_modules"]


def find_node_modules(environ: Mapping[str, str] | None = None, root: Path = ROOT) -> Path:
    """The first ``node_modules`` that holds ``@tensorflow/tfjs``, or a clear error."""
    looked = candidates(environ, root)
    for directory in looked:
        if has_tfjs(directory):
            return directory
    package = "/".join(TFJS_PACKAGE)
    places = ", ".join(str(p) for p in looked)
    env = os.environ if environ is None else environ
    if env.get(NODE_MODULES_ENV):
        raise NodePackagesError(
            f"{package} is not installed in {places} (named by {NODE_MODULES_ENV}); "
            f"unset it or point it at a node_modules that has {package}, or {SETUP_HINT}"
        )
    raise NodePackagesError(f"{package} is not installed (looked in {places}); {SETUP_HINT}")
