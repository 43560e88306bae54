"""The server sees every message of a round. These tests play a curious,
then a malicious server, and fail if either learns one device's input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fedge.secagg import (
    MaskedInput,
    ProtocolRefused,
    SecAggDevice,
    UnmaskRequest,
    UnmaskResponse,
    crypto,
    shamir,
)
from fedge.secagg.device import round_context
from fedge.secagg.graph import share_index
from fedge.secagg.quantise import quantise
from tests.secagg.protocol import Played, play


def test_a_curious_server_with_every_message_cannot_strip_one_input() -> None:
    # Prepare: a round where one device dropped after sharing, so the server
    # legitimately rebuilds that device's mask key and every survivor's seed.
    played = play(8, length=64, dropout=0.3, after_sharing=frozenset({3}))
    params = played.result.params
    uploads = [m for m in played.transcript if isinstance(m, MaskedInput)]
    assert len(uploads) == 7

    # Execute: everything the server can compute from what it holds.
    seeds, keys = server_secrets(played)
    guesses = list(strip_known_masks(played, uploads, seeds, keys))

    # Assert: never both secrets of one device, and no guess is an input.
    assert set(seeds) & set(keys) == set()
    assert len(seeds) == 7 and len(keys) == 1
    quantised = [quantise(x, params) for x in played.inputs.values()]
    for guess in guesses:
        for q in quantised:
            assert np.mean(guess == q) < 0.05


def server_secrets(played: Played) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Every seed and mask key the unmask responses rebuild."""
    ids = sorted(played.inputs)
    responses = [m for m in played.transcript if isinstance(m, UnmaskResponse)]
    request = played.aggregator.unmask_request_for(ids[0])
    t = played.result.params.threshold
    seeds, keys = {}, {}
    for owner in ids:
        seed_shares, key_shares = {}, {}
        for v, response in zip(request.survivors, responses, strict=True):
            if owner in response.seed_shares:
                seed_shares[share_index(ids, v)] = response.seed_shares[owner]
            if owner in response.key_shares:
                key_shares[share_index(ids, v)] = response.key_shares[owner]
        if len(seed_shares) >= t:
            seeds[owner] = shamir.combine(seed_shares, t)
        if len(key_shares) >= t:
            keys[owner] = shamir.combine(key_shares, t)
    return seeds, keys


def strip_known_masks(
    played: Played, uploads: list[MaskedInput], seeds: dict[str, bytes], keys: dict[str, bytes]
) -> Iterator[npt.NDArray[Any]]:
    """Each upload as is, less each rebuilt self mask, and less or plus each
    pairwise mask a rebuilt key gives."""
    length = played.result.params.length
    pairs = []
    for dropped, key in keys.items():
        for v in played.inputs:
            if v != dropped:
                public = played.devices[v].advertise().mask_key
                seed = crypto.agree(key, public, round_context(7), crypto.MASK_INFO)
                pairs.append(crypto.mask(seed, length))
    for upload in uploads:
        yield upload.vector
        for seed in seeds.values():
            stripped = upload.vector - crypto.mask(seed, length)
            yield stripped
            for pair in pairs:
                yield stripped - pair
                yield stripped + pair


def test_an_honest_device_refuses_a_request_for_both_shares_of_one_device() -> None:
    played = play(5, dropout=0.2)
    device = fresh_device_after_upload()

    with pytest.raises(ProtocolRefused, match="both shares"):
        device.unmask(UnmaskRequest(["a", "b", "c", "d"], ["b"]))
    assert played.result.count == 5


def test_an_honest_device_answers_one_unmask_request_only() -> None:
    device = fresh_device_after_upload()
    device.unmask(UnmaskRequest(["a", "b", "c", "d"], ["e"]))

    with pytest.raises(ProtocolRefused, match="already answered"):
        device.unmask(UnmaskRequest(["a", "c", "d"], ["b", "e"]))


def test_splitting_the_neighbours_between_two_requests_rebuilds_neither_secret() -> None:
    # 5 devices, k = 4, t = 3: asking two neighbours for "a"'s seed and the
    # other two for its key leaves two shares of each, below the threshold.
    devices = devices_after_upload()
    seed_shares = {}
    key_shares = {}
    for v in ["b", "c"]:
        seed_shares[share_index(list(devices), v)] = (
            devices[v].unmask(UnmaskRequest(["a", "b", "c", "d", "e"], [])).seed_shares["a"]
        )
    for v in ["d", "e"]:
        key_shares[share_index(list(devices), v)] = (
            devices[v].unmask(UnmaskRequest(["b", "c", "d", "e"], ["a"])).key_shares["a"]
        )

    with pytest.raises(Exception, match="needed"):
        shamir.combine(seed_shares, 3)
    with pytest.raises(Exception, match="needed"):
        shamir.combine(key_shares, 3)
    # Two shares as if they were enough: not the secret.
    advert = devices["a"].advertise()
    try:
        guess = shamir.combine(key_shares, 2)
    except Exception:
        return
    assert crypto.public_key(guess) != advert.mask_key


def devices_after_upload() -> dict[str, SecAggDevice]:
    from fedge.secagg import SecAggAggregator

    ids = ["a", "b", "c", "d", "e"]
    devices = {d: SecAggDevice(d, 7) for d in ids}
    aggregator = SecAggAggregator(7, dropout=0.2, clip=1.0, length=4)
    for d in ids:
        aggregator.advertise(d, devices[d].advertise())
    aggregator.close_advertising()
    for d in ids:
        aggregator.submit_shares(devices[d].share_keys(aggregator.directory_for(d)))
    aggregator.close_sharing()
    for d in ids:
        aggregator.submit_masked(d, devices[d].masked_input(aggregator.inbox_for(d), np.zeros(4)))
    return devices


def fresh_device_after_upload() -> SecAggDevice:
    return devices_after_upload()["a"]
