"""Run ``web/node/tfjs_run.mjs`` (TF.js in Node) from Python.

The runner is package data of :mod:`fedge.web`, which also finds the npm
packages (``@tensorflow/tfjs``): ``web/node_modules`` in a git checkout, the
per-user install of ``fedge setup-node`` in a normal one, or
``$FEDGE_NODE_MODULES``.

TF.js parity is checked by the JavaScript runtime that browsers run, not by
tensorflowjs's Python loader, so a model that only Python can read does not
pass. Arrays cross the process boundary in the runner's exchange format: a
directory with ``tensors.json`` (names, dtypes, shapes) and one raw
little-endian file per tensor; no pickle, nothing executable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge import web
from fedge.converters.errors import RuntimeUnavailableError, TargetFailedError

TENSOR_FORMAT = "fedge-tensors/1"
# dtypes the runner reads: TF.js tensors are float32 or int32.
_WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
}


class NodeFailure(Exception):
    """The runner's own report of why it failed (its result JSON's ``kind``,
    ``message`` and any extra fields, such as ``class_name`` or ``path``)."""

    def __init__(self, kind: str, message: str, detail: dict[str, Any]) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.detail = detail


def web_dir() -> Path:
    """The packaged ``web/`` (``fedge.web``): the repository's ``web/`` in a checkout."""
    return web.ROOT


def runner_command() -> list[str]:
    """``node tfjs_run.mjs --node-modules DIR``, or a clear error saying what is missing."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeUnavailableError(
            f"tfjs: node is not on PATH; install Node >= 18, then {web.SETUP_HINT}"
        )
    root = web_dir()
    script = root / "node" / "tfjs_run.mjs"
    if not script.is_file():
        raise RuntimeUnavailableError(f"tfjs: the Node runner {script} is missing")
    try:
        node_modules = web.find_node_modules(root=root)
    except web.NodePackagesError as exc:
        raise RuntimeUnavailableError(f"tfjs: {exc}") from exc
    return [node, str(script), "--node-modules", str(node_modules)]


def write_tensors(directory: Path, named: Sequence[tuple[str, npt.NDArray[Any]]]) -> None:
    """Write arrays in the exchange format: floats as float32, integers as int32."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (name, array) in enumerate(named):
        wire = _wire_dtype(name, np.asarray(array))
        data = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[wire])
        file = f"{index}.bin"
        (directory / file).write_bytes(data.tobytes())
        entries.append({"name": name, "dtype": wire, "shape": list(data.shape), "file": file})
    header = {"format": TENSOR_FORMAT, "tensors": entries}
    (directory / "tensors.json").write_text(json.dumps(header))


def read_tensors(directory: Path) -> list[tuple[str, npt.NDArray[Any]]]:
    """Read arrays written in the exchange format, checking sizes against shapes."""
    header = json.loads((directory / "tensors.json").read_text())
    if header.get("format") != TENSOR_FORMAT:
        raise ValueError(f"{directory}: expected {TENSOR_FORMAT}, got {header.get('format')!r}")
    named = []
    for entry in header["tensors"]:
        dtype = _WIRE_DTYPES[entry["dtype"]]
        path = directory / Path(entry["file"]).name
        array = np.fromfile(path, dtype=dtype)
        shape = tuple(int(d) for d in entry["shape"])
        if array.size != int(np.prod(shape)):
            raise ValueError(f"{path}: {array.size} values, shape {shape} needs {np.prod(shape)}")
        named.append((str(entry["name"]), array.reshape(shape).astype(dtype.newbyteorder("="))))
    return named


def run_node(mode: str, model_json: Path, args: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run the runner once and return its result JSON; raise :class:`NodeFailure`.

    ``subprocess.run`` kills node when the timeout passes, so no process
    outlives the call.
    """
    command = runner_command()
    with tempfile.TemporaryDirectory(prefix="fedge-tfjs-") as scratch:
        result_path = Path(scratch) / "result.json"
        full = [*command, mode, "--model", str(model_json), "--result", str(result_path), *args]
        try:
            done = subprocess.run(full, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise TargetFailedError(
                "tfjs", f"node {mode} took longer than {timeout_s:g} s"
            ) from exc
        if not result_path.is_file():
            tail = (done.stderr or done.stdout).strip()[-2000:]
            raise TargetFailedError(
                "tfjs", f"node exited {done.returncode} without a result: {tail}"
            )
        result: dict[str, Any] = json.loads(result_path.read_text())
    if not result.get("ok"):
        detail = {k: v for k, v in result.items() if k not in ("ok", "kind", "message")}
        raise NodeFailure(str(result.get("kind")), str(result.get("message")), detail)
    return result


def _wire_dtype(name: str, array: npt.NDArray[Any]) -> str:
    if np.issubdtype(array.dtype, np.floating):
        return "float32"
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return "int32"
    raise ValueError(f"input {name!r}: dtype {array.dtype} cannot be sent to TF.js")
