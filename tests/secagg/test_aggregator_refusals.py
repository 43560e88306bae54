"""What a careless or hostile device gets from the aggregator: a clear
refusal, and nothing changed."""

from __future__ import annotations

import numpy as np
import pytest

from fedge.secagg import (
    KeyAdvert,
    MaskedInput,
    SecAggAggregator,
    SecAggDevice,
    SecAggError,
    UnmaskResponse,
)

IDS = ["a", "b", "c", "d", "e"]


def advertised() -> tuple[SecAggAggregator, dict[str, SecAggDevice]]:
    aggregator = SecAggAggregator(7, dropout=0.2, clip=1.0, length=4)
    devices = {d: SecAggDevice(d, 7) for d in IDS}
    for d, device in devices.items():
        aggregator.advertise(d, device.advertise())
    return aggregator, devices


def uploading() -> tuple[SecAggAggregator, dict[str, SecAggDevice]]:
    aggregator, devices = advertised()
    aggregator.close_advertising()
    for d in IDS:
        aggregator.submit_shares(devices[d].share_keys(aggregator.directory_for(d)))
    aggregator.close_sharing()
    return aggregator, devices


def test_other_keys_from_a_device_that_advertised_are_refused() -> None:
    aggregator, _ = advertised()

    with pytest.raises(SecAggError, match="already advertised other keys"):
        aggregator.advertise("a", SecAggDevice("a", 7).advertise())


@pytest.mark.parametrize("bad", [bytes(32), b"\x01" + bytes(31), bytes(31)])
def test_a_low_order_or_short_key_is_refused(bad: bytes) -> None:
    aggregator, devices = advertised()
    good = devices["a"].advertise().mask_key

    with pytest.raises(SecAggError, match="not X25519"):
        aggregator.advertise("f", KeyAdvert(bad, good))
    with pytest.raises(SecAggError, match="not X25519"):
        aggregator.advertise("f", KeyAdvert(good, bad))
    assert aggregator.counts()["advertised"] == len(IDS)


def test_a_late_advert_and_a_stranger_are_refused() -> None:
    aggregator, _ = advertised()
    aggregator.close_advertising()

    with pytest.raises(SecAggError, match="stage share, not advertise"):
        aggregator.advertise("f", SecAggDevice("f", 7).advertise())
    with pytest.raises(SecAggError, match="did not advertise"):
        aggregator.directory_for("f")


def test_a_second_different_masked_input_is_refused_and_a_retry_is_not_added_twice() -> None:
    aggregator, devices = uploading()
    first = devices["a"].masked_input(aggregator.inbox_for("a"), np.zeros(4))

    assert aggregator.submit_masked("a", first) is True
    assert aggregator.submit_masked("a", first) is False
    other = MaskedInput(first.vector + np.uint32(1))
    with pytest.raises(SecAggError, match="another masked input"):
        aggregator.submit_masked("a", other)
    assert aggregator.counts()["uploaded"] == 1


def test_an_unmask_response_with_shares_it_was_not_asked_for_is_refused() -> None:
    aggregator, devices = uploading()
    for d in IDS:
        masked = devices[d].masked_input(aggregator.inbox_for(d), np.zeros(4))
        aggregator.submit_masked(d, masked)
    aggregator.close_upload()
    honest = devices["a"].unmask(aggregator.unmask_request_for("a"))
    # A dropped device's key share of a survivor: what a colluding device would send.
    greedy = UnmaskResponse(
        {k: v for k, v in honest.seed_shares.items() if k != "b"},
        {"b": honest.seed_shares["b"]},
    )

    with pytest.raises(SecAggError, match="exactly the shares"):
        aggregator.submit_unmask("a", greedy)
    assert aggregator.counts()["unmask_answers"] == 0
