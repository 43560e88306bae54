"""The wire format: strict JSON, exact fields, base64 bytes of the right size."""

from __future__ import annotations

import numpy as np
import pytest

from fedge.secagg import (
    KeyAdvert,
    KeyDirectory,
    MaskedInput,
    SecAggError,
    SecAggParams,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
)
from tests.secagg.test_curious_server import devices_after_upload


def test_every_message_round_trips() -> None:
    advert = KeyAdvert(bytes(range(32)), bytes(range(1, 33)))
    params = SecAggParams.choose(5, 0.2, 3, 1.0)
    directory = KeyDirectory(4, params, ["a", "b"], b"s" * 32, {"b": advert})
    masked = MaskedInput(np.array([0, 1, 2**32 - 1], dtype=np.uint32))
    response = UnmaskResponse({"a": b"x" * 66}, {"b": b"y" * 66})

    assert KeyAdvert.from_json(advert.to_json()) == advert
    assert KeyDirectory.from_json(directory.to_json()) == directory
    np.testing.assert_array_equal(
        MaskedInput.from_bytes(masked.to_bytes(), 3).vector, masked.vector
    )
    assert UnmaskResponse.from_json(response.to_json()) == response
    assert UnmaskRequest.from_json(b'{"survivors":["a"],"dropped":[]}') == UnmaskRequest(["a"], [])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"encryption_key":"AAAA","mask_key":"AAAA"}',  # 3 bytes, not 32
        b'{"encryption_key":"' + b"A" * 43 + b'=","mask_key":"!!"}',  # not base64
        b'{"encryption_key":"x","encryption_key":"y","mask_key":"z"}',  # duplicate key
        b'{"encryption_key":"x"}',  # missing field
        b"[1]",
        b"NaN",
    ],
)
def test_a_bad_key_advert_is_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(SecAggError):
        KeyAdvert.from_json(raw)


def test_a_directory_with_a_lowered_threshold_is_refused() -> None:
    params = SecAggParams.choose(5, 0.2, 3, 1.0)
    raw = KeyDirectory(4, params, ["a"], b"s" * 32, {}).to_json()
    lowered = raw.replace(b'"threshold":%d' % params.threshold, b'"threshold":1')
    assert lowered != raw

    with pytest.raises(SecAggError, match="do not follow"):
        KeyDirectory.from_json(lowered)


def test_a_masked_input_of_the_wrong_length_and_a_both_shares_response_are_refused() -> None:
    with pytest.raises(SecAggError, match="bytes"):
        MaskedInput.from_bytes(MaskedInput(np.zeros(3, dtype=np.uint32)).to_bytes(), 4)
    both = UnmaskResponse({"a": b"x" * 66}, {"a": b"y" * 66}).to_json()
    with pytest.raises(SecAggError, match="both shares"):
        UnmaskResponse.from_json(both)


def test_a_share_bundle_without_one_share_per_neighbour_is_refused_by_the_aggregator() -> None:
    from fedge.secagg import SecAggAggregator, SecAggDevice

    aggregator = SecAggAggregator(7, dropout=0.2, clip=1.0, length=4)
    devices = {d: SecAggDevice(d, 7) for d in "abcde"}
    for d, device in devices.items():
        aggregator.advertise(d, device.advertise())
    aggregator.close_advertising()
    bundle = devices["a"].share_keys(aggregator.directory_for("a"))

    with pytest.raises(SecAggError, match="one share for each neighbour"):
        aggregator.submit_shares(ShareBundle("a", bundle.shares[1:]))
    assert devices_after_upload()  # the helper round still completes
