"""Stored update files are read by the codec's one decoder: the same header
bound, strictness and metadata rules as an upload (regressions of a second,
laxer parser that update_sources used to have)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedge.server.aggregation.kernels import AggregationError, SafetensorsFileUpdates
from fedge.wire.update_codec import (
    CodecError,
    Update,
    UpdateMeta,
    decode_update,
    encode_update,
    max_header_bytes,
    read_update_layout,
)
from fedge.wire.weight_spec import ModelSpec

BASE = "ab" * 32
SPEC = ModelSpec.from_json(
    [
        {"name": "a", "shape": [2], "dtype": "float32"},
        {"name": "b", "shape": [1], "dtype": "float32"},
    ]
)
DATA = np.array([1.0, 2.0, 3.0], np.float32).tobytes()  # a = [1, 2], b = [3]


def metadata(**overrides: str) -> dict[str, str]:
    return {
        "format": "fedge/1",
        "kind": "update",
        "round_id": "1",
        "base_checkpoint": BASE,
        "num_examples": "4",
        **overrides,
    }


def entries(**overrides: Any) -> dict[str, Any]:
    return {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
        **overrides,
    }


def safetensors_bytes(header: dict[str, Any], data: bytes = DATA, pad_to: int = 0) -> bytes:
    """Hand-made safetensors; ``pad_to`` pads the header with spaces (valid JSON)."""
    raw = json.dumps(header).encode()
    raw += b" " * max(0, pad_to - len(raw))
    return struct.pack("<Q", len(raw)) + raw + data


def both_refuse(tmp_path: Path, data: bytes, spec: ModelSpec | None = None) -> tuple[str, str]:
    """The upload decoder's and the file reader's messages for the same bytes."""
    path = tmp_path / "update.safetensors"
    path.write_bytes(data)
    with pytest.raises(CodecError) as upload:
        decode_update(data, spec)
    with pytest.raises(AggregationError) as stored:
        SafetensorsFileUpdates([path], spec)
    return str(upload.value), str(stored.value)


def test_the_layout_has_absolute_offsets_and_strict_metadata(tmp_path: Path) -> None:
    data = safetensors_bytes({"__metadata__": metadata(), **entries()})
    length = struct.unpack("<Q", data[:8])[0]
    path = tmp_path / "u.safetensors"
    path.write_bytes(data)

    with open(path, "rb") as file:
        layout = read_update_layout(file, len(data), SPEC)
    files = SafetensorsFileUpdates([path], SPEC)

    assert [t.name for t in layout.tensors] == ["a", "b"]
    assert [t.offset for t in layout.tensors] == [8 + length, 8 + length + 8]
    assert [t.size for t in layout.tensors] == [2, 1]
    assert layout.meta.num_examples == 4
    assert list(files.weights()) == [4.0]
    np.testing.assert_array_equal(files.read(0, "a", 0, 2), [1.0, 2.0])
    np.testing.assert_array_equal(files.read(0, "b", 0, 1), [3.0])


def test_the_header_bound_is_the_codecs_for_the_spec(tmp_path: Path) -> None:
    bound = max_header_bytes(SPEC)
    data = safetensors_bytes({"__metadata__": metadata(), **entries()}, pad_to=bound + 1)

    upload, stored = both_refuse(tmp_path, data, SPEC)

    # Far under the old reader's own 16 MiB limit, over the spec's bound.
    assert bound < 16 * 1024
    assert f"over the {bound}-byte bound" in upload
    assert f"over the {bound}-byte bound" in stored
    path = tmp_path / "update.safetensors"
    assert SafetensorsFileUpdates([path]).names() == ["a", "b"]  # no spec: the 16 MiB default


@pytest.mark.parametrize(
    ("header", "message"),
    [
        # An entry with a key safetensors does not define.
        (entries(a={"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}), "exactly"),
        # A shape that is not a list of non-negative integers.
        (entries(a={"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}), "shape"),
        # A gap between the tensors' bytes.
        (entries(b={"dtype": "F32", "shape": [1], "data_offsets": [9, 13]}), "tile"),
    ],
)
def test_malformed_entries_are_refused_by_both(
    tmp_path: Path, header: dict[str, Any], message: str
) -> None:
    data = safetensors_bytes({"__metadata__": metadata(), **header}, DATA + b"\0")

    upload, stored = both_refuse(tmp_path, data)

    assert message in upload
    assert message in stored


@pytest.mark.parametrize("count", ["\u0663", " 4", "4.0", "-4"])
def test_num_examples_must_be_ascii_digits_in_both(tmp_path: Path, count: str) -> None:
    # int() takes "\u0663" (ARABIC-INDIC DIGIT THREE) and " 4"; the codec does not.
    data = safetensors_bytes({"__metadata__": metadata(num_examples=count), **entries()})

    upload, stored = both_refuse(tmp_path, data)

    assert "num_examples" in upload
    assert "num_examples" in stored


def test_with_a_spec_the_names_shapes_and_dtypes_are_the_models(tmp_path: Path) -> None:
    meta = UpdateMeta(round_id=1, base_checkpoint=BASE, num_examples=4)
    other = {"a": np.zeros(2, np.float32), "c": np.zeros(1, np.float32)}
    data = encode_update(Update(meta=meta, deltas=other))

    upload, stored = both_refuse(tmp_path, data, SPEC)

    assert "unexpected ['c']" in upload
    assert "unexpected ['c']" in stored


def test_integer_tensors_cannot_be_aggregated(tmp_path: Path) -> None:
    meta = UpdateMeta(round_id=1, base_checkpoint=BASE, num_examples=4)
    path = tmp_path / "u.safetensors"
    path.write_bytes(encode_update(Update(meta=meta, deltas={"a": np.zeros(2, np.int32)})))

    with pytest.raises(AggregationError, match="int32, not floats"):
        SafetensorsFileUpdates([path])
