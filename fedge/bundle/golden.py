"""The parity samples a bundle carries: golden inputs and the source
model's outputs on them (issue 23).

``fedge convert`` writes ``parity/golden.json``, listed in the manifest's
``documents`` (``parity_golden``) with its sha256 like every file, so a
device that checked the bundle against its id knows the numbers are the
publisher's. A canary device runs the inputs on the runtime it actually
uses (TFLite in the simulator, TF.js on a page's backend) and compares
(:func:`compare`): the largest absolute difference over all outputs and
the share of rows whose top-1 class (argmax of the first output) agrees.
JSON, not ``.npy``: a browser reads it without a parser of its own::

    {"format": "fedge-golden/1", "rows": 32,
     "inputs": {"x": {"shape": [32, 8, 8, 1], "dtype": "float32", "values": [...]}},
     "outputs": {"probs": {"shape": [32, 10], "dtype": "float32", "values": [...]}}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.bundle.manifest import Manifest, ManifestError

FORMAT = "fedge-golden/1"
GOLDEN_FILE = "parity/golden.json"
DOCUMENT = "parity_golden"
ROWS = 32  # enough to see a broken runtime, small enough to ship with every bundle
MAX_ROWS = 1024
MAX_BYTES = 16 * 1024 * 1024

Arrays = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class Golden:
    """Golden inputs by input name and the source model's outputs by output name."""

    inputs: dict[str, npt.NDArray[Any]]
    outputs: dict[str, npt.NDArray[np.float64]]

    @property
    def rows(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


@dataclass(frozen=True)
class Comparison:
    max_abs_error: float
    top1_agreement: float
    samples: int


def write_golden(bundle_dir: Path, inputs: Arrays, outputs: Arrays, rows: int = ROWS) -> Path:
    """Write the first ``rows`` rows of ``inputs`` and ``outputs`` (finite
    numbers only: the caller leaves a model with non-finite outputs without)."""
    if not all(np.all(np.isfinite(a[:rows])) for a in (*inputs.values(), *outputs.values())):
        raise ValueError("golden samples must be finite")
    raw = {
        "format": FORMAT,
        "rows": min(rows, _rows(inputs)),
        "inputs": {name: _tensor(a[:rows]) for name, a in inputs.items()},
        "outputs": {name: _tensor(a[:rows]) for name, a in outputs.items()},
    }
    path = bundle_dir / GOLDEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw, separators=(",", ":")) + "\n")
    return path


def read_golden(bundle_dir: Path, manifest: Manifest) -> Golden | None:
    """The bundle's golden samples, None for a bundle without them (older
    ones); :class:`ManifestError` for a file that does not fit the manifest.
    The caller has checked the bundle's files against the manifest."""
    record = manifest.documents.get(DOCUMENT)
    if record is None:
        return None
    path = bundle_dir / str(record.get("path", GOLDEN_FILE))
    if path.stat().st_size > MAX_BYTES:
        raise ManifestError(f"{GOLDEN_FILE} is larger than {MAX_BYTES} bytes")
    try:
        raw = json.loads(path.read_bytes())
        if raw.get("format") != FORMAT:
            raise ManifestError(f"{GOLDEN_FILE}: unknown format {raw.get('format')!r}")
        rows = int(raw["rows"])
        inputs = {s.name: _array(raw["inputs"][s.name], rows, s.dtype) for s in manifest.inputs}
        outputs = {
            s.name: _array(raw["outputs"][s.name], rows, "float64") for s in manifest.outputs
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{GOLDEN_FILE}: malformed: {type(exc).__name__}: {exc}") from exc
    return Golden(inputs, outputs)


def compare(expected: Sequence[npt.NDArray[Any]], got: Sequence[npt.NDArray[Any]]) -> Comparison:
    """Max abs error over every output, top-1 agreement on the first. A
    non-finite output is an error as large as the wire allows."""
    if len(expected) != len(got) or not expected:
        raise ValueError(f"{len(got)} outputs to compare with {len(expected)}")
    error = 0.0
    for want, given in zip(expected, got, strict=True):
        have = np.asarray(given, dtype=np.float64).reshape(want.shape)
        if not np.all(np.isfinite(have)):
            error = 1e9
            continue
        error = max(error, float(np.max(np.abs(want - have))) if want.size else 0.0)
    rows = int(expected[0].shape[0])
    first_want = expected[0].reshape(rows, -1)
    first_got = np.asarray(got[0], dtype=np.float64).reshape(rows, -1)
    agree = float(np.mean(np.argmax(first_want, axis=1) == np.argmax(first_got, axis=1)))
    return Comparison(min(error, 1e9), agree, rows)


def _rows(arrays: Arrays) -> int:
    return min(int(a.shape[0]) for a in arrays.values())


def _tensor(array: npt.NDArray[Any]) -> dict[str, Any]:
    values = np.asarray(array, dtype=np.float64).ravel().tolist()
    return {"shape": list(array.shape), "dtype": str(array.dtype), "values": values}


def _array(raw: dict[str, Any], rows: int, dtype: str) -> npt.NDArray[Any]:
    shape = [int(d) for d in raw["shape"]]
    if not 0 < rows <= MAX_ROWS or not shape or shape[0] != rows:
        raise ValueError(f"shape {shape} for {rows} rows (at most {MAX_ROWS})")
    values = np.asarray(raw["values"], dtype=np.float64)
    if values.size != math.prod(shape) or not np.all(np.isfinite(values)):
        raise ValueError(f"{values.size} values for shape {shape}, or some not finite")
    return values.reshape(shape).astype(dtype)
