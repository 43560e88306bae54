from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from fedge.wire.update_codec import (
    Checkpoint,
    CodecError,
    Update,
    UpdateMeta,
    content_id,
    decode_checkpoint,
    decode_update,
    encode_checkpoint,
    encode_update,
    global_norm,
)


def _update() -> Update:
    return Update(
        meta=UpdateMeta(
            round_id=3, base_checkpoint="ab" * 32, num_examples=17, metrics={"loss": 0.5}
        ),
        deltas={
            "conv1/kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3),
            "conv1/bias": np.array([1.5, -2.0], dtype=np.float32),
        },
    )


def test_update_round_trips_with_order_and_metadata() -> None:
    update = _update()

    decoded = decode_update(encode_update(update))

    assert decoded.meta == update.meta
    assert list(decoded.deltas) == ["conv1/kernel", "conv1/bias"]
    for name, value in update.deltas.items():
        np.testing.assert_array_equal(decoded.deltas[name], value)
        assert decoded.deltas[name].dtype == np.float32


def test_checkpoint_round_trips_and_its_id_is_its_hash() -> None:
    checkpoint = Checkpoint(round_id=0, weights={"w": np.ones((2, 2), np.float32)})
    same = Checkpoint(round_id=0, weights={"w": np.ones((2, 2), np.float32)})
    later = Checkpoint(round_id=1, weights={"w": np.ones((2, 2), np.float32)})

    data, same_data, later_data = (encode_checkpoint(c) for c in (checkpoint, same, later))

    decoded = decode_checkpoint(data)
    assert decoded.round_id == 0
    np.testing.assert_array_equal(decoded.weights["w"], np.ones((2, 2), np.float32))
    assert content_id(data) == hashlib.sha256(data).hexdigest()
    assert content_id(later_data) == hashlib.sha256(later_data).hexdigest()
    # Equal content, equal bytes, equal id; other content, another id.
    assert same_data == data
    assert content_id(later_data) != content_id(data)


def test_content_id_is_the_sha256_hex_digest() -> None:
    # FIPS 180-2 test vectors.
    assert content_id(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert content_id(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01\x00", struct.pack("<Q", 10**9) + b"{}", struct.pack("<Q", 4) + b"nope"],
)
def test_garbage_is_rejected(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_update(data)


def test_a_checkpoint_is_not_an_update() -> None:
    data = encode_checkpoint(Checkpoint(round_id=1, weights={"w": np.zeros(2, np.float32)}))

    with pytest.raises(CodecError, match="expected a fedge/1 update"):
        decode_update(data)


def test_a_truncated_body_is_rejected() -> None:
    data = encode_update(_update())

    with pytest.raises(CodecError):
        decode_update(data[:-4])


def test_global_norm_is_the_l2_norm_of_everything() -> None:
    # sqrt(3^2 + 4^2 + 12^2) = 13
    assert global_norm({"a": np.array([3.0, 4.0]), "b": np.array([[12.0]])}) == 13.0


def test_the_encoding_is_standard_safetensors() -> None:
    from safetensors.numpy import load

    update = _update()

    loaded = load(encode_update(update))

    for name, value in update.deltas.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_a_header_over_the_spec_bound_is_refused_before_it_is_parsed() -> None:
    from fedge.wire.update_codec import max_header_bytes
    from fedge.wire.weight_spec import ModelSpec

    specs = ModelSpec.from_json([{"name": "w", "shape": [2], "dtype": "float32"}])
    bound = max_header_bytes(specs)
    # A header one byte over the bound, of valid JSON, with enough data behind it.
    header = b'{"pad": "' + b"x" * (bound - 10) + b'"}'
    data = struct.pack("<Q", len(header)) + header + b"\0" * len(header)

    with pytest.raises(CodecError) as caught:
        decode_update(data, specs)

    assert len(header) == bound + 1
    assert caught.value.code == "header_too_large"
